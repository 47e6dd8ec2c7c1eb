"""lightcurve: batched features equal a plain-Python loop on ZTF21abiuvdk's 34 real alerts."""

from __future__ import annotations

import statistics
from dataclasses import replace

import pytest

from tests.datapaths import real_alerts
from transforms.alert_model import Alert, DetectionKind
from transforms.annotate.lightcurve import LightCurveConfig, annotate_lightcurves
from transforms.annotation_model import LightCurve


def _points(alert: Alert) -> dict[str, list[tuple[float, float]]]:
    by_band: dict[str, list[tuple[float, float]]] = {}
    seen = set()
    rows = [r for r in alert.history if r.kind == DetectionKind.DETECTION]
    for mjd, band, mag, pos in [(r.mjd, r.band, r.mag, r.is_positive) for r in rows] + [
        (alert.mjd, alert.band, alert.mag, alert.is_positive)
    ]:
        if mag is None or pos is False or band is None or (mjd, band) in seen:
            continue
        seen.add((mjd, band))
        by_band.setdefault(band, []).append((mjd, mag))
    return {b: sorted(p) for b, p in by_band.items()}


def _theil_sen(points: list[tuple[float, float]]) -> float | None:
    slopes = []
    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            (t1, m1), (t2, m2) = points[i], points[j]
            if t2 != t1:
                slopes.append((m2 - m1) / (t2 - t1))
    return statistics.median(slopes) if slopes else None


def _reference(alert: Alert, max_dt: float) -> dict:
    bands = _points(alert)
    out: dict = {"n_det": sum(len(p) for p in bands.values())}
    firsts = [p[0][0] for p in bands.values()]
    out["days_since_first"] = alert.mjd - min(firsts) if firsts else None
    for band, pts in bands.items():
        mags = [m for _, m in pts]
        peak = mags.index(min(mags))
        rise = _theil_sen(pts[: peak + 1])
        out[band] = {
            "n_det": len(pts),
            "span_days": pts[-1][0] - pts[0][0],
            "first_mag": pts[0][1],
            "last_mag": pts[-1][1],
            "peak_mag": min(mags),
            "amplitude": max(mags) - min(mags),
            "rise_rate": None if rise is None else -rise,
            "fade_rate": _theil_sen(pts[peak:]),
        }
    best = None
    for tg, mg in bands.get("g", []):
        for tr, mr in bands.get("r", []):
            if abs(tg - tr) <= max_dt:
                key = (max(tg, tr), -abs(tg - tr))
                if best is None or key > best[0]:
                    best = (key, mg - mr)
    out["color"] = None if best is None else best[1]
    return out


def _approx(value):
    return None if value is None else pytest.approx(value, rel=1e-12, abs=1e-12)


def test_features_of_ztf21abiuvdk_equal_a_plain_loop() -> None:
    alerts = [a for a in real_alerts() if a.object_id == "ZTF21abiuvdk"]
    assert len(alerts) == 34
    config = LightCurveConfig()
    results = annotate_lightcurves(alerts, config)
    bands_seen = set()
    colours = 0
    for alert, lc in zip(alerts, results, strict=True):
        assert isinstance(lc, LightCurve)
        ref = _reference(alert, config.color_max_dt_days)
        assert lc.n_det == ref["n_det"]
        assert lc.days_since_first == _approx(ref["days_since_first"])
        assert [b.band for b in lc.bands] == [b for b in ("g", "r") if b in ref]
        for features in lc.bands:
            bands_seen.add(features.band)
            expected = ref[features.band]
            for name, value in expected.items():
                assert getattr(features, name) == _approx(value), (alert.alert_id, name)
        assert lc.color == _approx(ref["color"])
        if lc.color is not None:
            colours += 1
            assert lc.color_bands == "g-r"
    assert bands_seen == {"g", "r"}
    assert colours > 20
    # The supernova rose in g before its peak: some early alert sees a positive rise rate.
    assert any((b.rise_rate or 0) > 0 for lc in results for b in lc.bands if b.band == "g")


def test_no_usable_points() -> None:
    alert = next(a for a in real_alerts() if a.object_id == "ZTF21abiuvdk")
    bare = replace(alert, history=(), mag=None)
    (lc,) = annotate_lightcurves([bare], LightCurveConfig())
    assert lc == LightCurve(0, None, (), None, None, None)


def test_negative_and_duplicate_points_are_left_out() -> None:
    alert = next(a for a in real_alerts() if a.object_id == "ZTF21abiuvdk")
    negative = replace(alert, is_positive=False)
    duplicated = replace(alert, history=alert.history + alert.history)
    base, neg, dup = annotate_lightcurves([alert, negative, duplicated], LightCurveConfig())
    assert neg.n_det == base.n_det - 1
    assert dup == base


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="two different bands"):
        LightCurveConfig(color_pairs=(("g", "g"),))
