"""Annotators: sky position, catalogue cross-match, dust, light-curve features and tags.

Each annotator is a module of pure batched (numpy) functions; ``transform.AnnotateAlerts`` wires
the enabled ones into a pipeline; ``transforms.annotation_model`` holds the typed result and its
dotted paths.
"""

from transforms.annotate.transform import (
    AnnotateAlerts,
    AnnotateConfig,
    Annotator,
    annotate_batch,
    load_annotators,
)
from transforms.annotation_model import (
    AnnotatedAlert,
    Annotations,
    field_paths,
    get_path,
    to_json_dict,
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
