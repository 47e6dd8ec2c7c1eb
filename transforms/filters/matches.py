"""What a filter set yields on a batch of alerts: matches and error reports, without Beam.

* :class:`FilterMatch`: one (alert, filter that selected it), with the filter's identity (name,
  owner, output topic and format) and the filter-set version;
* :class:`FilterErrorReport`: one filter that errored on some alerts of a batch (or failed for
  the whole batch), or one snapshot version that failed validation (:func:`rejection_report`);
* :class:`ActiveFilterSet`: the newest valid set among the snapshots seen, compiled once per
  version, each rejected version reported once.

``transforms.apply_filters.ApplyFilters`` runs these in a pipeline; the local runner
(``transforms.local``) and the dry runs call them directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from transforms.alert_model import Alert
from transforms.annotation_model import Annotations
from transforms.filters.annotations import AnnotationColumns
from transforms.filters.compile import BatchResult, CompiledFilterSet, compile_filter_set
from transforms.filters.model import OutputFormat
from transforms.filters.snapshot import RejectedSnapshot, Snapshot, newest_version, select_snapshot

SNAPSHOT_FILTER_NAME = "<filter-set>"
#: ``filter_set_version`` of the report on a rejected snapshot without a version, as the
#: errors topic has always carried it.
UNVERSIONED = -1


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


def rejection_report(rejected: RejectedSnapshot) -> FilterErrorReport:
    """The error report for a snapshot that failed validation."""
    version = UNVERSIONED if rejected.version is None else rejected.version
    return FilterErrorReport(SNAPSHOT_FILTER_NAME, version, 0, 0, rejected.reason)


def evaluate_batch(
    compiled: CompiledFilterSet, alerts: list[Alert], annotations: list[Annotations] | None = None
) -> Iterator[FilterMatch | FilterErrorReport]:
    """Matches and error reports of one batch.

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


class ActiveFilterSet:
    """The set in force: the highest valid version among the snapshots seen, compiled once.

    ``compiled`` is None until a valid snapshot arrives; a newer snapshot that fails validation
    leaves the current set in force.
    """

    def __init__(self) -> None:
        self.compiled: CompiledFilterSet | None = None
        self._reported: set[int | None] = set()

    def update(self, snapshots: Iterable[Snapshot]) -> list[FilterErrorReport]:
        """Follow ``snapshots`` (the newest ones, any order); the reports of the rejected
        versions not reported before."""
        snapshots = list(snapshots)
        version = None if self.compiled is None else self.compiled.version
        newest = newest_version(snapshots)
        if newest is None or newest == version:
            return []
        chosen, rejected = select_snapshot(snapshots)
        reports = []
        for snapshot in rejected:
            if snapshot.version not in self._reported:
                self._reported.add(snapshot.version)
                reports.append(rejection_report(snapshot))
        if chosen is not None and chosen.version != version:
            self.compiled = compile_filter_set(chosen)
        return reports
