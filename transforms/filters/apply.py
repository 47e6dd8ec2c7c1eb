"""``ApplyFilters``: run the active filter set over batches of alerts in the pipeline.

Input: a PCollection of ``Alert``, or of ``AnnotatedAlert`` whose annotations the filters'
annotation fields read (bounded or unbounded; any windowing). Side input: a
PCollection of decoded filter-set snapshots (``FilterSet`` or ``RejectedSnapshot``, from
``transforms.filters.snapshot``), read with ``AsList``; the highest valid version wins, so a new
snapshot replaces the whole set (in streaming, give the side input GlobalWindows with
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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsList, TaggedOutput

from transforms.alert_model import Alert
from transforms.annotation_model import AnnotatedAlert, Annotations
from transforms.filters.annotations import AnnotationColumns
from transforms.filters.compile import BatchResult, CompiledFilterSet, compile_filter_set
from transforms.filters.document import OutputFormat
from transforms.filters.snapshot import (
    RejectedSnapshot,
    Snapshot,
    SnapshotFeed,
    newest_version,
    select_snapshot,
)

MATCHES = "matches"
ERRORS = "errors"
SNAPSHOT_FILTER_NAME = "<filter-set>"
#: Namespace of the counters ``alerts_in``, ``matches`` and ``filter_errors`` (per-alert
#: evaluation errors, all filters added).
COUNTER_NAMESPACE = "ApplyFilters"
ALERTS_IN_COUNTER = "alerts_in"
MATCHES_COUNTER = "matches"
FILTER_ERRORS_COUNTER = "filter_errors"


@dataclass(frozen=True, slots=True)
class FilterMatch:
    filter_name: str
    owner: str
    topic: str
    format: OutputFormat
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


#: ``filter_set_version`` of the report on a rejected snapshot without a version, as the
#: errors topic has always carried it.
UNVERSIONED = -1


def rejection_report(rejected: RejectedSnapshot) -> FilterErrorReport:
    """The ``errors`` output for a snapshot that failed validation."""
    version = UNVERSIONED if rejected.version is None else rejected.version
    return FilterErrorReport(SNAPSHOT_FILTER_NAME, version, 0, 0, rejected.reason)


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
            yield FilterMatch(
                flt.name,
                flt.owner,
                flt.output.topic,
                flt.output.format,
                compiled.version,
                alerts[index],
                None if annotations is None else annotations[index],
                tuple(flt.output.fields),
            )
        errors = outcome.errors
        if errors:
            reason = outcome.failure or "per-alert evaluation errors"
            yield FilterErrorReport(flt.name, compiled.version, len(alerts), errors, reason)


class _ApplyFn(beam.DoFn):
    def __init__(self, feed: SnapshotFeed | None = None) -> None:
        self._feed = feed
        self._compiled: CompiledFilterSet | None = None
        self._reported: set[int | None] = set()
        self._alerts = Metrics.counter(COUNTER_NAMESPACE, ALERTS_IN_COUNTER)
        self._matches = Metrics.counter(COUNTER_NAMESPACE, MATCHES_COUNTER)
        self._errors = Metrics.counter(COUNTER_NAMESPACE, FILTER_ERRORS_COUNTER)

    def process(
        self, items: list[Alert] | list[AnnotatedAlert], side: Sequence[Snapshot] = ()
    ) -> Iterator[FilterMatch | TaggedOutput]:
        snapshots = side if self._feed is None else self._feed.snapshots()
        alerts, annotations = _split(items)
        version = self._compiled.version if self._compiled is not None else None
        newest = newest_version(snapshots)
        if newest is not None and newest != version:
            chosen, rejected = select_snapshot(snapshots)
            for snapshot in rejected:
                if snapshot.version not in self._reported:
                    self._reported.add(snapshot.version)
                    yield TaggedOutput(ERRORS, rejection_report(snapshot))
            if chosen is not None and chosen.version != version:
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


def _split(
    items: list[Alert] | list[AnnotatedAlert],
) -> tuple[list[Alert], list[Annotations] | None]:
    """The alerts of a batch and, from AnnotateAlerts, their annotation records (plain alerts
    have none)."""
    annotated = [i for i in items if isinstance(i, AnnotatedAlert)]
    if not annotated:
        return [i for i in items if isinstance(i, Alert)], None
    if len(annotated) != len(items):
        raise TypeError("ApplyFilters: a batch mixes Alert and AnnotatedAlert")
    return [i.alert for i in annotated], [i.annotations for i in annotated]


class ApplyFilters(
    beam.PTransform[beam.PCollection[Alert | AnnotatedAlert], beam.pvalue.DoOutputsTuple]
):
    """Alerts -> ``matches`` (FilterMatch) and ``errors`` (FilterErrorReport); see the module
    doc."""

    def __init__(
        self,
        snapshots: beam.PCollection[Snapshot] | None = None,
        max_batch_size: int = 2000,
        label: str | None = None,
        feed: SnapshotFeed | None = None,
    ) -> None:
        """Give the filter sets either as ``snapshots`` (a side input of decoded snapshots,
        ``FilterSet`` or ``RejectedSnapshot``) or as ``feed``
        (``transforms.filters.live.ConfigTopicFeed``)."""
        super().__init__(label)
        if (snapshots is None) == (feed is None):
            raise ValueError("ApplyFilters needs exactly one of snapshots and feed")
        self._snapshots = snapshots
        self._feed = feed
        self._max_batch_size = max_batch_size

    def expand(
        self, alerts: beam.PCollection[Alert | AnnotatedAlert]
    ) -> beam.pvalue.DoOutputsTuple:
        side = [] if self._snapshots is None else [AsList(self._snapshots)]
        outputs: beam.pvalue.DoOutputsTuple = (
            alerts
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch_size)
            | "Evaluate"
            >> beam.ParDo(_ApplyFn(self._feed), *side).with_outputs(ERRORS, main=MATCHES)
        )
        return outputs
