"""Compile a whole filter set into one column-wise evaluator, and a per-alert reference one.

:func:`compile_filter_set` turns every filter's expression into one program over a batch of
alerts: each distinct sub-expression (structural equality, across all filters) becomes one slot
computed once per batch with numpy, so a thousand filters that all test ``mag < 19`` or
``reliability > 0.8`` compute it once. Columns are extracted from the alerts only for the fields
some filter reads; annotation fields come from the optional ``annotations`` mapping
(``name -> numpy array``: NaN, ``None`` or a masked entry means null).

Semantics (shared with the per-alert interpreter :func:`compile_row_predicate`, which the tests
and the benchmark use as the reference and baseline):

* null is three-valued logic as in SQL: a comparison with a missing value is unknown; ``not``
  of unknown is unknown; ``false and unknown`` is false, ``true or unknown`` is true; an alert
  matches only when the whole condition is definitely true. NaN in the data counts as null.
* arithmetic on numbers is float64 (integer ids compare exactly); a NaN result is null.
* per-alert errors (division or modulo by zero, ``log10`` of x <= 0, ``sqrt`` of x < 0) make
  that alert a no-match for that filter and count against it. ``and``/``or`` short-circuit:
  ``x != 0 and 1 / x > 2`` never errors, because the right side does not count where the left
  side is already false.
* a failure of a whole slot (a missing annotation column, an unexpected numpy error) fails the
  filters that use it for the whole batch (every alert counts as an error for them); the other
  filters go on.

A filter whose errors exceed ``max_error_fraction`` of the batch is listed in
``BatchResult.flagged``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
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
from transforms.filters.document import SURVEYS, Filter, FilterSet
from transforms.filters.expr import (
    Between,
    Binary,
    Call,
    Expr,
    Field,
    In,
    IsNull,
    ListExpr,
    Literal,
    Logical,
    Unary,
    children,
)

DEFAULT_MAX_ERROR_FRACTION = 0.05
_SLOT_ERRORS = (ArithmeticError, ValueError, TypeError, IndexError, KeyError)


# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Num:
    values: Any  # ndarray or numpy scalar (float64 or int64)
    valid: Any  # bool ndarray or np.bool_
    err: Any = None  # bool ndarray, or None for "no errors"


@dataclass(frozen=True, slots=True)
class _Str:
    values: Any
    valid: Any
    err: Any = None


@dataclass(frozen=True, slots=True)
class _Bool:
    t: Any  # definitely true
    f: Any  # definitely false
    err: Any = None


@dataclass(frozen=True, slots=True)
class _Failed:
    reason: str


_Column = _Num | _Str | _Bool
_Value = _Column | _Failed
_TRUE = np.bool_(True)
_FALSE = np.bool_(False)


def _err_or(*errs: Any) -> Any:
    out = None
    for err in errs:
        if err is None:
            continue
        out = err if out is None else (out | err)
    return out


def _float(values: Any) -> Any:
    return (
        values.astype(np.float64, copy=False)
        if isinstance(values, np.ndarray)
        else np.float64(values)
    )


def _is_int(values: Any) -> bool:
    return np.asarray(values).dtype.kind in "iu"


# --- sky functions --------------------------------------------------------------------------


def unit_vectors(ra_deg: Any, dec_deg: Any) -> tuple[Any, Any, Any]:
    """Cartesian unit vectors of positions in degrees (numpy broadcasting)."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)


def chord2_limit(radius_arcsec: Any) -> Any:
    """Squared chord length of a cone radius; -1 (nothing inside) for a negative radius.

    Comparing squared chords instead of angles keeps full precision at arcsecond radii, where
    ``1 - cos(r)`` would lose it, and costs no trigonometry per alert.
    """
    radius = np.minimum(np.asarray(radius_arcsec, dtype=np.float64) / 3600.0, 180.0)
    chord = 2.0 * np.sin(np.radians(radius) / 2.0)
    return np.where(radius < 0, -1.0, chord * chord)


