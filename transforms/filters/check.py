"""Type checking of a ``where`` expression against the field catalogue and the functions.

:func:`check_expression` reports unknown fields with the closest known names, unknown functions,
type mismatches, bad arguments (cone radii, HEALPix nsides and pixels, list items) and fields
whose annotator is missing from ``spec.annotations``, each as an :class:`ExprIssue` with its
offset in the expression; it also returns the type and the fields the expression reads.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

from transforms.filters import expr as nodes
from transforms.filters.catalogue import FUNCTIONS, MAX_NSIDE, FieldType, closest_fields, lookup

_N, _S, _B = FieldType.NUMBER, FieldType.STRING, FieldType.BOOL


@dataclass(frozen=True, slots=True)
class ExprIssue:
    """A problem found in an expression, at character ``offset``."""

    offset: int
    message: str


@dataclass
class _Checker:
    annotators: frozenset[str] | None
    issues: list[ExprIssue] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)

    def fail(self, node: nodes.Expr, message: str) -> None:
        self.issues.append(ExprIssue(node.pos, message))

    def check(self, node: nodes.Expr) -> FieldType | None:
        """Type of ``node``; None when unknown because of an error already reported."""
        match node:
            case nodes.Literal(value=None):
                self.fail(
                    node,
                    "null is not a value here; test a missing value with 'is null' or "
                    "'is not null'",
                )
                return None
            case nodes.Literal(value=bool()):
                return _B
            case nodes.Literal(value=str()):
                return _S
            case nodes.Literal():
                return _N
            case nodes.Field(path=path):
                return self.field(node, path)
            case nodes.ListExpr():
                self.fail(node, "a list is only allowed after 'in' or as healpix_in's pixels")
                return None
            case nodes.Unary(op="not", operand=operand):
                self.expect(operand, _B, "'not'")
                return _B
            case nodes.Unary(operand=operand):
                self.expect(operand, _N, "unary '-'")
                return _N
            case nodes.Logical(op=op, items=items):
                for item in items:
                    self.expect(item, _B, f"'{op}'")
                return _B
            case nodes.Binary(op=op, left=left, right=right):
                return self.binary(node, op, left, right)
            case nodes.In(operand=operand, items=items):
                return self.in_list(operand, items)
            case nodes.Between(operand=operand, low=low, high=high):
                for part in (operand, low, high):
                    self.expect(part, _N, "'between'")
                return _B
            case nodes.IsNull(operand=operand):
                self.check(operand)
                return _B
            case nodes.Call():
                return self.call(node)
        raise AssertionError(f"unhandled node {node!r}")

    def field(self, node: nodes.Expr, path: str) -> FieldType | None:
        spec = lookup(path)
        if spec is None:
            close = closest_fields(path)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            self.fail(node, f"unknown field {path!r}{hint}")
            return None
        if (
            spec.annotator is not None
            and self.annotators is not None
            and spec.annotator not in self.annotators
        ):
            self.fail(
                node,
                f"field {path!r} needs the {spec.annotator!r} annotator; "
                f"add {spec.annotator!r} to spec.annotations",
            )
        self.fields.add(path)
        return spec.type

    def expect(self, node: nodes.Expr, wanted: FieldType, context: str) -> None:
        got = self.check(node)
        if got is not None and got is not wanted:
            self.fail(node, f"{context} needs a {wanted}, got a {got}")

    def binary(
        self, node: nodes.Expr, op: str, left: nodes.Expr, right: nodes.Expr
    ) -> FieldType | None:
        if op in ("+", "-", "*", "/", "%"):
            self.expect(left, _N, f"'{op}'")
            self.expect(right, _N, f"'{op}'")
            return _N
        for side in (left, right):
            if isinstance(side, nodes.Literal) and side.value is None:
                verb = "is not null" if op == "!=" else "is null"
                self.fail(side, f"comparison with null is never true; write '{verb}'")
                return _B
        lt, rt = self.check(left), self.check(right)
        if lt is None or rt is None:
            return _B
        if lt is not rt:
            self.fail(node, f"cannot compare a {lt} with a {rt} using '{op}'")
        elif lt is _B and op not in ("==", "!="):
            self.fail(node, f"booleans can only be compared with '==' or '!=', not '{op}'")
        return _B

    def in_list(self, operand: nodes.Expr, items: nodes.ListExpr) -> FieldType:
        ot = self.check(operand)
        if ot is _B:
            self.fail(operand, "'in' needs a number or a string on the left, got a bool")
        if not items.items:
            self.fail(items, "'in' needs a non-empty list")
        for item in items.items:
            if (
                not isinstance(item, nodes.Literal)
                or item.value is None
                or isinstance(item.value, bool)
            ):
                self.fail(item, "'in' lists hold number or string constants only")
                continue
            it = _S if isinstance(item.value, str) else _N
            if ot is not None and ot is not _B and it is not ot:
                self.fail(item, f"list item is a {it} but the value tested is a {ot}")
        return _B

    def call(self, node: nodes.Call) -> FieldType | None:
        name, args = node.name, node.args
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(name, list(FUNCTIONS), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(c + '()' for c in close)}?" if close else ""
            names = ", ".join(FUNCTIONS)
            self.fail(node, f"unknown function {name!r}{hint} (known: {names})")
            return None
        signature = FUNCTIONS[name].signature
        if name == "cone":
            if len(args) != 3:
                self.fail(node, f"wrong number of arguments: {signature}")
                return _B
            for arg in args:
                self.expect(arg, _N, "cone()")
            radius = args[2]
            if (
                isinstance(radius, nodes.Literal)
                and isinstance(radius.value, int | float)
                and not radius.value >= 0
            ):
                self.fail(radius, "cone() radius must be >= 0 arcsec")
            return _B
        if name == "healpix_in":
            self.healpix(node, args, signature)
            return _B
        if name in ("abs", "log10", "sqrt"):
            if len(args) != 1:
                self.fail(node, f"wrong number of arguments: {signature}")
            for arg in args:
                self.expect(arg, _N, f"{name}()")
            return _N
        if name in ("min", "max"):
            if len(args) < 2:
                self.fail(node, f"wrong number of arguments: {signature}")
            for arg in args:
                self.expect(arg, _N, f"{name}()")
            return _N
        # coalesce
        if len(args) < 2:
            self.fail(node, f"wrong number of arguments: {signature}")
        types = [self.check(arg) for arg in args]
        known = [t for t in types if t is not None]
        if known and any(t is not known[0] for t in known):
            self.fail(node, "coalesce() arguments must all have the same type")
        return known[0] if known else None

    def healpix(self, node: nodes.Call, args: tuple[nodes.Expr, ...], signature: str) -> None:
        if len(args) != 2:
            self.fail(node, f"wrong number of arguments: {signature}")
            return
        nside_arg, pixels = args
        nside = nside_arg.value if isinstance(nside_arg, nodes.Literal) else None
        if not (
            isinstance(nside, int)
            and not isinstance(nside, bool)
            and 0 < nside <= MAX_NSIDE
            and nside & (nside - 1) == 0
        ):
            self.fail(nside_arg, f"healpix_in() nside must be a power of 2 from 1 to {MAX_NSIDE}")
            nside = None
        if not isinstance(pixels, nodes.ListExpr) or not pixels.items:
            self.fail(pixels, "healpix_in() needs a non-empty list of pixel numbers")
            return
        for item in pixels.items:
            value = item.value if isinstance(item, nodes.Literal) else None
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                self.fail(item, "healpix_in() pixels must be non-negative integers")
            elif nside is not None and value >= 12 * nside * nside:
                self.fail(
                    item,
                    f"pixel {value} does not exist at nside {nside} (max {12 * nside * nside - 1})",
                )


@dataclass(frozen=True, slots=True)
class CheckResult:
    type: FieldType | None
    issues: tuple[ExprIssue, ...]
    fields: frozenset[str]


def check_expression(expr: nodes.Expr, annotators: Iterable[str] | None = None) -> CheckResult:
    """Type-check ``expr``; ``annotators`` is spec.annotations (None: any annotator allowed)."""
    checker = _Checker(None if annotators is None else frozenset(annotators))
    result_type = checker.check(expr)
    if result_type is not None and result_type is not _B and not checker.issues:
        checker.fail(expr, f"a filter's 'where' must be a condition (bool), got a {result_type}")
    return CheckResult(result_type, tuple(checker.issues), frozenset(checker.fields))
