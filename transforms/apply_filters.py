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
Delivery is whatever the runner gives the DoFn (at least once on Flink with checkpoints). The
science is in ``transforms.filters.matches``; the DoFn only routes and counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsList, TaggedOutput

from transforms.alert_model import Alert
from transforms.annotation_model import AnnotatedAlert, Annotations
from transforms.filters.matches import (
    ActiveFilterSet,
    FilterErrorReport,
    FilterMatch,
    evaluate_batch,
)
from transforms.filters.snapshot import Snapshot, SnapshotFeed

MATCHES = "matches"
ERRORS = "errors"
#: Namespace of the counters ``alerts_in``, ``matches`` and ``filter_errors`` (per-alert
#: evaluation errors, all filters added).
COUNTER_NAMESPACE = "ApplyFilters"
ALERTS_IN_COUNTER = "alerts_in"
MATCHES_COUNTER = "matches"
FILTER_ERRORS_COUNTER = "filter_errors"


class _ApplyFn(beam.DoFn):
    def __init__(self, feed: SnapshotFeed | None = None) -> None:
        self._feed = feed
        self._active = ActiveFilterSet()
        self._alerts = Metrics.counter(COUNTER_NAMESPACE, ALERTS_IN_COUNTER)
        self._matches = Metrics.counter(COUNTER_NAMESPACE, MATCHES_COUNTER)
        self._errors = Metrics.counter(COUNTER_NAMESPACE, FILTER_ERRORS_COUNTER)

    def process(
        self, items: list[Alert] | list[AnnotatedAlert], side: Sequence[Snapshot] = ()
    ) -> Iterator[FilterMatch | TaggedOutput]:
        snapshots = side if self._feed is None else self._feed.snapshots()
        alerts, annotations = _split(items)
        for rejection in self._active.update(snapshots):
            yield TaggedOutput(ERRORS, rejection)
        self._alerts.inc(len(alerts))
        if self._active.compiled is None:
            return
        for item in evaluate_batch(self._active.compiled, alerts, annotations):
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