def in_cone(vectors: tuple[Any, Any, Any], ra0: Any, dec0: Any, radius_arcsec: Any) -> Any:
    """Whether positions (as unit ``vectors``) lie within ``radius_arcsec`` of (ra0, dec0)."""
    x, y, z = vectors
    x0, y0, z0 = unit_vectors(ra0, dec0)
    dx, dy, dz = x - x0, y - y0, z - z0
    return dx * dx + dy * dy + dz * dz <= chord2_limit(radius_arcsec)


def _spread_bits(v: npt.NDArray[Any]) -> npt.NDArray[Any]:
    # Interleave: bit k of v goes to bit 2k (v < 2**29).
    v = v.astype(np.uint64)
    v = (v | (v << np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v << np.uint64(2))) & np.uint64(0x3333333333333333)
    v = (v | (v << np.uint64(1))) & np.uint64(0x5555555555555555)
    return v


def ang2pix_nest(nside: int, ra_deg: Any, dec_deg: Any) -> npt.NDArray[Any]:
    """HEALPix NESTED pixel index of positions in degrees (Gorski et al. 2005, as in healpy)."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    theta = np.radians(90.0 - dec)
    z = np.cos(theta)
    sth = np.sin(theta)
    za = np.abs(z)
    tt = np.mod(np.radians(ra), 2.0 * np.pi) * (2.0 / np.pi)  # in [0, 4)
    tt = np.where(tt >= 4.0, 0.0, tt)
    ns = np.int64(nside)
    # Equatorial region.
    temp1 = nside * (0.5 + tt)
    temp2 = nside * z * 0.75
    jp = (temp1 - temp2).astype(np.int64)
    jm = (temp1 + temp2).astype(np.int64)
    ifp = jp // ns
    ifm = jm // ns
    face_eq = np.where(ifp == ifm, ifp | 4, np.where(ifp < ifm, ifp, ifm + 8))
    ix_eq = jm & (ns - 1)
    iy_eq = ns - (jp & (ns - 1)) - 1
    # Polar caps (sin(theta) form keeps precision near the poles, as healpy does).
    ntt = np.minimum(tt.astype(np.int64), 3)
    tp = tt - ntt
    tmp = nside * sth / np.sqrt((1.0 + za) / 3.0)
    jp_p = np.minimum((tp * tmp).astype(np.int64), ns - 1)
    jm_p = np.minimum(((1.0 - tp) * tmp).astype(np.int64), ns - 1)
    north = z > 0
    face_p = np.where(north, ntt, ntt + 8)
    ix_p = np.where(north, ns - jm_p - 1, jp_p)
    iy_p = np.where(north, ns - jp_p - 1, jm_p)
    polar = za > 2.0 / 3.0
    face = np.where(polar, face_p, face_eq)
    ix = np.where(polar, ix_p, ix_eq)
    iy = np.where(polar, iy_p, iy_eq)
    sub = _spread_bits(ix) | (_spread_bits(iy) << np.uint64(1))
    pixels: npt.NDArray[Any] = face.astype(np.int64) * ns * ns + sub.astype(np.int64)
    return pixels


# --- batch context --------------------------------------------------------------------------


class _MissingColumn(Exception):
    pass


def _none_mask(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    return np.fromiter((v is not None for v in values), dtype=bool, count=len(values))


def alert_column(
    spec_name: str, alerts: Sequence[Alert], summaries: Sequence[HistorySummary] | None = None
) -> _Num | _Str | _Bool:
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
        return _Str(np.array([v if v is not None else "" for v in raw], dtype=str), valid)
    if spec.dtype == "b":
        return _Bool(
            np.array([v is True for v in raw], dtype=bool),
            np.array([v is False for v in raw], dtype=bool),
        )
    if spec.dtype == "i8":
        valid = np.array([v is not None for v in raw], dtype=bool)
        return _Num(np.array([v if v is not None else 0 for v in raw], dtype=np.int64), valid)
    values = np.array([np.nan if v is None else v for v in raw], dtype=np.float64)
    return _Num(values, ~np.isnan(values))


def annotation_column(name: str, array: Any, n: int, ftype: FieldType) -> _Num | _Str | _Bool:
    """An annotation array as a column; NaN, None and masked entries are null."""
    arr = np.asarray(array) if not isinstance(array, np.ma.MaskedArray) else array
    if arr.shape != (n,):
        raise _MissingColumn(f"annotation column {name!r} has shape {arr.shape}, expected ({n},)")
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
            return _Num(data.astype(np.int64), ~mask)
        else:
            values = data.astype(np.float64)
        values = np.where(mask, np.nan, values)
        return _Num(values, ~np.isnan(values))
    if ftype is FieldType.STRING:
        present = (_none_mask(data) if data.dtype == object else np.ones(n, dtype=bool)) & ~mask
        values = np.array(
            [str(v) if p else "" for v, p in zip(data, present, strict=True)], dtype=str
        )
        return _Str(values, present)
    present = (_none_mask(data) if data.dtype == object else np.ones(n, dtype=bool)) & ~mask
    truth = np.array(
        [bool(v) if p else False for v, p in zip(data, present, strict=True)], dtype=bool
    )
    return _Bool(truth & present, ~truth & present)


@dataclass
class _Batch:
    alerts: Sequence[Alert]
    annotations: Mapping[str, Any]
    n: int
    healpix: dict[int, npt.NDArray[Any]] = field(default_factory=dict)
    unit_vectors: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]] | None = None
    summaries: list[HistorySummary] | None = None
    dec_order: npt.NDArray[Any] | None = None
    dec_sorted: npt.NDArray[Any] | None = None

    def column(self, path: str) -> _Num | _Str | _Bool:
        spec = lookup(path)
        assert spec is not None
        if spec.annotator is None:
            if path in HISTORY_VALUES and self.summaries is None:
                self.summaries = [history_summary(a) for a in self.alerts]
            return alert_column(path, self.alerts, self.summaries)
        if path not in self.annotations:
            raise _MissingColumn(
                f"annotation column {path!r} was not provided (annotator {spec.annotator!r})"
            )
        return annotation_column(path, self.annotations[path], self.n, spec.type)


# --- slot evaluation ------------------------------------------------------------------------


def _compare(op: str, a: Any, b: Any) -> Any:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    if _is_int(a) and _is_int(b):
        return a, b
    if isinstance(a, np.ndarray) and a.dtype.kind == "U":
        return a, b
    if isinstance(b, np.ndarray) and b.dtype.kind == "U":
        return a, b
    if isinstance(a, np.str_) or isinstance(b, np.str_):
        return a, b
    return _float(a), _float(b)


def _known(value: _Column) -> Any:
    if isinstance(value, _Bool):
        return value.t | value.f
    return value.valid


def _literal(value: Any) -> _Value:
    if isinstance(value, bool):
        return _Bool(np.bool_(value), np.bool_(not value))
    if isinstance(value, str):
        return _Str(np.str_(value), _TRUE)
    if isinstance(value, int):
        return _Num(np.int64(value), _TRUE)
    if isinstance(value, float) and math.isnan(value):
        return _Num(np.float64(0.0), _FALSE)
    return _Num(np.float64(value), _TRUE)


def _arith(op: str, a: _Num, b: _Num) -> _Num:
    x, y = _float(a.values), _float(b.values)
    valid = a.valid & b.valid
    err = _err_or(a.err, b.err)
    if op == "+":
        out = x + y
    elif op == "-":
        out = x - y
    elif op == "*":
        out = x * y
    else:
        zero = valid & (y == 0)
        err = _err_or(err, zero)
        safe = np.where(y == 0, 1.0, y)
        out = x / safe if op == "/" else np.mod(x, safe)
    return _Num(out, valid & ~np.isnan(out), err)


def _apply_logical(op: str, items: Sequence[_Bool]) -> _Bool:
    first = items[0]
    t, f, err = first.t, first.f, first.err
    for item in items[1:]:
        if op == "and":
            if item.err is not None:
                err = _err_or(err, item.err & ~f)
            t, f = t & item.t, f | item.f
        else:
            if item.err is not None:
                err = _err_or(err, item.err & ~t)
            t, f = t | item.t, f & item.f
    return _Bool(t, f, err)


def _eval_slot(node: Expr, args: Sequence[_Column], batch: _Batch) -> _Value:
    match node:
        case Literal(value=value):
            return _literal(value)
        case Field(path=path):
            return batch.column(path)
        case Unary(op="not"):
            (a,) = args
            assert isinstance(a, _Bool)
            return _Bool(a.f, a.t, a.err)
        case Unary():
            (a,) = args
            assert isinstance(a, _Num)
            return _Num(-_float(a.values), a.valid, a.err)
        case Logical(op=op):
            return _apply_logical(op, args)  # type: ignore[arg-type]
        case Binary(op=op) if op in ("+", "-", "*", "/", "%"):
            a, b = args
            return _arith(op, a, b)  # type: ignore[arg-type]
        case Binary(op=op):
            a, b = args
            err = _err_or(a.err, b.err)
            if isinstance(a, _Bool) and isinstance(b, _Bool):
                same_t = (a.t & b.t) | (a.f & b.f)
                same_f = (a.t & b.f) | (a.f & b.t)
                return _Bool(same_t, same_f, err) if op == "==" else _Bool(same_f, same_t, err)
            x, y = _comparable(a.values, b.values)  # type: ignore[union-attr]
            result = _compare(op, x, y)
            valid = a.valid & b.valid  # type: ignore[union-attr]
            return _Bool(valid & result, valid & ~result, err)
        case In(items=items, negated=negated):
            (a,) = args
            assert isinstance(a, _Num | _Str)
            # The checker admits number and string literals only.
            constants: list[Any] = [item.value for item in items.items]  # type: ignore[union-attr]
            values = a.values
            if isinstance(a, _Num) and not (
                _is_int(values) and all(isinstance(c, int) for c in constants)
            ):
                values = _float(values)
                constants = [float(c) for c in constants]
            hit = np.isin(values, np.array(constants))
            t, f = a.valid & hit, a.valid & ~hit
            return _Bool(f, t, a.err) if negated else _Bool(t, f, a.err)
        case Between(negated=negated):
            x, lo, hi = args
            assert isinstance(x, _Num) and isinstance(lo, _Num) and isinstance(hi, _Num)
            v, low, high = _float(x.values), _float(lo.values), _float(hi.values)
            inside = (v >= low) & (v <= high)
            valid = x.valid & lo.valid & hi.valid
            err = _err_or(x.err, lo.err, hi.err)
            t, f = valid & inside, valid & ~inside
            return _Bool(f, t, err) if negated else _Bool(t, f, err)
        case IsNull(negated=negated):
            (a,) = args
            known = _known(a)
            err = a.err
            return _Bool(known, ~known, err) if negated else _Bool(~known, known, err)
        case Call(name=name):
            return _call(node, name, args, batch)
    raise AssertionError(f"unhandled node {node!r}")


def _call(node: Call, name: str, args: Sequence[_Column], batch: _Batch) -> _Value:
    if name == "cone":
        ra, dec, ra0, dec0, radius = args
        assert all(isinstance(a, _Num) for a in args)
        if batch.unit_vectors is None:
            batch.unit_vectors = unit_vectors(ra.values, dec.values)  # type: ignore[union-attr]
        centre = (ra0.values, dec0.values, radius.values)  # type: ignore[union-attr]
        if all(np.ndim(v) == 0 for v in centre):
            inside = _in_fixed_cone(batch, dec.values, *centre)  # type: ignore[union-attr]
        else:
            inside = in_cone(batch.unit_vectors, *centre)
        valid = ra.valid & dec.valid & ra0.valid & dec0.valid & radius.valid  # type: ignore[union-attr]
        err = _err_or(*(a.err for a in args))
        return _Bool(valid & inside, valid & ~inside, err)
    if name == "healpix_in":
        ra, dec = args
        nside_lit, pixels = node.args
        nside = int(nside_lit.value)  # type: ignore[union-attr, arg-type]
        pix = batch.healpix.get(nside)
        if pix is None:
            pix = ang2pix_nest(nside, ra.values, dec.values)  # type: ignore[union-attr]
            batch.healpix[nside] = pix
        wanted = np.array([item.value for item in pixels.items], dtype=np.int64)  # type: ignore[union-attr]
        hit = np.isin(pix, wanted)
        valid = ra.valid & dec.valid  # type: ignore[union-attr]
        return _Bool(valid & hit, valid & ~hit)
    nums = [a for a in args if isinstance(a, _Num)]
    if name == "coalesce":
        return _coalesce(args)
    assert len(nums) == len(args)
    err = _err_or(*(a.err for a in nums))
    valid = nums[0].valid
    for a in nums[1:]:
        valid = valid & a.valid
    x = _float(nums[0].values)
    if name == "abs":
        return _Num(np.abs(x), valid, err)
    if name == "log10":
        bad = valid & ~(x > 0)
        return _Num(np.log10(np.where(x > 0, x, 1.0)), valid, _err_or(err, bad))
    if name == "sqrt":
        bad = valid & (x < 0)
        return _Num(np.sqrt(np.where(x < 0, 0.0, x)), valid, _err_or(err, bad))
    combine = np.minimum if name == "min" else np.maximum
    out = x
    for a in nums[1:]:
        out = combine(out, _float(a.values))
    return _Num(out, valid, err)


def _in_fixed_cone(
    batch: _Batch, dec: npt.NDArray[Any], ra0: Any, dec0: Any, radius_arcsec: Any
) -> npt.NDArray[Any]:
    # A cone with a fixed centre only needs the alerts in its declination band: find them by
    # binary search in the batch sorted by declination, then test those exactly.
    if batch.dec_order is None:
        batch.dec_order = np.argsort(dec, kind="stable")
        batch.dec_sorted = dec[batch.dec_order]
    assert batch.unit_vectors is not None and batch.dec_sorted is not None
    inside = np.zeros(batch.n, dtype=bool)
    radius_deg = min(float(radius_arcsec) / 3600.0, 180.0) + 1e-9
    lo, hi = np.searchsorted(
        batch.dec_sorted, [float(dec0) - radius_deg, float(dec0) + radius_deg], side="left"
    )
    hi = np.searchsorted(batch.dec_sorted, float(dec0) + radius_deg, side="right")
    candidates = batch.dec_order[lo:hi]
    if len(candidates):
        x, y, z = batch.unit_vectors
        inside[candidates] = in_cone(
            (x[candidates], y[candidates], z[candidates]), ra0, dec0, radius_arcsec
        )
    return inside


def _coalesce(args: Sequence[_Column]) -> _Value:
    err = _err_or(*(a.err for a in args))
    last = args[-1]
    if isinstance(last, _Bool):
        t, f = last.t, last.f
        for a in reversed(args[:-1]):
            assert isinstance(a, _Bool)
            known = a.t | a.f
            t = np.where(known, a.t, t)
            f = np.where(known, a.f, f)
        return _Bool(t, f, err)
    values, valid = last.values, last.valid
    for a in reversed(args[:-1]):
        values = np.where(a.valid, a.values, values)  # type: ignore[union-attr]
        valid = a.valid | valid  # type: ignore[union-attr]
    return type(last)(values, valid, err)


def _slot_inputs(node: Expr) -> tuple[Expr, ...]:
    """The sub-expressions a slot reads (lists of constants are part of the node itself)."""
    match node:
        case In(operand=operand):
            return (operand,)
        case Call(name="cone", args=args):
            return (Field("ra"), Field("dec"), *args)
        case Call(name="healpix_in"):
            return (Field("ra"), Field("dec"))
        case ListExpr():
            return ()
    return children(node)


# --- the compiled set -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FilterOutcome:
    """One filter on one batch: which alerts matched, which errored, and a whole-batch failure."""

    name: str
    matches: npt.NDArray[Any]
    error_mask: npt.NDArray[Any]
    failure: str | None

    @property
    def errors(self) -> int:
        return int(self.error_mask.sum())

    @property
    def matched(self) -> int:
        return int(self.matches.sum())


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Every filter's outcome on one batch, the filter-set version, and the flagged filters."""

    version: int
    n_alerts: int
    outcomes: Mapping[str, FilterOutcome]
    flagged: tuple[str, ...]

    def matching_filters(self, index: int) -> tuple[str, ...]:
        """Names of the filters that selected alert ``index``."""
        return tuple(name for name, o in self.outcomes.items() if o.matches[index])


