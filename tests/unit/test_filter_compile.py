"""The compiled filter set on every real alert in shared/data.

Expected results are computed independently in the same test: hand-written plain-Python
predicates over the alert model for the example filters, astropy for cone separations, healpy
for HEALPix pixels, and the per-alert interpreter for random expressions (hypothesis,
derandomized).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import healpy
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.datapaths import shared_data
from transforms.alert_model import Alert, DetectionKind
from transforms.decode import decode_message
from transforms.filters.compile import compile_filter_set, scoped_expression
from transforms.filters.document import load_filter_file, load_filters
from transforms.filters.geometry import ang2pix_nest
from transforms.filters.model import Filter, FilterSet
from transforms.filters.reference import compile_row_predicate
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "filters"


@functools.cache
def real_alerts() -> tuple[Alert, ...]:
    data = shared_data()
    schemas = LsstSchemas(DEFAULT_LSST_SCHEMA_DIR)
    files = sorted((data / "ztf" / "alerts").glob("*/*.avro")) + sorted(
        (data / "lsst" / "alerts").glob("*.avro")
    )
    alerts: list[Alert] = []
    for path in files:
        alerts.extend(decode_message(path.read_bytes(), schemas))
    return tuple(alerts)


@functools.cache
def example(name: str) -> Filter:
    (flt,) = load_filter_file(str(EXAMPLES / f"{name}.yaml"))
    return flt


def filter_doc(where: str, name: str = "f", extra: str = "") -> Filter:
    (flt,) = load_filters(
        f"apiVersion: alertflow/v1\nkind: Filter\nmetadata: {{name: {name}, owner: t}}\n"
        f"spec:\n  where: {where!r}\n{extra}"
    )
    return flt


def evaluate(flt: Filter, alerts: Any = None, annotations: Any = None) -> np.ndarray:
    alerts = real_alerts() if alerts is None else alerts
    result = compile_filter_set(FilterSet(1, (flt,))).evaluate(alerts, annotations)
    return result.outcomes[flt.name].matches


# --- hand-written predicates for the examples -----------------------------------------------


def _first_detection(a: Alert) -> float:
    return min([a.mjd] + [h.mjd for h in a.history if h.kind is DetectionKind.DETECTION])


def bright_young(a: Alert) -> bool:
    sso, star = a.solar_system, a.nearest_star
    away_from_star = (
        star is None
        or star.star_galaxy_score is None
        or star.star_galaxy_score < 0.5
        or (star.distance_arcsec is not None and star.distance_arcsec > 2)
    )
    return bool(
        a.is_positive is True
        and a.mag is not None
        and a.mag < 18.5
        and a.reliability is not None
        and a.reliability > 0.8
        and a.mjd - _first_detection(a) < 5
        and (sso is None or (sso.name is None and sso.ss_object_id is None))
        and away_from_star
    )


def solar_system(a: Alert) -> bool:
    sso = a.solar_system
    if sso is None:
        return False
    distance = 0.0 if sso.distance_arcsec is None else sso.distance_arcsec
    return sso.ss_object_id is not None or (sso.name is not None and distance <= 5)


def fast_riser(a: Alert) -> bool:
    earlier = [
        h
        for h in a.history
        if h.kind is DetectionKind.DETECTION
        and h.band == a.band
        and h.mag is not None
        and not math.isnan(h.mag)
        and h.mjd < a.mjd
    ]
    if not earlier or a.mag is None or a.is_positive is not True:
        return False
    latest = max(earlier, key=lambda h: h.mjd)
    rate = (latest.mag - a.mag) / (a.mjd - latest.mjd)
    snr_ok = a.flux is None or (
        a.flux_err is not None and a.flux_err != 0 and a.flux / a.flux_err > 5
    )
    return rate > 0.1 and a.mag_err is not None and a.mag_err < 0.2 and snr_ok


TARGETS = [(0.814293, 16.1456989, 5.0), (149.7994394, 2.2793876, 3.5), (150.1191, 2.2058, 10.0)]
COSMOS_PIXELS = {27245, 27247, 27256, 27257, 27258, 27259, 27260}


def expected_cones(alerts: tuple[Alert, ...]) -> np.ndarray:
    coords = SkyCoord([a.ra for a in alerts] * u.deg, [a.dec for a in alerts] * u.deg)
    hit = np.zeros(len(alerts), dtype=bool)
    for ra, dec, radius in TARGETS:
        hit |= coords.separation(SkyCoord(ra * u.deg, dec * u.deg)).arcsec <= radius
    return hit


def expected_cosmos(alerts: tuple[Alert, ...]) -> np.ndarray:
    pix = healpy.ang2pix(
        64, [a.ra for a in alerts], [a.dec for a in alerts], lonlat=True, nest=True
    )
    return np.array(
        [
            p in COSMOS_PIXELS
            and a.survey == "lsst"
            and a.reliability is not None
            and a.reliability > 0.5
            for p, a in zip(pix, alerts, strict=True)
        ]
    )


def nuclear_annotations(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261128)
    redshift = rng.uniform(0.0, 0.5, n)
    redshift[rng.random(n) < 0.3] = np.nan
    ids = np.array([None if z != z else f"GLADE+{i}" for i, z in enumerate(redshift)], dtype=object)
    return {
        "crossmatch.ngc.sep_arcsec": rng.uniform(0.0, 3.0, n),
        "crossmatch.ngc.redshift": redshift,
        "crossmatch.ngc.id": ids,
        "dust.ebv": rng.uniform(0.0, 0.4, n),
    }


def expected_nuclear(alerts: tuple[Alert, ...], ann: dict[str, np.ndarray]) -> np.ndarray:
    out = []
    for i, a in enumerate(alerts):
        z = ann["crossmatch.ngc.redshift"][i]
        out.append(
            a.is_positive is True
            and a.reliability is not None
            and a.reliability > 0.7
            and ann["crossmatch.ngc.sep_arcsec"][i] < 2.0
            and not math.isnan(z)
            and 0.001 <= z <= 0.3
            and ann["dust.ebv"][i] < 0.2
        )
    return np.array(out)


def _python(predicate: Any) -> Any:
    return lambda alerts, ann: np.array([predicate(a) for a in alerts])


CASES = {
    "bright-young-transients": _python(bright_young),
    "solar-system-objects": _python(solar_system),
    "lsst-fast-risers": _python(fast_riser),
    "target-list-cones": lambda alerts, ann: expected_cones(alerts),
    "cosmos-healpix-region": lambda alerts, ann: expected_cosmos(alerts),
    "nuclear-transients": expected_nuclear,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_matches_equal_hand_written_predicate(name: str) -> None:
    alerts = real_alerts()
    ann = nuclear_annotations(len(alerts))
    expected = CASES[name](alerts, ann)
    got = evaluate(example(name), alerts, ann)
    assert got.tolist() == expected.tolist()
    assert 0 < got.sum() < len(alerts)  # the example selects something, not everything


def test_all_examples_together_equal_each_alone() -> None:
    alerts = real_alerts()
    ann = nuclear_annotations(len(alerts))
    filters = tuple(example(name) for name in sorted(CASES))
    compiled = compile_filter_set(FilterSet(5, filters))
    result = compiled.evaluate(alerts, ann)
    assert result.version == 5 and result.flagged == ()
    for flt in filters:
        assert result.outcomes[flt.name].matches.tolist() == evaluate(flt, alerts, ann).tolist()
        assert result.outcomes[flt.name].errors == 0


# --- sky functions against astropy and healpy ------------------------------------------------


@pytest.mark.parametrize("radius", [1.0, 30.0, 3600.0, 36000.0])
def test_cone_against_astropy(radius: float) -> None:
    alerts = real_alerts()
    centre = (alerts[0].ra + 0.001, alerts[0].dec - 0.0005)
    for ra, dec in [centre, (150.0, 2.25), (62.3, -45.1), (359.99, 0.0)]:
        flt = filter_doc(f"cone({ra}, {dec}, {radius})")
        coords = SkyCoord([a.ra for a in alerts] * u.deg, [a.dec for a in alerts] * u.deg)
        expected = coords.separation(SkyCoord(ra * u.deg, dec * u.deg)).arcsec <= radius
        assert evaluate(flt).tolist() == expected.tolist()


@pytest.mark.parametrize("nside", [1, 8, 64, 1024, 2**16, 2**29])
def test_ang2pix_nest_against_healpy(nside: int) -> None:
    rng = np.random.default_rng(nside)
    ra = np.concatenate([rng.uniform(0, 360, 20000), [0.0, 90.0, 180.0, 359.9999999, 45.0, 0.0]])
    dec = np.concatenate(
        [
            np.degrees(np.arcsin(rng.uniform(-1, 1, 20000))),
            [90.0, -90.0, 41.8103149, -41.8103149, 0.0, 89.9999999],
        ]
    )
    assert np.array_equal(
        ang2pix_nest(nside, ra, dec), healpy.ang2pix(nside, ra, dec, lonlat=True, nest=True)
    )


def test_healpix_in_against_healpy() -> None:
    alerts = real_alerts()
    pix = healpy.ang2pix(
        256, [a.ra for a in alerts], [a.dec for a in alerts], lonlat=True, nest=True
    )
    chosen = sorted(set(pix.tolist()))[::3]
    flt = filter_doc(f"healpix_in(256, {chosen})")
    assert evaluate(flt).tolist() == [p in set(chosen) for p in pix]


# --- semantics: nulls, errors, isolation ------------------------------------------------------

# (where, python predicate) over the real alerts: three-valued logic on nulls.
SEMANTICS = [
    ("mag < 18", lambda a: a.mag is not None and a.mag < 18),
    ("not (mag < 18)", lambda a: a.mag is not None and not a.mag < 18),
    ("mag is null", lambda a: a.mag is None),
    ("mag is null or mag > 20", lambda a: a.mag is None or a.mag > 20),
    ("not (mag is not null and mag > 20)", lambda a: a.mag is None or a.mag <= 20),
    ("flux > 0 or true", lambda a: True),
    ("flux > 0 and false", lambda a: False),
    ("coalesce(flux, 0) >= 0", lambda a: a.flux is None or a.flux >= 0),
    ("band not in ['g', 'i']", lambda a: a.band not in ("g", "i")),
    ("mag not between 17 and 19", lambda a: a.mag is not None and not 17 <= a.mag <= 19),
    ("is_positive == false", lambda a: a.is_positive is False),
    (
        "survey == 'lsst' and flux < 0",
        lambda a: a.survey == "lsst" and a.flux is not None and a.flux < 0,
    ),
    ("alert_id == 1642404680815015001", lambda a: a.alert_id == 1642404680815015001),
    ("abs(dec) < 10 and min(ra, 100) == ra", lambda a: abs(a.dec) < 10 and a.ra <= 100),
    ("object_id >= 'ZTF21'", lambda a: a.object_id is not None and a.object_id >= "ZTF21"),
]


@pytest.mark.parametrize(("where", "predicate"), SEMANTICS, ids=[w for w, _ in SEMANTICS])
def test_null_safe_semantics(where: str, predicate: Any) -> None:
    alerts = real_alerts()
    assert evaluate(filter_doc(where)).tolist() == [bool(predicate(a)) for a in alerts]


def test_per_alert_errors_count_against_the_filter_only() -> None:
    alerts = real_alerts()
    divide = filter_doc("1 / (history.n_detections - 1) > 0", name="divide")
    guarded = filter_doc(
        "history.n_detections != 1 and 1 / (history.n_detections - 1) > 0", name="guarded"
    )
    log = filter_doc("log10(flux) > 3", name="log")
    plain = filter_doc("mag < 18", name="plain")
    result = compile_filter_set(
        FilterSet(2, (divide, guarded, log, plain)), max_error_fraction=0.05
    ).evaluate(alerts)
    one = np.array(
        [
            sum(h.kind is DetectionKind.DETECTION and h.mjd < a.mjd for h in a.history) == 1
            for a in alerts
        ]
    )
    nonpositive = np.array([a.flux is not None and a.flux <= 0 for a in alerts])
    assert result.outcomes["divide"].error_mask.tolist() == one.tolist()
    assert result.outcomes["guarded"].errors == 0
    assert result.outcomes["guarded"].matches.tolist() == result.outcomes["divide"].matches.tolist()
    assert result.outcomes["log"].error_mask.tolist() == nonpositive.tolist()
    assert result.outcomes["plain"].matches.tolist() == evaluate(plain).tolist()
    expected_flagged = tuple(
        n for n, m in (("divide", one), ("log", nonpositive)) if m.sum() > 0.05 * len(alerts)
    )
    assert result.flagged == expected_flagged and "log" in expected_flagged


def test_missing_annotation_fails_only_that_filter() -> None:
    alerts = real_alerts()
    nuclear, cones = example("nuclear-transients"), example("target-list-cones")
    result = compile_filter_set(FilterSet(1, (nuclear, cones))).evaluate(alerts)
    assert result.outcomes["nuclear-transients"].errors == len(alerts)
    assert result.outcomes["nuclear-transients"].failure == (
        "annotation column 'crossmatch.ngc.sep_arcsec' was not provided (annotator 'crossmatch')"
    )
    assert result.flagged == ("nuclear-transients",)
    assert result.outcomes["target-list-cones"].matches.tolist() == expected_cones(alerts).tolist()


def test_annotation_columns_accept_masked_and_object_arrays() -> None:
    alerts = real_alerts()[:6]
    flt = filter_doc(
        "tags.kilonova and crossmatch.gcvs.class == 'SN Ia' and sky.gal_b > 10",
        extra="  annotations: [tags, crossmatch, sky]\n",
    )
    ann = {
        "tags.kilonova": np.array([True, True, None, True, True, False], dtype=object),
        "crossmatch.gcvs.class": np.array(
            ["SN Ia", None, "SN Ia", "SN Ia", "SN Ia", "SN Ia"], dtype=object
        ),
        "sky.gal_b": np.ma.MaskedArray(
            [20.0, 20.0, 20.0, 20.0, 5.0, 20.0], mask=[0, 0, 0, 1, 0, 0]
        ),
    }
    assert evaluate(flt, alerts, ann).tolist() == [True, False, False, False, False, False]


def test_shared_sub_expressions_are_computed_once() -> None:
    one = filter_doc("mag < 19 and reliability > 0.8", name="one")
    two = filter_doc("mag < 19 and reliability > 0.8 and band == 'g'", name="two")
    three = filter_doc("reliability > 0.8 or mag < 19", name="three")
    assert compile_filter_set(FilterSet(1, (one,))).slot_count == 7
    # two adds: band, 'g', ==, its 'and'; three adds only its 'or'.
    assert compile_filter_set(FilterSet(1, (one, two, three))).slot_count == 7 + 4 + 1


def test_empty_batch() -> None:
    result = compile_filter_set(FilterSet(1, (example("target-list-cones"),))).evaluate([])
    assert result.n_alerts == 0 and result.outcomes["target-list-cones"].matches.shape == (0,)


# --- property: random expressions agree with the per-alert interpreter -----------------------

_NUM_FIELDS = [
    "mag",
    "mag_err",
    "reliability",
    "flux",
    "flux_err",
    "ra",
    "dec",
    "history.rise_rate",
    "nearest_star.star_galaxy_score",
    "history.n_detections",
    "solar_system.distance_arcsec",
]
_STR_FIELDS = ["band", "survey", "object_id"]
_NUMBERS = st.sampled_from(["0", "1", "2", "0.5", "18", "-3", "1e3", "150", "0.0"])


def _num(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(st.sampled_from(_NUM_FIELDS), _NUMBERS)
    if depth <= 0:
        return leaf
    sub = _num(depth - 1)
    return st.one_of(
        leaf,
        st.builds(
            lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from(["+", "-", "*", "/", "%"]), sub
        ),
        st.builds(lambda f, a: f"{f}({a})", st.sampled_from(["abs", "log10", "sqrt"]), sub),
        st.builds(
            lambda f, a, b: f"{f}({a}, {b})", st.sampled_from(["min", "max", "coalesce"]), sub, sub
        ),
        st.builds(lambda a: f"-{a}", sub),
    )


def _cond(depth: int) -> st.SearchStrategy[str]:
    num = _num(1)
    leaf = st.one_of(
        st.builds(
            lambda a, op, b: f"{a} {op} {b}",
            num,
            st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
            num,
        ),
        st.builds(
            lambda f, neg: f"{f} is {'not ' if neg else ''}null",
            st.sampled_from(_NUM_FIELDS + _STR_FIELDS),
            st.booleans(),
        ),
        st.builds(
            lambda f, items, neg: f"{f} {'not ' if neg else ''}in [{', '.join(items)}]",
            st.just("band"),
            st.lists(st.sampled_from(["'g'", "'r'", "'z'"]), min_size=1, max_size=3),
            st.booleans(),
        ),
        st.builds(
            lambda a, lo, hi, neg: f"{a} {'not ' if neg else ''}between {lo} and {hi}",
            num,
            num,
            num,
            st.booleans(),
        ),
        st.builds(
            lambda ra, dec, r: f"cone({ra}, {dec}, {r})",
            st.sampled_from(["0.8143", "149.8", "ra + 0.001"]),
            st.sampled_from(["16.1457", "2.28", "dec"]),
            st.sampled_from(["5", "3600", "mag"]),
        ),
        st.sampled_from(
            [
                "is_positive",
                "is_positive == false",
                "true",
                "false",
                "healpix_in(64, [27258, 19697])",
            ]
        ),
    )
    if depth <= 0:
        return leaf
    sub = _cond(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from(["and", "or"]), sub),
        st.builds(lambda a: f"not ({a})", sub),
    )


@settings(
    derandomize=True,
    database=None,
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_cond(3), min_size=1, max_size=4))
def test_random_filters_agree_with_per_alert_interpreter(wheres: list[str]) -> None:
    alerts = real_alerts()
    filters = tuple(filter_doc(w, name=f"f{i}") for i, w in enumerate(wheres))
    result = compile_filter_set(FilterSet(1, filters)).evaluate(alerts)
    for flt in filters:
        outcome = result.outcomes[flt.name]
        assert outcome.failure is None
        predicate = compile_row_predicate(scoped_expression(flt))
        rows = [predicate(a) for a in alerts]
        assert outcome.matches.tolist() == [r.matched for r in rows], flt.where
        assert outcome.error_mask.tolist() == [r.error for r in rows], flt.where
