"""The filter document: loading, validation with exact YAML line and column, snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from transforms.filters.document import filter_set_from_snapshot, load_filter_file, load_filters
from transforms.filters.expr import parse
from transforms.filters.model import (
    DEFAULT_OUTPUT_FIELDS,
    FilterSet,
    FilterValidationError,
    OutputSpec,
)

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "filters").glob("*.yaml"))

GOOD = """\
apiVersion: alertflow/v1
kind: Filter
metadata:
  name: my-filter
  owner: alice
spec:
  where: mag < 18
"""


def test_minimal_document_gets_defaults() -> None:
    (flt,) = load_filters(GOOD)
    assert flt.name == "my-filter" and flt.owner == "alice" and flt.description == ""
    assert flt.surveys == ("ztf", "lsst") and flt.annotations == ()
    assert flt.expression == parse("mag < 18") and flt.fields == {"mag"}
    assert flt.output == OutputSpec("alertflow.filter.my-filter", "lite", DEFAULT_OUTPUT_FIELDS)


def test_every_example_is_valid() -> None:
    assert len(EXAMPLES) >= 5
    names = [f.name for path in EXAMPLES for f in load_filter_file(str(path))]
    assert len(names) == len(set(names)) == len(EXAMPLES)


def test_several_documents_in_one_file() -> None:
    text = GOOD + "---\n" + GOOD.replace("my-filter", "other")
    assert [f.name for f in load_filters(text)] == ["my-filter", "other"]


def test_snapshot_round_trip() -> None:
    filters = tuple(f for path in EXAMPLES for f in load_filter_file(str(path)))
    snapshot = FilterSet(7, filters).to_snapshot()
    assert filter_set_from_snapshot(snapshot) == FilterSet(7, filters)


def test_duplicate_names_in_a_set_are_rejected() -> None:
    (flt,) = load_filters(GOOD)
    with pytest.raises(ValueError, match="duplicate filter names in the set: my-filter"):
        FilterSet(1, (flt, flt))


# (document, [(line, column, path, message), ...]): every issue, in order.
INVALID = [
    (
        GOOD.replace("alertflow/v1", "alertflow/v2"),
        [(1, 13, "apiVersion", "must be 'alertflow/v1', got 'alertflow/v2'")],
    ),
    (
        GOOD.replace("kind: Filter", "kind: Filtr"),
        [(2, 7, "kind", "must be 'Filter', got 'Filtr'")],
    ),
    (
        GOOD.replace("  owner: alice\n", ""),
        [(4, 3, "metadata", "missing required key 'owner'")],
    ),
    (
        GOOD.replace("name: my-filter", "name: My_Filter"),
        [
            (
                4,
                9,
                "metadata.name",
                "'My_Filter' is not a valid name: use 1-63 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit",
            )
        ],
    ),
    (
        GOOD.replace("spec:", "spec:\n  wher: mag < 1").replace("  where: mag < 18\n", ""),
        [
            (7, 3, "spec.wher", "unknown key 'wher'; did you mean 'where'?"),
            (7, 3, "spec", "missing required key 'where'"),
        ],
    ),
    (
        GOOD.replace("where: mag < 18", "where: mag < 18 and reliabilty > 0.5"),
        [(7, 23, "spec.where", "unknown field 'reliabilty'; did you mean 'reliability'?")],
    ),
    (
        GOOD.replace("where: mag < 18", "where: 'mag < 18 and (band == 1'"),
        [(7, 34, "spec.where", "syntax error: expected ')', found end of expression")],
    ),
    (
        GOOD.replace("where: mag < 18", 'where: "band == 1"'),
        [(7, 16, "spec.where", "cannot compare a string with a number using '=='")],
    ),
    (
        GOOD.replace(
            "where: mag < 18",
            "where: |\n    mag < 18\n      and sky.gal_b > 10\n      and band in ['g', 2]",
        ),
        [
            (
                9,
                11,
                "spec.where",
                "field 'sky.gal_b' needs the 'sky' annotator; add 'sky' to spec.annotations",
            ),
            (10, 25, "spec.where", "list item is a number but the value tested is a string"),
        ],
    ),
    (
        GOOD.replace("where: mag < 18", "where: >\n    mag < 18 and\n    magg > 3"),
        [(9, 5, "spec.where", "unknown field 'magg'; did you mean 'mag'?")],
    ),
    (
        GOOD.replace(
            "where: mag < 18",
            "where: mag < 18\n  surveys: [ztf, rubin]\n  annotations: [sky, skyy]",
        ),
        [
            (8, 18, "spec.surveys", "unknown value 'rubin' (allowed: ztf, lsst)"),
            (
                9,
                22,
                "spec.annotations",
                "unknown value 'skyy' (allowed: sky, crossmatch, dust, lightcurve, tags)",
            ),
        ],
    ),
    (
        GOOD
        + "  output:\n    format: fat\n    topic: 'bad topic'\n"
        + "    fields: [mag, sky.gal_l, magnitud]\n",
        [
            (10, 12, "spec.output.topic", "'bad topic' is not a valid Kafka topic name"),
            (9, 13, "spec.output.format", "must be one of lite, full, got 'fat'"),
            (
                11,
                19,
                "spec.output.fields",
                "field 'sky.gal_l' needs the 'sky' annotator in spec.annotations",
            ),
            (
                11,
                30,
                "spec.output.fields",
                "unknown field 'magnitud'; did you mean 'mag', 'solar_system.mag', "
                "'crossmatch.ngc.mag'?",
            ),
        ],
    ),
    (GOOD.replace("where: mag < 18", "where: 18"), [(7, 10, "spec.where", "must be a string")]),
    (
        GOOD.replace("spec:\n  where: mag < 18\n", "spec: [1]\n"),
        [(6, 7, "spec", "must be a mapping")],
    ),
    (
        "kind: [",
        [
            (
                1,
                8,
                "<yaml>",
                "invalid YAML: while parsing a flow node expected the node content, but found "
                "'<stream end>'",
            )
        ],
    ),
    ("# nothing\n", [(1, 1, "<document>", "no filter document found")]),
    (
        GOOD + "---\n" + GOOD,
        [(9, 1, "metadata.name", "filter 'my-filter' is defined twice in this file")],
    ),
]


@pytest.mark.parametrize(("text", "expected"), INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_validation_errors_with_line_and_column(
    text: str, expected: list[tuple[int, int, str, str]]
) -> None:
    with pytest.raises(FilterValidationError) as info:
        load_filters(text, source="f.yaml")
    assert [(i.line, i.column, i.path, i.message) for i in info.value.issues] == expected
    first = expected[0]
    assert (
        str(info.value).splitlines()[0] == f"f.yaml:{first[0]}:{first[1]}: {first[2]}: {first[3]}"
    )


def test_snapshot_with_a_bad_filter_is_rejected_whole() -> None:
    (flt,) = load_filters(GOOD)
    document = flt.to_document()
    document["spec"]["where"] = "mag < "
    document["metadata"]["colour"] = "red"
    with pytest.raises(FilterValidationError) as info:
        filter_set_from_snapshot({"version": 3, "filters": [flt.to_document(), document, None, 7]})
    # JSON has no lines: the positions are 0 and the paths start at the snapshot.
    assert [(i.line, i.column, i.path, i.message) for i in info.value.issues] == [
        (
            0,
            0,
            "filters[1].metadata.colour",
            "unknown key 'colour' (allowed: name, owner, description, labels)",
        ),
        (
            0,
            0,
            "filters[1].spec.where",
            "syntax error: expected a value, field, function or '(', found end of expression",
        ),
        (0, 0, "filters[2]", "must be a mapping"),
        (0, 0, "filters[3]", "must be a mapping"),
    ]
    assert str(info.value).splitlines()[0] == (
        "<snapshot>:0:0: filters[1].metadata.colour: unknown key 'colour' "
        "(allowed: name, owner, description, labels)"
    )


def test_snapshot_with_no_filters_is_an_empty_set() -> None:
    assert filter_set_from_snapshot({"version": 4, "filters": []}) == FilterSet(4, ())