def scoped_expression(flt: Filter) -> Expr:
    """The filter's ``where``, restricted to its surveys when it names only some of them."""
    if set(flt.surveys) == set(SURVEYS):
        return flt.expression
    surveys = ListExpr(tuple(Literal(s) for s in flt.surveys))
    return Logical("and", (In(Field("survey"), surveys, False), flt.expression))


class CompiledFilterSet:
    """A filter set compiled once per version; call :meth:`evaluate` on each batch of alerts."""

    def __init__(
        self, filter_set: FilterSet, max_error_fraction: float = DEFAULT_MAX_ERROR_FRACTION
    ) -> None:
        self.version = filter_set.version
        self.filters = filter_set.filters
        self.max_error_fraction = max_error_fraction
        self._index: dict[Expr, int] = {}
        self._nodes: list[Expr] = []
        self._inputs: list[tuple[int, ...]] = []
        self._roots = tuple(self._add(scoped_expression(f)) for f in self.filters)

    @property
    def slot_count(self) -> int:
        """Distinct sub-expressions across the set (what one batch evaluates)."""
        return len(self._nodes)

    def _add(self, node: Expr) -> int:
        slot = self._index.get(node)
        if slot is not None:
            return slot
        inputs = tuple(self._add(child) for child in _slot_inputs(node))
        slot = self._index.setdefault(node, len(self._nodes))
        if slot == len(self._nodes):
            self._nodes.append(node)
            self._inputs.append(inputs)
        return slot

    def evaluate(
        self, alerts: Sequence[Alert], annotations: Mapping[str, Any] | None = None
    ) -> BatchResult:
        """Evaluate every filter on ``alerts``; never raises for a filter's own failure."""
        n = len(alerts)
        batch = _Batch(alerts, annotations if annotations is not None else {}, n)
        values: list[_Value] = []
        with np.errstate(all="ignore"):
            for node, inputs in zip(self._nodes, self._inputs, strict=True):
                args = [values[i] for i in inputs]
                failed = next((a for a in args if isinstance(a, _Failed)), None)
                if failed is not None:
                    values.append(failed)
                    continue
                columns = [a for a in args if not isinstance(a, _Failed)]  # all of them
                try:
                    values.append(_eval_slot(node, columns, batch))
                except _MissingColumn as error:
                    values.append(_Failed(str(error)))
                except _SLOT_ERRORS as error:
                    values.append(_Failed(f"{type(error).__name__}: {error}"))
        outcomes: dict[str, FilterOutcome] = {}
        flagged: list[str] = []
        for flt, root in zip(self.filters, self._roots, strict=True):
            value = values[root]
            if isinstance(value, _Failed):
                outcome = FilterOutcome(
                    flt.name, np.zeros(n, dtype=bool), np.ones(n, dtype=bool), value.reason
                )
            else:
                assert isinstance(value, _Bool)
                err = (
                    np.zeros(n, dtype=bool)
                    if value.err is None
                    else np.broadcast_to(value.err, (n,)).copy()
                )
                matches = np.broadcast_to(value.t, (n,)) & ~err
                outcome = FilterOutcome(flt.name, matches, err, None)
            outcomes[flt.name] = outcome
            has_errors = outcome.failure is not None or (value.err is not None)  # type: ignore[union-attr]
            if n and has_errors and outcome.errors > self.max_error_fraction * n:
                flagged.append(flt.name)
        return BatchResult(self.version, n, outcomes, tuple(flagged))


