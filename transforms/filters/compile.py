"""Compile a whole filter set into one column-wise evaluator, computed once per batch.

:func:`compile_filter_set` turns every filter's expression into one program over a batch of
alerts: each distinct sub-expression (structural equality, across all filters) becomes one slot
computed once per batch with numpy, so a thousand filters that all test ``mag < 19`` or
``reliability > 0.8`` compute it once. Columns are extracted from the alerts only for the fields
some filter reads (``transforms.filters.columns``); annotation fields come from the optional
``annotations`` mapping (``name -> numpy array``: NaN, ``None`` or a masked entry means null).

Semantics (shared with the per-alert interpreter ``transforms.filters.reference``, which the
tests and the benchmark use as the reference and baseline):

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

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from transforms.alert_model import Alert
from transforms.filters import expr as nodes
from transforms.filters.columns import (
    Batch,
    Bool,
    Column,
    MissingColumn,
    Num,
    Str,
    as_float,
    err_or,
    is_int,
)
from transforms.filters.geometry import ang2pix_nest, in_cone, unit_vectors
from transforms.filters.model import SURVEYS, Filter, FilterSet

DEFAULT_MAX_ERROR_FRACTION = 0.05
_SLOT_ERRORS = (ArithmeticError, ValueError, TypeError, IndexError, KeyError)

#: What each comparison and each arithmetic operator of the language computes, on numpy values
#: here and on plain values in the per-alert interpreter. ``/`` and ``%`` are apart: their
#: division by zero is an error, handled by each evaluator in its own way.
COMPARISONS: Mapping[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
ARITHMETIC: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


@dataclass(frozen=True, slots=True)
class _Failed:
    """A slot that failed for the whole batch; the filters that read it fail with ``reason``."""

    reason: str


_Value = Column | _Failed
_TRUE = np.bool_(True)
_FALSE = np.bool_(False)


# --- slot evaluation ------------------------------------------------------------------------


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    if is_int(a) and is_int(b):
        return a, b
    if isinstance(a, np.ndarray) and a.dtype.kind == "U":
        return a, b
    if isinstance(b, np.ndarray) and b.dtype.kind == "U":
        return a, b
    if isinstance(a, np.str_) or isinstance(b, np.str_):
        return a, b
    return as_float(a), as_float(b)


def _known(value: Column) -> Any:
    if isinstance(value, Bool):
        return value.t | value.f
    return value.valid


def _literal(value: Any) -> _Value:
    if isinstance(value, bool):
        return Bool(np.bool_(value), np.bool_(not value))
    if isinstance(value, str):
        return Str(np.str_(value), _TRUE)
    if isinstance(value, int):
        return Num(np.int64(value), _TRUE)
    if isinstance(value, float) and math.isnan(value):
        return Num(np.float64(0.0), _FALSE)
    return Num(np.float64(value), _TRUE)


def _arith(op: str, a: Num, b: Num) -> Num:
    x, y = as_float(a.values), as_float(b.values)
    valid = a.valid & b.valid
    err = err_or(a.err, b.err)
    if op in ARITHMETIC:
        out = ARITHMETIC[op](x, y)
    else:
        zero = valid & (y == 0)
        err = err_or(err, zero)
        safe = np.where(y == 0, 1.0, y)
        out = x / safe if op == "/" else np.mod(x, safe)
    return Num(out, valid & ~np.isnan(out), err)


def _apply_logical(op: str, items: Sequence[Bool]) -> Bool:
    first = items[0]
    t, f, err = first.t, first.f, first.err
    for item in items[1:]:
        if op == "and":
            if item.err is not None:
                err = err_or(err, item.err & ~f)
            t, f = t & item.t, f | item.f
        else:
            if item.err is not None:
                err = err_or(err, item.err & ~t)
            t, f = t | item.t, f & item.f
    return Bool(t, f, err)


def _eval_slot(node: nodes.Expr, args: Sequence[Column], batch: Batch) -> _Value:
    match node:
        case nodes.Literal(value=value):
            return _literal(value)
        case nodes.Field(path=path):
            return batch.column(path)
        case nodes.Unary(op="not"):
            (a,) = args
            assert isinstance(a, Bool)
            return Bool(a.f, a.t, a.err)
        case nodes.Unary():
            (a,) = args
            assert isinstance(a, Num)
            return Num(-as_float(a.values), a.valid, a.err)
        case nodes.Logical(op=op):
            return _apply_logical(op, args)  # type: ignore[arg-type]
        case nodes.Binary(op=op) if op in ("+", "-", "*", "/", "%"):
            a, b = args
            return _arith(op, a, b)  # type: ignore[arg-type]
        case nodes.Binary(op=op):
            a, b = args
            err = err_or(a.err, b.err)
            if isinstance(a, Bool) and isinstance(b, Bool):
                same_t = (a.t & b.t) | (a.f & b.f)
                same_f = (a.t & b.f) | (a.f & b.t)
                return Bool(same_t, same_f, err) if op == "==" else Bool(same_f, same_t, err)
            x, y = _comparable(a.values, b.values)  # type: ignore[union-attr]
            result = COMPARISONS[op](x, y)
            valid = a.valid & b.valid  # type: ignore[union-attr]
            return Bool(valid & result, valid & ~result, err)
        case nodes.In(items=items, negated=negated):
            (a,) = args
            assert isinstance(a, Num | Str)
            # The checker admits number and string literals only.
            constants: list[Any] = [item.value for item in items.items]  # type: ignore[union-attr]
            values = a.values
            if isinstance(a, Num) and not (
                is_int(values) and all(isinstance(c, int) for c in constants)
            ):
                values = as_float(values)
                constants = [float(c) for c in constants]
            hit = np.isin(values, np.array(constants))
            t, f = a.valid & hit, a.valid & ~hit
            return Bool(f, t, a.err) if negated else Bool(t, f, a.err)
        case nodes.Between(negated=negated):
            x, lo, hi = args
            assert isinstance(x, Num) and isinstance(lo, Num) and isinstance(hi, Num)
            v, low, high = as_float(x.values), as_float(lo.values), as_float(hi.values)
            inside = (v >= low) & (v <= high)
            valid = x.valid & lo.valid & hi.valid
            err = err_or(x.err, lo.err, hi.err)
            t, f = valid & inside, valid & ~inside
            return Bool(f, t, err) if negated else Bool(t, f, err)
        case nodes.IsNull(negated=negated):
            (a,) = args
            known = _known(a)
            err = a.err
            return Bool(known, ~known, err) if negated else Bool(~known, known, err)
        case nodes.Call(name=name):
            return _call(node, name, args, batch)
    raise AssertionError(f"unhandled node {node!r}")


def _call(node: nodes.Call, name: str, args: Sequence[Column], batch: Batch) -> _Value:
    if name == "cone":
        ra, dec, ra0, dec0, radius = args
        assert all(isinstance(a, Num) for a in args)
        if batch.unit_vectors is None:
            batch.unit_vectors = unit_vectors(ra.values, dec.values)  # type: ignore[union-attr]
        centre = (ra0.values, dec0.values, radius.values)  # type: ignore[union-attr]
        if all(np.ndim(v) == 0 for v in centre):
            inside = _in_fixed_cone(batch, dec.values, *centre)  # type: ignore[union-attr]
        else:
            inside = in_cone(batch.unit_vectors, *centre)
        valid = ra.valid & dec.valid & ra0.valid & dec0.valid & radius.valid  # type: ignore[union-attr]
        err = err_or(*(a.err for a in args))
        return Bool(valid & inside, valid & ~inside, err)
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
        return Bool(valid & hit, valid & ~hit)
    nums = [a for a in args if isinstance(a, Num)]
    if name == "coalesce":
        return _coalesce(args)
    assert len(nums) == len(args)
    err = err_or(*(a.err for a in nums))
    valid = nums[0].valid
    for a in nums[1:]:
        valid = valid & a.valid
    x = as_float(nums[0].values)
    if name == "abs":
        return Num(np.abs(x), valid, err)
    if name == "log10":
        bad = valid & ~(x > 0)
        return Num(np.log10(np.where(x > 0, x, 1.0)), valid, err_or(err, bad))
    if name == "sqrt":
        bad = valid & (x < 0)
        return Num(np.sqrt(np.where(x < 0, 0.0, x)), valid, err_or(err, bad))
    combine = np.minimum if name == "min" else np.maximum
    out = x
    for a in nums[1:]:
        out = combine(out, as_float(a.values))
    return Num(out, valid, err)


def _in_fixed_cone(
    batch: Batch, dec: npt.NDArray[Any], ra0: Any, dec0: Any, radius_arcsec: Any
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


def _coalesce(args: Sequence[Column]) -> _Value:
    err = err_or(*(a.err for a in args))
    last = args[-1]
    if isinstance(last, Bool):
        t, f = last.t, last.f
        for a in reversed(args[:-1]):
            assert isinstance(a, Bool)
            known = a.t | a.f
            t = np.where(known, a.t, t)
            f = np.where(known, a.f, f)
        return Bool(t, f, err)
    values, valid = last.values, last.valid
    for a in reversed(args[:-1]):
        values = np.where(a.valid, a.values, values)  # type: ignore[union-attr]
        valid = a.valid | valid  # type: ignore[union-attr]
    return type(last)(values, valid, err)


def _slot_inputs(node: nodes.Expr) -> tuple[nodes.Expr, ...]:
    """The sub-expressions a slot reads (lists of constants are part of the node itself)."""
    match node:
        case nodes.In(operand=operand):
            return (operand,)
        case nodes.Call(name="cone", args=args):
            return (nodes.Field("ra"), nodes.Field("dec"), *args)
        case nodes.Call(name="healpix_in"):
            return (nodes.Field("ra"), nodes.Field("dec"))
        case nodes.ListExpr():
            return ()
    return nodes.children(node)


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


def scoped_expression(flt: Filter) -> nodes.Expr:
    """The filter's ``where``, restricted to its surveys when it names only some of them."""
    if set(flt.surveys) == set(SURVEYS):
        return flt.expression
    surveys = nodes.ListExpr(tuple(nodes.Literal(s) for s in flt.surveys))
    return nodes.Logical("and", (nodes.In(nodes.Field("survey"), surveys, False), flt.expression))


class CompiledFilterSet:
    """A filter set compiled once per version; call :meth:`evaluate` on each batch of alerts."""

    def __init__(
        self, filter_set: FilterSet, max_error_fraction: float = DEFAULT_MAX_ERROR_FRACTION
    ) -> None:
        self.version = filter_set.version
        self.filters = filter_set.filters
        self.max_error_fraction = max_error_fraction
        self._index: dict[nodes.Expr, int] = {}
        self._nodes: list[nodes.Expr] = []
        self._inputs: list[tuple[int, ...]] = []
        self._roots = tuple(self._add(scoped_expression(f)) for f in self.filters)

    @property
    def slot_count(self) -> int:
        """Distinct sub-expressions across the set (what one batch evaluates)."""
        return len(self._nodes)

    def _add(self, node: nodes.Expr) -> int:
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
        batch = Batch(alerts, annotations if annotations is not None else {}, n)
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
                except MissingColumn as error:
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
                assert isinstance(value, Bool)
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
