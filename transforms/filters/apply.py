"""``ApplyFilters``: run the active filter set over batches of alerts in the pipeline.

Input: a PCollection of ``Alert``, or of ``AnnotatedAlert`` whose annotations the filters'
annotation fields read (bounded or unbounded; any windowing). Side input: a
PCollection of filter-set snapshots (``{"version": n, "filters": [document, ...]}``, as on the
config topic), read with ``AsList``; the highest version that validates wins, so a new snapshot
replaces the whole set (in streaming, give the side input GlobalWindows with
``Repeatedly(AfterCount(1))`` and DISCARDING, DESIGN.md section 2). Alerts are grouped with
``BatchElements`` so the compiled set evaluates column-wise; a set is compiled once per version
per worker.

Outputs (a ``DoOutputsTuple``):

* ``matches``: one ``FilterMatch`` per (alert, filter that selected it), carrying the filter's
  name, owner, output topic and format, and the filter-set version;
* ``errors``: one ``FilterErrorReport`` per batch and filter that errored on some alerts (or
  failed for the whole batch), and one per snapshot version that failed validation. Errors never
  stop the stream and never hide a match of another filter.

Counters in namespace ``ApplyFilters``: ``alerts_in``, ``matches`` and ``filter_errors``.
Delivery is whatever the runner gives the DoFn (at least once on Flink with checkpoints).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsList, TaggedOutput

from transforms.alert_model import Alert
from transforms.annotate.record import Annotations
from transforms.filters.annotations import AnnotationColumns
from transforms.filters.compile import BatchResult, CompiledFilterSet, compile_filter_set
from transforms.filters.document import FilterSet, FilterValidationError

MATCHES = "matches"
ERRORS = "errors"
SNAPSHOT_FILTER_NAME = "<filter-set>"
#: Namespace of the counters ``alerts_in``, ``matches`` and ``filter_errors`` (per-alert
#: evaluation errors, all filters added).
COUNTER_NAMESPACE = "ApplyFilters"


@dataclass(frozen=True, slots=True)
class FilterMatch:
    filter_name: str
    owner: str
    topic: str
    format: str
    filter_set_version: int
    alert: Alert
    annotations: Annotations | None = None
    fields: tuple[str, ...] = ()  # the filter's output.fields


@dataclass(frozen=True, slots=True)
class FilterErrorReport:
    filter_name: str
    filter_set_version: int
    evaluated: int
    errors: int
    reason: str


def parse_snapshot(raw: bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    """A snapshot as the config topic carries it (JSON bytes) or already parsed. Bytes that are
    not a JSON object become an invalid snapshot (version -1): reported, never selected."""
    if not isinstance(raw, (bytes, bytearray)):
        return raw
    try:
        snapshot = json.loads(raw)
    except ValueError as err:
        return {"version": -1, "invalid": f"not JSON: {err}"}
    return snapshot if isinstance(snapshot, dict) else {"version": -1, "invalid": "not an object"}


def select_snapshot(
    raw_snapshots: Iterable[bytes | Mapping[str, Any]],
) -> tuple[FilterSet | None, list[FilterErrorReport]]:
    """The highest-version snapshot that validates, and a report for each newer one that did not."""
    snapshots = [parse_snapshot(s) for s in raw_snapshots]
    rejected: list[FilterErrorReport] = []
    ordered = sorted(snapshots, key=lambda s: s.get("version", -1) if isinstance(s.get("version"), int) else -1, reverse=True)
    for snapshot in ordered:
        try:
            return FilterSet.from_snapshot(snapshot), rejected
        except (FilterValidationError, ValueError) as error:
            version = snapshot.get("version")
            rejected.append(
                FilterErrorReport(SNAPSHOT_FILTER_NAME, version if isinstance(version, int) else -1, 0, 0, str(error))
            )
    return None, rejected


def evaluate_batch(
    compiled: CompiledFilterSet, alerts: list[Alert], annotations: list[Annotations] | None = None
) -> Iterator[FilterMatch | FilterErrorReport]:
    """Matches and error reports of one batch (the science of ApplyFilters, without Beam).

    ``annotations``, one record per alert, feeds the filters' annotation fields.
    """
    columns = None if annotations is None else AnnotationColumns(annotations)
    yield from batch_reports(compiled, compiled.evaluate(alerts, columns), alerts, annotations)


def batch_reports(
    compiled: CompiledFilterSet,
    result: BatchResult,
    alerts: Sequence[Alert],
    annotations: Sequence[Annotations] | None,
) -> Iterator[FilterMatch | FilterErrorReport]:
    """The matches and error reports of ``result``, the outcome of ``compiled`` on ``alerts``."""
    for flt in compiled.filters:
        outcome = result.outcomes[flt.name]
        for index in outcome.matches.nonzero()[0]:
            yield FilterMatch(flt.name, flt.owner, flt.output.topic, flt.output.format, compiled.version,
                              alerts[index], None if annotations is None else annotations[index],
                              tuple(flt.output.fields))
        errors = outcome.errors
        if errors:
            reason = outcome.failure or "per-alert evaluation errors"
            yield FilterErrorReport(flt.name, compiled.version, len(alerts), errors, reason)


class _ApplyFn(beam.DoFn):
    def __init__(self, feed: Any = None) -> None:
        self._feed = feed
        self._compiled: CompiledFilterSet | None = None
        self._reported: set[int] = set()
        self._alerts = Metrics.counter(COUNTER_NAMESPACE, "alerts_in")
        self._matches = Metrics.counter(COUNTER_NAMESPACE, "matches")
        self._errors = Metrics.counter(COUNTER_NAMESPACE, "filter_errors")

    def process(
        self, items: list[Any], raw_snapshots: list[bytes | Mapping[str, Any]] | None = None
    ) -> Iterator[Any]:
        if self._feed is not None:
            raw_snapshots = self._feed.snapshots()
        snapshots = [parse_snapshot(s) for s in raw_snapshots or ()]
        # Annotated alerts (from AnnotateAlerts) carry their annotation records; plain ones don't.
        annotated = bool(items) and hasattr(items[0], "annotations")
        alerts = [i.alert for i in items] if annotated else items
        annotations = [i.annotations for i in items] if annotated else None
        version = self._compiled.version if self._compiled is not None else None
        newest = max((s.get("version", -1) for s in snapshots if isinstance(s.get("version"), int)), default=None)
        if newest is not None and newest != version:
            chosen, rejected = select_snapshot(snapshots)
            for report in rejected:
                if report.filter_set_version not in self._reported:
                    self._reported.add(report.filter_set_version)
                    yield TaggedOutput(ERRORS, report)
            if chosen is not None and (self._compiled is None or chosen.version != self._compiled.version):
                self._compiled = compile_filter_set(chosen)
        self._alerts.inc(len(alerts))
        if self._compiled is None:
            return
        for item in evaluate_batch(self._compiled, alerts, annotations):
            if isinstance(item, FilterErrorReport):
                self._errors.inc(item.errors)
                yield TaggedOutput(ERRORS, item)
            else:
                self._matches.inc()
                yield item


class ApplyFilters(beam.PTransform):
    """Alerts -> ``matches`` (FilterMatch) and ``errors`` (FilterErrorReport); see the module doc."""

    def __init__(self, snapshots: beam.PCollection | None = None, max_batch_size: int = 2000,
                 label: str | None = None, feed: Any = None) -> None:
        """Give the filter sets either as ``snapshots`` (a side input) or as ``feed``, an object
        whose ``snapshots()`` returns them (``transforms.filters.live.ConfigTopicFeed``)."""
        super().__init__(label)
        if (snapshots is None) == (feed is None):
            raise ValueError("ApplyFilters needs exactly one of snapshots and feed")
        self._snapshots = snapshots
        self._feed = feed
        self._max_batch_size = max_batch_size

    def expand(self, alerts: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        side = [] if self._snapshots is None else [AsList(self._snapshots)]
        return (
            alerts
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch_size)
            | "Evaluate" >> beam.ParDo(_ApplyFn(self._feed), *side).with_outputs(ERRORS, main=MATCHES)
        )