def compile_filter_set(
    filter_set: FilterSet, max_error_fraction: float = DEFAULT_MAX_ERROR_FRACTION
) -> CompiledFilterSet:
    """Compile ``filter_set`` (already validated) into one batch evaluator."""
    return CompiledFilterSet(filter_set, max_error_fraction)


# --- the per-alert interpreter (reference semantics and benchmark baseline) ---------------


class RowError(Exception):
    """A per-alert evaluation error (division by zero, log10 of x <= 0, missing annotation)."""


@dataclass(frozen=True, slots=True)
class RowOutcome:
    matched: bool
    error: bool


_Row = tuple[Alert, Mapping[str, Any]]
_Fn = Callable[[_Row], Any]


def _null_if_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _row_field(path: str) -> _Fn:
    spec = lookup(path)
    assert spec is not None
    if spec.annotator is None:
        getter = spec.getter
        assert getter is not None
        return lambda row: _null_if_nan(getter(row[0]))

    def annotation(row: _Row) -> Any:
        if path not in row[1]:
            raise RowError(f"annotation {path!r} not provided")
        value = row[1][path]
        if isinstance(value, np.generic):
            value = value.item()
        if value is np.ma.masked:
            return None
        return _null_if_nan(value)

    return annotation


def _row_compare(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str):
        return bool(_compare(op, a, b))
    if not (isinstance(a, int) and isinstance(b, int)):
        a, b = float(a), float(b)
    return bool(_compare(op, a, b))


