"""A filter set over alerts in one process, the way the broker's stages compute it.

The one runner of every dry run (``alertflow filters test -f``, ``POST
/api/v1/filters/{name}/test`` and ``alertflow filters test NAME``), and the reference that the
pipeline's outputs are compared with: the same annotators (only those the filters name) and the
same evaluator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from transforms.alert_model import Alert
from transforms.annotate.transform import (
    AnnotateConfig,
    LoadedAnnotators,
    annotate_batch,
    for_filters,
    load_annotators,
    needed_annotators,
    running_annotators,
)
from transforms.annotation_model import AnnotatedAlert, Annotations
from transforms.decode import DeadLetter
from transforms.filters.annotations import AnnotationColumns
from transforms.filters.compile import BatchResult, CompiledFilterSet, compile_filter_set
from transforms.filters.matches import FilterErrorReport, FilterMatch, batch_reports
from transforms.filters.model import FilterSet


@dataclass(frozen=True, slots=True)
class LocalRun:
    """One batch through a :class:`LocalRunner`.

    ``alerts`` are those the annotators kept, in input order, and ``annotations`` theirs (None
    when the filters need no annotator); ``rejected`` are the dead letters of the others;
    ``result`` is the filter set's outcome on ``alerts``.
    """

    alerts: list[Alert]
    annotations: list[Annotations] | None
    rejected: list[DeadLetter]
    result: BatchResult


class LocalRunner:
    """A filter set over batches of alerts in one process: the annotators it needs are loaded
    (or taken from ``loaded``) and the filters compiled once, then each batch is annotated and
    evaluated as the broker does it."""

    def __init__(
        self,
        filter_set: FilterSet,
        config: AnnotateConfig | None = None,
        loaded: LoadedAnnotators | None = None,
    ) -> None:
        if loaded is None:
            base = config if config is not None else AnnotateConfig()
            loaded = load_annotators(
                replace(base, enabled=needed_annotators(filter_set) & base.enabled)
            )
        self._loaded = for_filters(loaded, filter_set)
        self.compiled: CompiledFilterSet = compile_filter_set(filter_set)

    def evaluate(self, alerts: Sequence[Alert]) -> LocalRun:
        """Annotate ``alerts`` as the filters need, then evaluate the set over those kept."""
        if not running_annotators(self._loaded):
            kept = list(alerts)
            return LocalRun(kept, None, [], self.compiled.evaluate(kept))
        annotated: list[AnnotatedAlert] = []
        rejected: list[DeadLetter] = []
        for item in annotate_batch(list(alerts), self._loaded):
            if isinstance(item, DeadLetter):
                rejected.append(item)
            else:
                annotated.append(item)
        kept = [a.alert for a in annotated]
        annotations = [a.annotations for a in annotated]
        result = self.compiled.evaluate(kept, AnnotationColumns(annotations))
        return LocalRun(kept, annotations, rejected, result)

    def run(
        self, alerts: Sequence[Alert]
    ) -> tuple[list[FilterMatch], list[FilterErrorReport], list[DeadLetter]]:
        """The matches, the per-filter error reports and the alerts an annotator rejected."""
        batch = self.evaluate(alerts)
        matches: list[FilterMatch] = []
        errors: list[FilterErrorReport] = []
        for item in batch_reports(self.compiled, batch.result, batch.alerts, batch.annotations):
            if isinstance(item, FilterErrorReport):
                errors.append(item)
            else:
                matches.append(item)
        return matches, errors, batch.rejected


def match_locally(
    filter_set: FilterSet, alerts: Sequence[Alert], config: AnnotateConfig | None = None
) -> tuple[list[FilterMatch], list[FilterErrorReport], list[DeadLetter]]:
    """Annotate ``alerts`` as the filters need, then evaluate the set over them.

    Returns the matches, the per-filter error reports and the alerts an annotator rejected.
    """
    return LocalRunner(filter_set, config).run(alerts)
