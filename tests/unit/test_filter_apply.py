"""ApplyFilters on Beam's local runner: complete expected outputs from the real alerts."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.datapaths import shared_data
from transforms.alert_model import Alert
from transforms.apply_filters import ERRORS, MATCHES, ApplyFilters
from transforms.decode import decode_message
from transforms.filters.document import load_filter_file
from transforms.filters.matches import (
    SNAPSHOT_FILTER_NAME,
    ActiveFilterSet,
    FilterErrorReport,
    rejection_report,
)
from transforms.filters.model import FilterSet
from transforms.filters.snapshot import (
    RejectedSnapshot,
    decode_snapshot,
    encode_snapshot,
    select_snapshot,
    snapshot_from_json,
)
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "filters"


@functools.cache
def lsst_alerts() -> tuple[Alert, ...]:
    schemas = LsstSchemas(DEFAULT_LSST_SCHEMA_DIR)
    path = shared_data() / "lsst" / "alerts" / "hsc_cosmos_precursor_v9_0.avro"
    # Cutouts and original bytes are not needed here and only slow the local runner down.
    return tuple(
        dataclasses.replace(a, cutouts=None, original=b"")
        for a in decode_message(path.read_bytes(), schemas)
    )


def snapshot(version: int, *names: str) -> FilterSet:
    filters = tuple(f for name in names for f in load_filter_file(str(EXAMPLES / f"{name}.yaml")))
    return FilterSet(version, filters)


def test_select_snapshot_prefers_the_highest_valid_version() -> None:
    bad = snapshot(9, "target-list-cones").to_snapshot()
    bad["filters"][0]["spec"]["where"] = "mag <"
    good = [snapshot(3, "solar-system-objects"), snapshot(4, "target-list-cones")]
    chosen, rejected = select_snapshot([good[0], snapshot_from_json(bad), good[1]])
    assert chosen == good[1]
    reason = (
        "<snapshot>:0:0: filters[0].spec.where: syntax error: expected a value, field, "
        "function or '(', found end of expression"
    )
    assert rejected == [RejectedSnapshot(9, reason)]
    reports = [rejection_report(r) for r in rejected]
    assert reports == [FilterErrorReport(SNAPSHOT_FILTER_NAME, 9, 0, 0, reason)]


def test_config_topic_values_decode_to_a_set_or_a_rejection_with_the_reason() -> None:
    filters = snapshot(4, "target-list-cones")
    assert decode_snapshot(encode_snapshot(filters)) == filters
    assert encode_snapshot(FilterSet(2, ())) == b'{"version":2,"filters":[]}'
    assert decode_snapshot(b'{"version":2,"filters":[]}') == FilterSet(2, ())
    assert decode_snapshot(b"[1]") == RejectedSnapshot(None, "not an object")
    assert decode_snapshot(b"{") == RejectedSnapshot(
        None,
        "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    )
    assert decode_snapshot(b'{"filters":[]}') == RejectedSnapshot(
        None, "<snapshot>:0:0: version: must be an integer"
    )
    assert decode_snapshot(b'{"version":5,"filters":{}}') == RejectedSnapshot(
        5, "<snapshot>:0:0: filters: must be a list"
    )
    unversioned = RejectedSnapshot(None, "not an object")
    assert select_snapshot([unversioned, filters]) == (filters, [])
    assert select_snapshot([unversioned, RejectedSnapshot(3, "x")]) == (
        None,
        [RejectedSnapshot(3, "x"), unversioned],
    )
    expected = FilterErrorReport(SNAPSHOT_FILTER_NAME, -1, 0, 0, "not an object")
    assert rejection_report(unversioned) == expected


def test_the_active_set_follows_the_newest_valid_snapshot_and_reports_each_rejection_once() -> None:
    active = ActiveFilterSet()
    assert active.update([RejectedSnapshot(2, "bad")]) == [
        FilterErrorReport(SNAPSHOT_FILTER_NAME, 2, 0, 0, "bad")
    ]
    assert active.compiled is None
    first = snapshot(1, "solar-system-objects")
    assert active.update([first, RejectedSnapshot(2, "bad")]) == []
    assert active.compiled is not None and active.compiled.version == 1
    compiled = active.compiled
    assert active.update([first]) == [] and active.compiled is compiled  # compiled once
    rejected = RejectedSnapshot(4, "worse")
    assert active.update([first, rejected, snapshot(3, "target-list-cones")]) == [
        FilterErrorReport(SNAPSHOT_FILTER_NAME, 4, 0, 0, "worse")
    ]
    assert active.compiled.version == 3
    assert [f.name for f in active.compiled.filters] == ["target-list-cones"]
    assert active.update([rejected, snapshot(3, "target-list-cones")]) == []


def test_apply_filters_emits_every_match_with_identity_and_reports_errors() -> None:
    alerts = lsst_alerts()
    cones = load_filter_file(str(EXAMPLES / "target-list-cones.yaml"))[0]
    expected_cone_ids = sorted(
        a.alert_id
        for a in alerts
        if any(
            _within(a, ra, dec, radius)
            for ra, dec, radius in [
                (0.814293, 16.1456989, 5.0),
                (149.7994394, 2.2793876, 3.5),
                (150.1191, 2.2058, 10.0),
            ]
        )
    )
    assert expected_cone_ids
    with test_pipeline.TestPipeline() as p:
        snapshots = p | "Snapshots" >> beam.Create(
            [
                snapshot(1, "solar-system-objects"),
                snapshot(2, "target-list-cones", "nuclear-transients"),
            ]
        )
        outputs = (
            p | "Alerts" >> beam.Create(list(alerts)) | ApplyFilters(snapshots, max_batch_size=50)
        )
        matches = outputs[MATCHES] | "MatchKey" >> beam.Map(
            lambda m: (m.filter_name, m.owner, m.topic, m.filter_set_version, m.alert.alert_id)
        )
        errors = (
            outputs[ERRORS]
            | "ErrorKey" >> beam.Map(lambda e: (e.filter_name, e.filter_set_version))
            | beam.combiners.Count.PerElement()
        )
        errors_total = (
            outputs[ERRORS]
            | "Errors" >> beam.Map(lambda e: e.errors if isinstance(e, FilterErrorReport) else 0)
            | beam.CombineGlobally(sum)
        )
        assert_that(
            matches,
            equal_to(
                [
                    ("target-list-cones", "carol", cones.output.topic, 2, i)
                    for i in expected_cone_ids
                ]
            ),
            label="matches",
        )
        # nuclear-transients needs annotations the pipeline does not provide yet: every alert
        # errors.
        assert_that(errors_total, equal_to([len(alerts)]), label="error-count")
        assert_that(
            errors | "Names" >> beam.Keys(),
            equal_to([("nuclear-transients", 2)]),
            label="error-names",
        )


def _within(alert: Alert, ra: float, dec: float, radius: float) -> bool:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    here = SkyCoord(alert.ra * u.deg, alert.dec * u.deg)
    return bool(here.separation(SkyCoord(ra * u.deg, dec * u.deg)).arcsec <= radius)


def test_apply_filters_counts_alerts_matches_and_errors() -> None:
    """The counters /api/v1/components reports for the filters stage, against the reference."""
    from apache_beam.metrics.metric import MetricsFilter

    from transforms.local import match_locally

    alerts = lsst_alerts()
    filters = FilterSet(1, load_filter_file(str(EXAMPLES / "target-list-cones.yaml")))
    expected, errors, _ = match_locally(filters, list(alerts))
    assert expected and not errors
    p = test_pipeline.TestPipeline()
    snapshots = p | "Snapshots" >> beam.Create([filters])
    _ = p | "Alerts" >> beam.Create(list(alerts)) | ApplyFilters(snapshots)
    result = p.run()
    result.wait_until_finish()
    query = result.metrics().query(MetricsFilter().with_namespace("ApplyFilters"))["counters"]
    counters = {c.key.metric.name: c.committed for c in query}
    # A counter never incremented is not reported at all.
    assert counters == {"alerts_in": len(alerts), "matches": len(expected)}
