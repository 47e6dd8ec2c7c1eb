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


def match_locally(
    filter_set: FilterSet, alerts: Sequence[Alert], config: AnnotateConfig | None = None
) -> tuple[list[FilterMatch], list[FilterErrorReport], list[DeadLetter]]:
    """Annotate ``alerts`` as the filters need, then evaluate the set over them.

    Returns the matches, the per-filter error reports and the alerts an annotator rejected.
    """
    needed = needed_annotators(filter_set)
    annotated: list[AnnotatedAlert] = []
    rejected: list[DeadLetter] = []
    if needed:
        base = config if config is not None else AnnotateConfig()
        loaded = load_annotators(replace(base, enabled=needed & base.enabled))
        for result in annotate_batch(list(alerts), loaded):
            (rejected if isinstance(result, DeadLetter) else annotated).append(result)
        kept = [a.alert for a in annotated]
        annotations = [a.annotations for a in annotated]
    else:
        kept, annotations = list(alerts), None
    compiled = compile_filter_set(filter_set)
    matches: list[FilterMatch] = []
    errors: list[FilterErrorReport] = []
    for item in evaluate_batch(compiled, kept, annotations):
        (errors if isinstance(item, FilterErrorReport) else matches).append(item)
    return matches, errors, rejected
