"""tags: each rule table-driven on edited real alerts, and on the real alerts where the index
CSVs tell the truth (solar-system objects, star-like sources, low reliability)."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest

from tests.datapaths import lsst_index, real_alerts, ztf_index
from transforms.alert_model import Alert, NearestStar, SolarSystemObject, Survey
from transforms.annotate.tags import TAG_NAMES, TagsConfig, tag_alert
from transforms.annotate.transform import AnnotateConfig, annotate_batch, load_annotators
from transforms.annotation_model import (
    Annotations,
    BandFeatures,
    CatalogMatch,
    CrossMatch,
    LightCurve,
    Tags,
)

CONFIG = TagsConfig()


def _base() -> Alert:
    alert = next(a for a in real_alerts() if a.object_id == "ZTF21abiuvdk")
    return replace(
        alert,
        reliability=0.9,
        is_positive=True,
        solar_system=None,
        nearest_star=NearestStar(0.01, 12.0, 19.0),
    )


def _band(rise: float | None, *, last: float = 15.0, first_mjd: float = 59400.0) -> BandFeatures:
    return BandFeatures(
        "g", 5, first_mjd, 59410.0, 10.0, 18.0, last, 15.0, 59410.0, 3.0, rise, None
    )


def _lc(rise: float | None, **kw) -> LightCurve:
    return LightCurve(5, 10.0, (_band(rise, **kw),), None, None, None)


def _cm(ngc: float | None = None, gaia: float | None = None, gcvs: float | None = None):
    def match(cat: str, sep: float | None) -> CatalogMatch | None:
        return None if sep is None else CatalogMatch(cat, f"{cat}-1", sep, ())

    return CrossMatch(
        (("ngc", match("ngc", ngc)), ("gaia", match("gaia", gaia)), ("gcvs", match("gcvs", gcvs)))
    )


SSO_NEAR = SolarSystemObject(name="594", distance_arcsec=0.0)
SSO_FAR = SolarSystemObject(name="292631", distance_arcsec=15.0)
SSO_LSST = SolarSystemObject(ss_object_id=21164719644750924)

CASES = [
    # (id, alert edits, annotations, expected tags)
    ("nothing", {}, Annotations(crossmatch=_cm(), lightcurve=_lc(None)), ()),
    ("sso near", {"solar_system": SSO_NEAR}, Annotations(), ("solar_system",)),
    ("sso far", {"solar_system": SSO_FAR}, Annotations(), ()),
    ("sso lsst", {"solar_system": SSO_LSST}, Annotations(), ("solar_system",)),
    ("low rb", {"reliability": 0.1}, Annotations(), ("bogus_likely",)),
    ("rb at threshold", {"reliability": 0.3}, Annotations(), ()),
    (
        "neg near bright ps1",
        {"is_positive": False, "nearest_star": NearestStar(0.9, 5.0, 12.0)},
        Annotations(),
        ("bogus_likely",),
    ),
    (
        "neg near faint ps1",
        {"is_positive": False, "nearest_star": NearestStar(0.01, 5.0, 19.0)},
        Annotations(),
        (),
    ),
    (
        "neg near gaia",
        {"is_positive": False},
        Annotations(crossmatch=_cm(gaia=10.0)),
        ("bogus_likely",),
    ),
    ("pos near gaia", {}, Annotations(crossmatch=_cm(gaia=10.0)), ()),
    ("gaia on top", {}, Annotations(crossmatch=_cm(gaia=0.5)), ("variable_star",)),
    ("gcvs", {}, Annotations(crossmatch=_cm(gcvs=2.0)), ("variable_star",)),
    ("ps1 star", {"nearest_star": NearestStar(0.98, 0.4, 17.0)}, Annotations(), ("variable_star",)),
    ("ps1 star too far", {"nearest_star": NearestStar(0.98, 1.5, 17.0)}, Annotations(), ()),
    ("nucleus", {}, Annotations(crossmatch=_cm(ngc=1.0)), ("nuclear",)),
    (
        "host rising",
        {},
        Annotations(crossmatch=_cm(ngc=30.0), lightcurve=_lc(0.2)),
        ("sn_candidate",),
    ),
    ("host fading", {}, Annotations(crossmatch=_cm(ngc=30.0), lightcurve=_lc(-0.2)), ()),
    (
        "host past peak",
        {},
        Annotations(crossmatch=_cm(ngc=30.0), lightcurve=_lc(0.2, last=16.0)),
        (),
    ),
    (
        "host rising stellar",
        {"nearest_star": NearestStar(0.98, 0.4, 17.0)},
        Annotations(crossmatch=_cm(ngc=30.0), lightcurve=_lc(0.2)),
        ("variable_star",),
    ),
    (
        "host rising sso",
        {"solar_system": SSO_NEAR},
        Annotations(crossmatch=_cm(ngc=30.0), lightcurve=_lc(0.2)),
        ("solar_system",),
    ),
    (
        "nuclear fast sn",
        {},
        Annotations(crossmatch=_cm(ngc=1.0), lightcurve=_lc(0.8)),
        ("nuclear", "sn_candidate", "fast_riser"),
    ),
    ("fast no host", {}, Annotations(crossmatch=_cm(), lightcurve=_lc(0.8)), ("fast_riser",)),
    ("fast within a night", {}, Annotations(lightcurve=_lc(30.0, first_mjd=59409.9)), ()),
]


@pytest.mark.parametrize(
    ("edits", "annotations", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule_table(edits: dict, annotations: Annotations, expected: tuple[str, ...]) -> None:
    tags = tag_alert(replace(_base(), **edits), annotations, CONFIG)
    assert tags.names == expected
    assert all(tag.rule for tag in tags.fired)


def test_thresholds_are_configuration() -> None:
    alert = replace(_base(), reliability=0.4)
    assert tag_alert(alert, Annotations(), CONFIG).names == ()
    assert tag_alert(alert, Annotations(), TagsConfig(min_reliability=0.5)).names == (
        "bogus_likely",
    )


@cache
def _real_tags() -> dict[int, Tags]:
    loaded = load_annotators(AnnotateConfig())
    out = annotate_batch(real_alerts(), loaded)
    return {r.alert.alert_id: r.annotations.tags for r in out}  # type: ignore[union-attr]


def test_real_ztf_alerts_against_the_index() -> None:
    tags = _real_tags()
    checked = {"solar_system": 0, "variable_star": 0, "bogus_likely": 0}
    for row in ztf_index():
        names = tags[int(row["candid"])].names
        sso = row["ssnamenr"] not in ("", "null")
        near = sso and (float(row["ssdistnr"]) < 0 or float(row["ssdistnr"]) <= 5.0)
        assert ("solar_system" in names) == near, row["candid"]
        checked["solar_system"] += near
        sg, dist = row["sgscore1"], row["distpsnr1"]
        if sg and float(sg) >= 0.5 and 0.0 <= float(dist) <= 1.0:
            assert "variable_star" in names, row["candid"]
            checked["variable_star"] += 1
        reliability = float(row["drb"] or row["rb"])
        if reliability < 0.3:
            assert "bogus_likely" in names
            checked["bogus_likely"] += 1
    assert checked == {"solar_system": 52, "variable_star": 173, "bogus_likely": 63}


def test_real_lsst_alerts_against_the_index() -> None:
    tags = _real_tags()
    by_id = {a.source_id: a.alert_id for a in real_alerts() if a.survey is Survey.LSST}
    solar = 0
    for row in lsst_index():
        if not row["diaSourceId"] or int(row["diaSourceId"]) not in by_id:
            continue
        names = tags[by_id[int(row["diaSourceId"])]].names
        is_sso = row["ssObjectId"] not in ("", "0", "None")
        assert ("solar_system" in names) == is_sso
        solar += is_sso
    assert solar == 6


def test_the_supernova_is_a_candidate() -> None:
    tags = _real_tags()
    sn = [a for a in real_alerts() if a.object_id == "ZTF21abiuvdk"]
    fired = [tags[a.alert_id] for a in sn if "sn_candidate" in tags[a.alert_id].names]
    assert fired
    assert "NGC7814" in fired[0].fired[0].rule
    assert set(TAG_NAMES) == {
        "solar_system",
        "bogus_likely",
        "variable_star",
        "nuclear",
        "sn_candidate",
        "fast_riser",
    }