def _row_arith(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        # The right side is still evaluated (as in the column-wise program) so errors count.
        return None
    x, y = float(a), float(b)
    if op in ("/", "%") and y == 0:
        raise RowError(f"{op} by zero")
    if op == "+":
        out = x + y
    elif op == "-":
        out = x - y
    elif op == "*":
        out = x * y
    elif op == "/":
        with np.errstate(all="ignore"):
            out = float(np.float64(x) / np.float64(y))
    else:
        with np.errstate(all="ignore"):
            out = float(np.mod(np.float64(x), np.float64(y)))
    return None if math.isnan(out) else out


def _closure(node: Expr) -> _Fn:
    match node:
        case Literal(value=value):
            const = None if isinstance(value, float) and math.isnan(value) else value
            return lambda row: const
        case Field(path=path):
            return _row_field(path)
        case Unary(op="not", operand=operand):
            inner = _closure(operand)
            return lambda row: None if (v := inner(row)) is None else not v
        case Unary(operand=operand):
            inner = _closure(operand)
            return lambda row: None if (v := inner(row)) is None else -float(v)
        case Logical(op=op, items=items):
            fns = [_closure(i) for i in items]
            decisive = op == "or"  # the value that settles it: True for or, False for and

            def logical(row: _Row) -> Any:
                unknown = False
                for fn in fns:
                    v = fn(row)
                    if v is decisive:
                        return decisive
                    unknown = unknown or v is None
                return None if unknown else not decisive

            return logical
        case Binary(op=op, left=left, right=right):
            lf, rf = _closure(left), _closure(right)
            if op in ("+", "-", "*", "/", "%"):
                return lambda row: _row_arith(op, lf(row), rf(row))
            return lambda row: _row_compare(op, lf(row), rf(row))
        case In(operand=operand, items=items, negated=negated):
            inner = _closure(operand)
            # The checker admits number and string literals only.
            constants: list[Any] = [item.value for item in items.items]  # type: ignore[union-attr]

            def member(row: _Row) -> Any:
                v = inner(row)
                if v is None:
                    return None
                if isinstance(v, str):
                    hit = v in constants
                elif isinstance(v, int) and all(isinstance(c, int) for c in constants):
                    hit = v in constants
                else:
                    hit = float(v) in [float(c) for c in constants if not isinstance(c, str)]
                return hit != negated

            return member
        case Between(operand=operand, low=low, high=high, negated=negated):
            xf, lf, hf = _closure(operand), _closure(low), _closure(high)

            def between(row: _Row) -> Any:
                x, lo, hi = xf(row), lf(row), hf(row)
                if x is None or lo is None or hi is None:
                    return None
                inside = float(lo) <= float(x) <= float(hi)
                return inside != negated

            return between
        case IsNull(operand=operand, negated=negated):
            inner = _closure(operand)
            return lambda row: (inner(row) is None) != negated
        case Call(name=name, args=args):
            return _call_closure(name, args)
    raise AssertionError(f"unhandled node {node!r}")


def _call_closure(name: str, args: tuple[Expr, ...]) -> _Fn:
    if name == "healpix_in":
        nside = int(args[0].value)  # type: ignore[union-attr, arg-type]
        wanted = {item.value for item in args[1].items}  # type: ignore[union-attr]
        return lambda row: _pixel_scalar(nside, row[0].ra, row[0].dec) in wanted
    fns = [_closure(a) for a in args]
    if name == "cone":

        def cone(row: _Row) -> Any:
            ra0, dec0, radius = (fn(row) for fn in fns)
            if ra0 is None or dec0 is None or radius is None:
                return None
            return _in_cone_scalar(row[0].ra, row[0].dec, float(ra0), float(dec0), float(radius))

        return cone
    if name == "coalesce":

        def coalesce(row: _Row) -> Any:
            values = [fn(row) for fn in fns]
            return next((v for v in values if v is not None), None)

        return coalesce

    def numeric(row: _Row) -> Any:
        values = [fn(row) for fn in fns]
        if any(v is None for v in values):
            return None
        x = float(values[0])
        if name == "abs":
            return abs(x)
        if name == "log10":
            if not x > 0:
                raise RowError("log10 of a number <= 0")
            return math.log10(x)
        if name == "sqrt":
            if x < 0:
                raise RowError("sqrt of a negative number")
            return math.sqrt(x)
        floats = [float(v) for v in values]
        return min(floats) if name == "min" else max(floats)

    return numeric


@functools.lru_cache(maxsize=65536)
def _unit_scalar(ra_deg: float, dec_deg: float) -> tuple[float, float, float]:
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    return math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)


def _in_cone_scalar(ra: float, dec: float, ra0: float, dec0: float, radius_arcsec: float) -> bool:
    if radius_arcsec < 0:
        return False
    x, y, z = _unit_scalar(ra, dec)
    x0, y0, z0 = _unit_scalar(ra0, dec0)
    chord = 2.0 * math.sin(math.radians(min(radius_arcsec / 3600.0, 180.0)) / 2.0)
    dx, dy, dz = x - x0, y - y0, z - z0
    return dx * dx + dy * dy + dz * dz <= chord * chord


@functools.lru_cache(maxsize=65536)
def _pixel_scalar(nside: int, ra: float, dec: float) -> int:
    return int(ang2pix_nest(nside, ra, dec))


def compile_row_predicate(expr: Expr) -> Callable[[Alert, Mapping[str, Any] | None], RowOutcome]:
    """A per-alert predicate with the same semantics as the column-wise evaluator."""
    fn = _closure(expr)

    def predicate(alert: Alert, annotations: Mapping[str, Any] | None = None) -> RowOutcome:
        try:
            return RowOutcome(fn((alert, annotations or {})) is True, False)
        except RowError:
            return RowOutcome(False, True)

    return predicate
