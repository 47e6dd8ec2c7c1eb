"""Annotators: sky position, catalogue cross-match, dust, light-curve features and tags.

Each annotator is a module of pure batched (numpy) functions; ``transform.AnnotateAlerts`` wires
the enabled ones into a pipeline and ``record`` holds the typed result and its dotted paths.
"""

from transforms.annotate.record import Annotations, field_paths, get_path, to_json_dict
from transforms.annotate.transform import (
    AnnotateAlerts,
    AnnotateConfig,
    AnnotatedAlert,
    Annotator,
    annotate_batch,
    load_annotators,
)

__all__ = [
    "AnnotateAlerts",
    "AnnotateConfig",
    "AnnotatedAlert",
    "Annotations",
    "Annotator",
    "annotate_batch",
    "field_paths",
    "get_path",
    "load_annotators",
    "to_json_dict",
]
