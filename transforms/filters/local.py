"""A filter set over alerts in one process, the way the broker's stages compute it.

Used by ``alertflow filters test`` and as the reference that the pipeline's outputs are
compared with: the same annotators (only those the filters name) and the same evaluator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from transforms.alert_model import Alert
from transforms.annotate.transform import (
    AnnotateConfig,
    AnnotatedAlert,
    annotate_batch,
    load_annotators,
    needed_annotators,
)
from transforms.decode import DeadLetter
from transforms.filters.apply import FilterErrorReport, FilterMatch, evaluate_batch
from transforms.filters.compile import compile_filter_set
from transforms.filters.document import FilterSet


class LocalRunner:
    """A filter set over batches of alerts in one process: the annotators it needs are loaded
    and the filters compiled once, then :meth:`run` takes one batch at a time."""

    def __init__(self, filter_set: FilterSet, config: AnnotateConfig | None = None) -> None:
        needed = needed_annotators(filter_set)
        base = config if config is not None else AnnotateConfig()
        self._loaded = load_annotators(replace(base, enabled=needed & base.enabled)) if needed \
            else None  # fmt: skip
        self._compiled = compile_filter_set(filter_set)

    def run(
        self, alerts: Sequence[Alert]
    ) -> tuple[list[FilterMatch], list[FilterErrorReport], list[DeadLetter]]:
        """The matches, the per-filter error reports and the alerts an annotator rejected."""
        annotated: list[AnnotatedAlert] = []
        rejected: list[DeadLetter] = []
        if self._loaded is not None:
            for result in annotate_batch(list(alerts), self._loaded):
                (rejected if isinstance(result, DeadLetter) else annotated).append(result)
            kept = [a.alert for a in annotated]
            annotations = [a.annotations for a in annotated]
        else:
            kept, annotations = list(alerts), None
        matches: list[FilterMatch] = []
        errors: list[FilterErrorReport] = []
        for item in evaluate_batch(self._compiled, kept, annotations):
            (errors if isinstance(item, FilterErrorReport) else matches).append(item)
        return matches, errors, rejected


def match_locally(
    filter_set: FilterSet, alerts: Sequence[Alert], config: AnnotateConfig | None = None
) -> tuple[list[FilterMatch], list[FilterErrorReport], list[DeadLetter]]:
    """Annotate ``alerts`` as the filters need, then evaluate the set over them.

    Returns the matches, the per-filter error reports and the alerts an annotator rejected.
    """
    return LocalRunner(filter_set, config).run(alerts)
