"""Annotation records seen column-wise by the filter evaluator.

The evaluator reads annotation fields as one array per dotted path; the annotators produce one
:class:`~transforms.annotation_model.Annotations` record per alert. :class:`AnnotationColumns`
bridges the two: it is the ``annotations`` mapping for ``CompiledFilterSet.evaluate`` and
builds a column only when a filter reads that path, once per batch. A value whose annotator did
not run is None, which the evaluator treats as null.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from transforms.annotation_model import Annotations, get_path


class AnnotationColumns(Mapping[str, npt.NDArray[np.object_]]):
    """``path -> object array`` over a batch of annotation records, computed on first use.

    ``tags.<name>`` is True where the tags annotator set that tag, False where it ran and did
    not, and None where it did not run. Other paths are :func:`get_path` values. An unknown
    path is absent (``in`` is False; indexing raises KeyError).
    """

    def __init__(self, records: Sequence[Annotations]) -> None:
        self._records = records
        self._columns: dict[str, npt.NDArray[np.object_]] = {}

    def __getitem__(self, path: str) -> npt.NDArray[np.object_]:
        if path not in self._columns:
            self._columns[path] = self._column(path)
        return self._columns[path]

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        try:
            self[path]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def _column(self, path: str) -> npt.NDArray[np.object_]:
        column = np.empty(len(self._records), dtype=object)
        head, _, tag = path.partition(".")
        if head == "tags" and tag:
            for i, record in enumerate(self._records):
                column[i] = None if record.tags is None else tag in record.tags.names
            return column
        for i, record in enumerate(self._records):
            column[i] = get_path(record, path)
        return column
