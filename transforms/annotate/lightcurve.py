"""Light-curve features from each alert's own history, per band, for a batch of alerts.

The points are the alert's positive detections with a magnitude (history rows of kind
DETECTION, plus the alert itself); forced photometry and upper limits are not used. A batch is
flattened into one set of arrays sorted by (alert, band, time), so counts, first/last/peak and
amplitudes are ``np.ufunc.reduceat`` over segments; the Theil-Sen rates (the median of pairwise
slopes, robust to one bad point) are computed per segment on its few points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import NDArray

from transforms.alert_model import Alert, DetectionKind
from transforms.annotation_model import BANDS, BandFeatures, LightCurve

STAGE = "annotate.lightcurve"
_BAND_INDEX = {band: i for i, band in enumerate(BANDS)}


@dataclass(frozen=True, slots=True)
class LightCurveConfig:
    """``color_max_dt_days``: two detections make a colour only this close in time.
    ``color_pairs``: band pairs to try, the first preferred when two are equally recent."""

    color_max_dt_days: float = 0.5
    color_pairs: tuple[tuple[str, str], ...] = (
        ("g", "r"),
        ("r", "i"),
        ("i", "z"),
        ("u", "g"),
        ("z", "y"),
        ("g", "i"),
    )

    def __post_init__(self) -> None:
        if not self.color_max_dt_days >= 0.0:
            raise ValueError("lightcurve.color_max_dt_days must be >= 0")
        for pair in self.color_pairs:
            if len(pair) != 2 or not set(pair) <= set(BANDS) or pair[0] == pair[1]:
                raise ValueError(f"lightcurve.color_pairs: {pair!r} is not two different bands")


def detection_points(alert: Alert) -> list[tuple[float, str, float]]:
    """(mjd, band, mag) of the alert's positive detections, its own included, each epoch once."""
    seen: dict[tuple[float, str], float] = {}
    rows = [
        (row.mjd, row.band, row.mag, row.is_positive)
        for row in alert.history
        if row.kind is DetectionKind.DETECTION
    ]
    rows.append((alert.mjd, alert.band, alert.mag, alert.is_positive))
    for mjd, band, mag, positive in rows:
        if band not in _BAND_INDEX or mag is None or positive is False:
            continue
        if not (math.isfinite(mjd) and math.isfinite(mag)):
            continue
        seen.setdefault((mjd, band), mag)
    return [(mjd, band, mag) for (mjd, band), mag in seen.items()]


@cache
def _pairs(n: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    # Histories are short and their lengths repeat, so the index pairs are built once per n.
    return np.triu_indices(n, k=1)


def theil_sen_slope(t: NDArray[np.float64], y: NDArray[np.float64]) -> float | None:
    """Median of the slopes between every two points at different times; None if no such pair."""
    if len(t) < 2:
        return None
    i, j = _pairs(len(t))
    dt = t[j] - t[i]
    keep = dt != 0.0
    if not keep.any():
        return None
    return float(np.median((y[j] - y[i])[keep] / dt[keep]))


def _band_features(band: str, t: NDArray[np.float64], m: NDArray[np.float64]) -> BandFeatures:
    peak = int(np.argmin(m))  # brightest; the earliest of equal magnitudes
    rise = theil_sen_slope(t[: peak + 1], m[: peak + 1])
    fade = theil_sen_slope(t[peak:], m[peak:])
    return BandFeatures(
        band=band,
        n_det=len(t),
        first_mjd=float(t[0]),
        last_mjd=float(t[-1]),
        span_days=float(t[-1] - t[0]),
        first_mag=float(m[0]),
        last_mag=float(m[-1]),
        peak_mag=float(m[peak]),
        peak_mjd=float(t[peak]),
        amplitude=float(m.max() - m[peak]),
        rise_rate=None if rise is None else -rise,
        fade_rate=fade,
    )


def _latest_color(
    by_band: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]], config: LightCurveConfig
) -> tuple[float, str, float] | None:
    best: tuple[float, float, int, float, str] | None = None  # (-when, |dt|, rank, colour, name)
    for rank, (b1, b2) in enumerate(config.color_pairs):
        if b1 not in by_band or b2 not in by_band:
            continue
        t1, m1 = by_band[b1]
        t2, m2 = by_band[b2]
        dt = np.abs(t1[:, None] - t2[None, :])
        close = dt <= config.color_max_dt_days
        if not close.any():
            continue
        when = np.where(close, np.maximum(t1[:, None], t2[None, :]), -np.inf)
        latest = when.max()
        # Among the latest pairings, the closest in time; then the first in row-major order.
        candidates = np.where(when == latest, dt, np.inf)
        i, j = np.unravel_index(int(np.argmin(candidates)), candidates.shape)
        key = (-float(latest), float(dt[i, j]), rank, float(m1[i] - m2[j]), f"{b1}-{b2}")
        if best is None or key[:3] < best[:3]:
            best = key
    if best is None:
        return None
    return best[3], best[4], -best[0]


def annotate_lightcurves(alerts: Sequence[Alert], config: LightCurveConfig) -> list[LightCurve]:
    """One :class:`LightCurve` per alert."""
    groups: list[int] = []
    bands: list[int] = []
    times: list[float] = []
    mags: list[float] = []
    for g, alert in enumerate(alerts):
        for mjd, band, mag in detection_points(alert):
            groups.append(g)
            bands.append(_BAND_INDEX[band])
            times.append(mjd)
            mags.append(mag)
    group = np.asarray(groups, np.int64)
    band_ix = np.asarray(bands, np.int64)
    t = np.asarray(times, np.float64)
    m = np.asarray(mags, np.float64)
    order = np.lexsort((t, band_ix, group))
    group, band_ix, t, m = group[order], band_ix[order], t[order], m[order]
    # Segments: one per (alert, band) run in the sorted arrays.
    boundary = np.ones(len(t), dtype=bool)
    boundary[1:] = (group[1:] != group[:-1]) | (band_ix[1:] != band_ix[:-1])
    starts = np.flatnonzero(boundary)
    ends = np.append(starts[1:], len(t)) if len(t) else starts
    per_alert: list[list[BandFeatures]] = [[] for _ in alerts]
    arrays: list[dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]] = [{} for _ in alerts]
    first_mjd = np.full(len(alerts), np.inf)
    if len(t):
        np.minimum.at(first_mjd, group[starts], t[starts])
    counts = np.zeros(len(alerts), np.int64)
    np.add.at(counts, group, 1)
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        g = int(group[s])
        band = BANDS[int(band_ix[s])]
        seg_t, seg_m = t[s:e], m[s:e]
        per_alert[g].append(_band_features(band, seg_t, seg_m))
        arrays[g][band] = (seg_t, seg_m)
    out: list[LightCurve] = []
    for g, alert in enumerate(alerts):
        colour = _latest_color(arrays[g], config)
        first = float(first_mjd[g])
        out.append(
            LightCurve(
                n_det=int(counts[g]),
                days_since_first=alert.mjd - first if np.isfinite(first) else None,
                bands=tuple(per_alert[g]),
                color=None if colour is None else colour[0],
                color_bands=None if colour is None else colour[1],
                color_mjd=None if colour is None else colour[2],
            )
        )
    return out
