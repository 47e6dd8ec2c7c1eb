"""The columns a compiled filter set computes with, and where they come from.

A value over a batch of alerts is a :class:`Num` or :class:`Str` (values and a validity mask)
or a :class:`Bool` (definitely true, definitely false: neither is null), each with an optional
per-alert error mask. :func:`alert_column` reads an alert field from the alert model,
:func:`annotation_column` an annotation array (NaN, None and masked entries are null);
:class:`Batch` is one batch's context: its alerts, annotation columns, and what the sky
functions and history fields compute once per batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from transforms.alert_model import Alert
from transforms.filters.catalogue import (
    HISTORY_VALUES,
    FieldType,
    HistorySummary,
    history_summary,
    lookup,
)


@dataclass(frozen=True, slots=True)
class Num:
    """Numbers: float64, or int64 for ids (compared exactly)."""

    values: Any  # ndarray or numpy scalar (float64 or int64)
    valid: Any  # bool ndarray or np.bool_
    err: Any = None  # bool ndarray, or None for "no errors"


@dataclass(frozen=True, slots=True)
class Str:
    """Strings; ``valid`` False where null."""

    values: Any
    valid: Any
    err: Any = None


@dataclass(frozen=True, slots=True)
class Bool:
    """A condition in three-valued logic: neither ``t`` nor ``f`` where unknown."""

    t: Any  # definitely true
    f: Any  # definitely false
    err: Any = None


Column = Num | Str | Bool


def err_or(*errs: Any) -> Any:
    """The union of error masks (None: no errors)."""
    out = None
    for err in errs:
        if err is None:
            continue
        out = err if out is None else (out | err)
    return out


def as_float(values: Any) -> Any:
    """Values as float64, array or scalar."""
    return (
        values.astype(np.float64, copy=False)
        if isinstance(values, np.ndarray)
        else np.float64(values)
    )


def is_int(values: Any) -> bool:
    """Whether the values are integers (compared exactly, not as floats)."""
    return np.asarray(values).dtype.kind in "iu"


class MissingColumn(Exception):
    """A column the batch cannot give (an annotation not provided, or of the wrong shape)."""


def _none_mask(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    return np.fromiter((v is not None for v in values), dtype=bool, count=len(values))


def alert_column(
    spec_name: str, alerts: Sequence[Alert], summaries: Sequence[HistorySummary] | None = None
) -> Num | Str | Bool:
    """One alert field as a column over the batch (``summaries``: history summaries, reused)."""
    spec = lookup(spec_name)
    assert spec is not None and spec.getter is not None
    if summaries is not None and spec_name in HISTORY_VALUES:
        value = HISTORY_VALUES[spec_name]
        raw = [value(h, a) for h, a in zip(summaries, alerts, strict=True)]
    else:
        raw = [spec.getter(a) for a in alerts]
    if spec.dtype == "U":
        valid = np.array([v is not None for v in raw], dtype=bool)
        return Str(np.array([v if v is not None else "" for v in raw], dtype=str), valid)
    if spec.dtype == "b":
        return Bool(
            np.array([v is True for v in raw], dtype=bool),
            np.array([v is False for v in raw], dtype=bool),
        )
    if spec.dtype == "i8":
        valid = np.array([v is not None for v in raw], dtype=bool)
        return Num(np.array([v if v is not None else 0 for v in raw], dtype=np.int64), valid)
    values = np.array([np.nan if v is None else v for v in raw], dtype=np.float64)
    return Num(values, ~np.isnan(values))


def annotation_column(name: str, array: Any, n: int, ftype: FieldType) -> Num | Str | Bool:
    """An annotation array as a column; NaN, None and masked entries are null."""
    arr = np.asarray(array) if not isinstance(array, np.ma.MaskedArray) else array
    if arr.shape != (n,):
        raise MissingColumn(f"annotation column {name!r} has shape {arr.shape}, expected ({n},)")
    mask = (
        np.ma.getmaskarray(arr) if isinstance(arr, np.ma.MaskedArray) else np.zeros(n, dtype=bool)
    )
    data = np.ma.getdata(arr)
    if ftype is FieldType.NUMBER:
        if data.dtype == object:
            present = _none_mask(data) & ~mask
            values = np.array(
                [float(v) if p else np.nan for v, p in zip(data, present, strict=True)],
                dtype=np.float64,
            )
        elif data.dtype.kind in "iu":
            return Num(data.astype(np.int64), ~mask)
        else:
            values = data.astype(np.float64)
        values = np.where(mask, np.nan, values)
        return Num(values, ~np.isnan(values))
    if ftype is FieldType.STRING:
        present = (_none_mask(data) if data.dtype == object else np.ones(n, dtype=bool)) & ~mask
        values = np.array(
            [str(v) if p else "" for v, p in zip(data, present, strict=True)], dtype=str
        )
        return Str(values, present)
    present = (_none_mask(data) if data.dtype == object else np.ones(n, dtype=bool)) & ~mask
    truth = np.array(
        [bool(v) if p else False for v, p in zip(data, present, strict=True)], dtype=bool
    )
    return Bool(truth & present, ~truth & present)


@dataclass
class Batch:
    """One batch: its alerts and annotation columns, and what is computed once per batch."""

    alerts: Sequence[Alert]
    annotations: Mapping[str, Any]
    n: int
    healpix: dict[int, npt.NDArray[Any]] = field(default_factory=dict)
    unit_vectors: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]] | None = None
    summaries: list[HistorySummary] | None = None
    dec_order: npt.NDArray[Any] | None = None
    dec_sorted: npt.NDArray[Any] | None = None

    def column(self, path: str) -> Num | Str | Bool:
        spec = lookup(path)
        assert spec is not None
        if spec.annotator is None:
            if path in HISTORY_VALUES and self.summaries is None:
                self.summaries = [history_summary(a) for a in self.alerts]
            return alert_column(path, self.alerts, self.summaries)
        if path not in self.annotations:
            raise MissingColumn(
                f"annotation column {path!r} was not provided (annotator {spec.annotator!r})"
            )
        return annotation_column(path, self.annotations[path], self.n, spec.type)
