"""The per-alert interpreter of a filter expression: the reference semantics, and the baseline.

:func:`compile_row_predicate` evaluates an expression on one alert at a time with plain Python
values, closures built once per expression. It has the semantics of the column-wise evaluator
(``transforms.filters.compile``: three-valued null logic, NaN as null, per-alert errors as a
no-match that counts, short-circuit ``and``/``or``) and is written apart from it (only the
operators' table is shared), so the tests compare the two on random expressions and the
benchmark measures what compiling buys.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from transforms.alert_model import Alert
from transforms.filters import expr as nodes
from transforms.filters.catalogue import lookup
from transforms.filters.compile import ARITHMETIC, COMPARISONS
from transforms.filters.geometry import in_cone_scalar, pixel_scalar


class RowError(Exception):
    """A per-alert evaluation error (division by zero, log10 of x <= 0, missing annotation)."""


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """One filter on one alert: matched, or errored (a no-match that counts against it)."""

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
        return bool(COMPARISONS[op](a, b))
    if not (isinstance(a, int) and isinstance(b, int)):
        a, b = float(a), float(b)
    return bool(COMPARISONS[op](a, b))


def _row_arith(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        # The right side is still evaluated (as in the column-wise program) so errors count.
        return None
    x, y = float(a), float(b)
    if op in ("/", "%") and y == 0:
        raise RowError(f"{op} by zero")
    if op in ARITHMETIC:
        out = ARITHMETIC[op](x, y)
    elif op == "/":
        with np.errstate(all="ignore"):
            out = float(np.float64(x) / np.float64(y))
    else:
        with np.errstate(all="ignore"):
            out = float(np.mod(np.float64(x), np.float64(y)))
    return None if math.isnan(out) else out


def _closure(node: nodes.Expr) -> _Fn:
    match node:
        case nodes.Literal(value=value):
            const = None if isinstance(value, float) and math.isnan(value) else value
            return lambda row: const
        case nodes.Field(path=path):
            return _row_field(path)
        case nodes.Unary(op="not", operand=operand):
            inner = _closure(operand)
            return lambda row: None if (v := inner(row)) is None else not v
        case nodes.Unary(operand=operand):
            inner = _closure(operand)
            return lambda row: None if (v := inner(row)) is None else -float(v)
        case nodes.Logical(op=op, items=items):
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
        case nodes.Binary(op=op, left=left, right=right):
            lf, rf = _closure(left), _closure(right)
            if op in ("+", "-", "*", "/", "%"):
                return lambda row: _row_arith(op, lf(row), rf(row))
            return lambda row: _row_compare(op, lf(row), rf(row))
        case nodes.In(operand=operand, items=items, negated=negated):
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
        case nodes.Between(operand=operand, low=low, high=high, negated=negated):
            xf, lf, hf = _closure(operand), _closure(low), _closure(high)

            def between(row: _Row) -> Any:
                x, lo, hi = xf(row), lf(row), hf(row)
                if x is None or lo is None or hi is None:
                    return None
                inside = float(lo) <= float(x) <= float(hi)
                return inside != negated

            return between
        case nodes.IsNull(operand=operand, negated=negated):
            inner = _closure(operand)
            return lambda row: (inner(row) is None) != negated
        case nodes.Call(name=name, args=args):
            return _call_closure(name, args)
    raise AssertionError(f"unhandled node {node!r}")


def _call_closure(name: str, args: tuple[nodes.Expr, ...]) -> _Fn:
    if name == "healpix_in":
        nside = int(args[0].value)  # type: ignore[union-attr, arg-type]
        wanted = {item.value for item in args[1].items}  # type: ignore[union-attr]
        return lambda row: pixel_scalar(nside, row[0].ra, row[0].dec) in wanted
    fns = [_closure(a) for a in args]
    if name == "cone":

        def cone(row: _Row) -> Any:
            ra0, dec0, radius = (fn(row) for fn in fns)
            if ra0 is None or dec0 is None or radius is None:
                return None
            return in_cone_scalar(row[0].ra, row[0].dec, float(ra0), float(dec0), float(radius))

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


def compile_row_predicate(
    expr: nodes.Expr,
) -> Callable[[Alert, Mapping[str, Any] | None], RowOutcome]:
    """A per-alert predicate with the same semantics as the column-wise evaluator."""
    fn = _closure(expr)

    def predicate(alert: Alert, annotations: Mapping[str, Any] | None = None) -> RowOutcome:
        try:
            return RowOutcome(fn((alert, annotations or {})) is True, False)
        except RowError:
            return RowOutcome(False, True)

    return predicate
