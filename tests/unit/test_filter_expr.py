"""The expression language: grammar, syntax errors with offsets, type errors, parser fuzzing.

Hypothesis runs derandomized with no example database, so every run is the same.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.filters.check import check_expression
from transforms.filters.expr import (
    Between,
    Binary,
    Call,
    ExprSyntaxError,
    Field,
    In,
    IsNull,
    ListExpr,
    Literal,
    Logical,
    Unary,
    parse,
)

FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

M, R, B = Field("mag"), Field("reliability"), Field("band")

GRAMMAR = [
    ("mag < 18", Binary("<", M, Literal(18))),
    ("mag <= 18.5", Binary("<=", M, Literal(18.5))),
    ("mag = 18", Binary("==", M, Literal(18))),
    ("mag <> 18", Binary("!=", M, Literal(18))),
    ("mag >= 1e1", Binary(">=", M, Literal(10.0))),
    ("band == 'r'", Binary("==", B, Literal("r"))),
    ('band == "r"', Binary("==", B, Literal("r"))),
    (
        "mag < 18 AND reliability > 0.5",
        Logical("and", (Binary("<", M, Literal(18)), Binary(">", R, Literal(0.5)))),
    ),
    (
        "mag < 18 or mag > 20 and reliability > 0.5",
        Logical(
            "or",
            (
                Binary("<", M, Literal(18)),
                Logical("and", (Binary(">", M, Literal(20)), Binary(">", R, Literal(0.5)))),
            ),
        ),
    ),
    ("not is_positive", Unary("not", Field("is_positive"))),
    ("not not is_positive", Unary("not", Unary("not", Field("is_positive")))),
    ("band in ['g', 'r']", In(B, ListExpr((Literal("g"), Literal("r"))), False)),
    ("band not in ['g']", In(B, ListExpr((Literal("g"),)), True)),
    ("mag between 15 and 18", Between(M, Literal(15), Literal(18), False)),
    (
        "mag not between -1 and 2 * 3",
        Between(M, Literal(-1), Binary("*", Literal(2), Literal(3)), True),
    ),
    ("mag is null", IsNull(M, False)),
    ("mag IS NOT NULL", IsNull(M, True)),
    ("a + b * c", Binary("+", Field("a"), Binary("*", Field("b"), Field("c")))),
    ("(a + b) * c", Binary("*", Binary("+", Field("a"), Field("b")), Field("c"))),
    ("a - b - c", Binary("-", Binary("-", Field("a"), Field("b")), Field("c"))),
    ("-mag", Unary("-", M)),
    ("- 3", Literal(-3)),
    ("a % 2 / 3", Binary("/", Binary("%", Field("a"), Literal(2)), Literal(3))),
    ("cone(10, -20.5, 3)", Call("cone", (Literal(10), Literal(-20.5), Literal(3)))),
    ("CONE(1, 2, 3)", Call("cone", (Literal(1), Literal(2), Literal(3)))),
    (
        "healpix_in(64, [1, 2])",
        Call("healpix_in", (Literal(64), ListExpr((Literal(1), Literal(2))))),
    ),
    ("max()", Call("max", ())),
    ("crossmatch.ngc.sep_arcsec < 1", Binary("<", Field("crossmatch.ngc.sep_arcsec"), Literal(1))),
    ("true", Literal(True)),
    ("FALSE", Literal(False)),
    ("'it\\'s'", Literal("it's")),
    ("99999999999999999999", Literal(1e20)),
]


@pytest.mark.parametrize(("text", "tree"), GRAMMAR, ids=[t for t, _ in GRAMMAR])
def test_grammar(text: str, tree: object) -> None:
    assert parse(text) == tree


SYNTAX_ERRORS = [
    ("", 0, "empty expression"),
    ("   ", 0, "empty expression"),
    ("mag <", 5, "expected a value, field, function or '(', found end of expression"),
    ("mag < 18 18", 9, "expected an operator or end of expression, found '18'"),
    ("(mag < 18", 9, "expected ')', found end of expression"),
    ("mag in 'r'", 7, "expected '[' starting the list after 'in', found \"'r'\""),
    ("mag between 1 or 2", 14, "expected 'and' in 'between ... and ...', found 'or'"),
    ("mag is 3", 7, "expected 'null' after 'is', found '3'"),
    ("mag not 3", 8, "expected 'in' or 'between' after 'not', found '3'"),
    ("band == 'r", 8, "unterminated string literal"),
    ("mag < 18 ; drop", 9, "unexpected character ';'"),
    ("mag < 1x", 6, "malformed number '1x'"),
    ("os.system('ls')", 0, "'os.system' is not a function name"),
    ("mag.__class__ ** 2", 15, "expected a value, field, function or '(', found '*'"),
    ("[1, 2", 5, "expected ']', found end of expression"),
    ("a ! b", 2, "unexpected character '!'"),
    ("(" * 70 + "1" + ")" * 70, 64, "expression nested deeper than 64 levels"),
    (
        "1" + " + 1" * 250,
        0,
        "expression is more than 200 levels deep; split long arithmetic chains",
    ),
]


@pytest.mark.parametrize(
    ("text", "offset", "message"), SYNTAX_ERRORS, ids=[t[:30] for t, _, _ in SYNTAX_ERRORS]
)
def test_syntax_errors(text: str, offset: int, message: str) -> None:
    with pytest.raises(ExprSyntaxError) as info:
        parse(text)
    assert (info.value.offset, info.value.message) == (offset, message)


def test_long_target_lists_stay_shallow() -> None:
    # 500 cones joined with "or" are one n-ary node, not a 500-deep tree.
    text = " or ".join(f"cone({i % 360}, 0, 2)" for i in range(500))
    tree = parse(text)
    assert isinstance(tree, Logical) and len(tree.items) == 500


TYPE_ERRORS = [
    ("mag", 0, "a filter's 'where' must be a condition (bool), got a number"),
    (
        "magnitude < 18",
        0,
        "unknown field 'magnitude'; did you mean 'mag', 'solar_system.mag', 'crossmatch.ngc.mag'?",
    ),
    ("reliabilty > 0.5", 0, "unknown field 'reliabilty'; did you mean 'reliability'?"),
    ("mag.__class__ < 1", 0, "unknown field 'mag.__class__'"),
    ("band == 3", 5, "cannot compare a string with a number using '=='"),
    ("is_positive < true", 12, "booleans can only be compared with '==' or '!=', not '<'"),
    ("mag == null", 7, "comparison with null is never true; write 'is null'"),
    ("mag != null", 7, "comparison with null is never true; write 'is not null'"),
    ("mag + 'r' > 1", 6, "'+' needs a number, got a string"),
    ("mag and is_positive", 0, "'and' needs a bool, got a number"),
    ("not mag", 4, "'not' needs a bool, got a number"),
    ("band in ['g', 1]", 14, "list item is a number but the value tested is a string"),
    ("mag in [mag]", 8, "'in' lists hold number or string constants only"),
    ("mag in []", 7, "'in' needs a non-empty list"),
    ("cone(1, 2)", 0, "wrong number of arguments: cone(ra_deg, dec_deg, radius_arcsec) -> bool"),
    ("cone(1, 2, -3)", 11, "cone() radius must be >= 0 arcsec"),
    ("healpix_in(63, [1])", 11, "healpix_in() nside must be a power of 2 from 1 to 536870912"),
    ("healpix_in(1, [12])", 15, "pixel 12 does not exist at nside 1 (max 11)"),
    ("healpix_in(1, mag)", 14, "healpix_in() needs a non-empty list of pixel numbers"),
    (
        "conee(1, 2, 3)",
        0,
        "unknown function 'conee'; did you mean cone(), coalesce()? "
        "(known: cone, healpix_in, abs, min, max, log10, sqrt, coalesce)",
    ),
    (
        "__import__('os') == 1",
        0,
        "unknown function '__import__' "
        "(known: cone, healpix_in, abs, min, max, log10, sqrt, coalesce)",
    ),
    (
        "sky.gal_b > 10",
        0,
        "field 'sky.gal_b' needs the 'sky' annotator; add 'sky' to spec.annotations",
    ),
    ("tags.Bad-name", 0, "unknown field 'tags.Bad'"),
    ("[1] == 1", 0, "a list is only allowed after 'in' or as healpix_in's pixels"),
    ("coalesce(mag, band) == 1", 0, "coalesce() arguments must all have the same type"),
]


@pytest.mark.parametrize(
    ("text", "offset", "message"), TYPE_ERRORS, ids=[t for t, _, _ in TYPE_ERRORS]
)
def test_type_errors(text: str, offset: int, message: str) -> None:
    issues = check_expression(parse(text), annotators=()).issues
    assert [(i.offset, i.message) for i in issues][:1] == [(offset, message)]


def test_annotation_fields_are_typed_when_their_annotator_is_listed() -> None:
    result = check_expression(
        parse("crossmatch.ngc.sep_arcsec < 1 and tags.kilonova_candidate and sky.gal_b > 10"),
        annotators=("crossmatch", "tags", "sky"),
    )
    assert result.issues == ()
    assert result.fields == {"crossmatch.ngc.sep_arcsec", "tags.kilonova_candidate", "sky.gal_b"}


# --- fuzzing --------------------------------------------------------------------------------

_PIECES = [
    "mag",
    "band",
    "ra",
    "(",
    ")",
    "[",
    "]",
    ",",
    "and",
    "or",
    "not",
    "in",
    "between",
    "is",
    "null",
    "true",
    "<",
    "<=",
    "==",
    "!=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "'r'",
    '"g',
    "1",
    "2.5",
    "1e3",
    "cone",
    "healpix_in",
    ".",
    "__class__",
    "lambda",
    ";",
    "\\",
    "'",
    "\x00",
    "é",
]


@FUZZ
@given(st.text(max_size=80))
def test_random_text_only_raises_syntax_errors(text: str) -> None:
    try:
        tree = parse(text)
    except ExprSyntaxError as error:
        assert 0 <= error.offset <= len(text)
        return
    check_expression(tree)  # type checking never raises either


@FUZZ
@given(st.lists(st.sampled_from(_PIECES), max_size=40), st.sampled_from([" ", ""]))
def test_random_token_soup_only_raises_syntax_errors(pieces: list[str], sep: str) -> None:
    text = sep.join(pieces)
    try:
        tree = parse(text)
    except ExprSyntaxError as error:
        assert 0 <= error.offset <= len(text)
        return
    check_expression(tree)
