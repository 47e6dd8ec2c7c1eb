"""Filters over annotation fields on the real alerts: the compiled evaluator, fed by
AnnotationColumns from the annotators' records, against a plain Python loop over the records."""

from __future__ import annotations

import pytest

from tests.datapaths import shared_data
from transforms.annotate.transform import AnnotateConfig, annotate_batch, load_annotators
from transforms.annotation_model import get_path
from transforms.decode import decode_message
from transforms.filters.annotations import AnnotationColumns
from transforms.filters.compile import compile_filter_set
from transforms.filters.document import load_filters
from transforms.filters.model import FilterSet
from transforms.schemas import LsstSchemas

FILTER = """\
apiVersion: alertflow/v1
kind: Filter
metadata: {{name: {name}, owner: tests}}
spec:
  annotations: [sky, crossmatch, dust, lightcurve, tags]
  where: "{where}"
  output: {{topic: t.{name}, format: lite}}
"""

CASES = {
    "high-latitude": (
        "sky.gal_b > 30 or sky.gal_b < -30",
        lambda a: (b := get_path(a, "sky.gal_b")) is not None and abs(b) > 30,
    ),
    "solar-system-tag": ("tags.solar_system", lambda a: "solar_system" in a.tags.names),
    "not-variable": (
        "not tags.variable_star and dust.ebv < 0.1",
        lambda a: (
            "variable_star" not in a.tags.names
            and (e := get_path(a, "dust.ebv")) is not None
            and e < 0.1
        ),
    ),
}


@pytest.fixture(scope="module")
def annotated():
    data = shared_data()
    schemas = LsstSchemas()
    alerts = [
        alert
        for path in [
            *sorted((data / "ztf" / "alerts").glob("*/*.avro")),
            *sorted((data / "lsst" / "alerts").glob("*.avro")),
        ]
        for alert in decode_message(path.read_bytes(), schemas)
    ]
    results = annotate_batch(alerts, load_annotators(AnnotateConfig()))
    pairs = [(r.alert, r.annotations) for r in results if hasattr(r, "annotations")]
    assert len(pairs) == len(alerts)
    return pairs


def test_annotation_filters_match_a_plain_loop(annotated) -> None:
    filters = tuple(
        f
        for name, (where, _) in CASES.items()
        for f in load_filters(FILTER.format(name=name, where=where))
    )
    compiled = compile_filter_set(FilterSet(version=1, filters=filters))
    alerts = [a for a, _ in annotated]
    result = compiled.evaluate(alerts, AnnotationColumns([r for _, r in annotated]))
    for name, (_, predicate) in CASES.items():
        outcome = result.outcomes[name]
        expected = [predicate(record) for _, record in annotated]
        assert outcome.errors == 0, outcome.failure
        assert list(outcome.matches) == expected, name
        assert 0 < sum(expected) < len(expected), f"{name} should split the real alerts"


def test_unknown_path_is_absent(annotated) -> None:
    columns = AnnotationColumns([r for _, r in annotated])
    assert "sky.gal_b" in columns
    assert "sky.no_such_field" not in columns
