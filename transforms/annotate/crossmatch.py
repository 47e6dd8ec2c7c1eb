"""Cone cross-match of a batch of alerts against the loaded catalogues.

Each catalogue (``transforms.annotate.catalogs``) is sorted by NESTED HEALPix index at an order
whose pixels are at least four times the match radius across, so every source within the radius
of an alert lies in the alert's pixel or one of its (up to eight) neighbours. A batch is matched
in one pass of numpy: the candidate (alert, source) pairs of those nine buckets are expanded with
``np.repeat``, their exact angular separations computed from unit vectors
(``atan2(|a x b|, a . b)``, accurate at small angles), and the nearest source within the radius
is kept per alert (ties go to the lower catalogue row, like ``argmin`` over the catalogue).
:func:`brute_force_nearest` is the reference the tests and the benchmark compare against.
"""

from __future__ import annotations

from collections.abc import Sequence

import healpy as hp
import numpy as np
from numpy.typing import NDArray

from transforms.annotate.catalogs import ARCSEC_PER_RAD, Catalog, FloatArray, IntArray
from transforms.annotate.sky import position_failure, unit_vectors, valid_positions
from transforms.annotation_model import AnnotationFailure, CatalogMatch, CrossMatch

STAGE = "annotate.crossmatch"


def separation_arcsec(a: FloatArray, b: FloatArray) -> FloatArray:
    """Angular separation in arcsec between rows of two (n, 3) unit-vector arrays."""
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    dot = np.einsum("ij,ij->i", a, b)
    separation: FloatArray = np.arctan2(cross, dot) * ARCSEC_PER_RAD
    return separation


def nearest_matches(
    catalog: Catalog, ra_deg: FloatArray, dec_deg: FloatArray
) -> tuple[IntArray, FloatArray]:
    """Per position: the catalogue row of the nearest source within the radius (-1 if none)
    and its separation in arcsec (NaN if none). Positions must be valid sky positions."""
    n = len(ra_deg)
    rows = np.full(n, -1, np.int64)
    seps = np.full(n, np.nan)
    if n == 0 or len(catalog) == 0:
        return rows, seps
    nside = 1 << catalog.order
    own = np.asarray(hp.ang2pix(nside, ra_deg, dec_deg, nest=True, lonlat=True), np.int64)
    around = np.asarray(hp.get_all_neighbours(nside, ra_deg, dec_deg, nest=True, lonlat=True))
    cells = np.sort(np.vstack([own[None, :], around.astype(np.int64)]), axis=0)
    # At low orders a pixel can be its own neighbour's neighbour: count each bucket once.
    repeated = np.zeros_like(cells, dtype=bool)
    repeated[1:] = cells[1:] == cells[:-1]
    cells[repeated] = -1
    starts = np.searchsorted(catalog.sorted_pixels, cells, side="left")
    ends = np.searchsorted(catalog.sorted_pixels, cells, side="right")
    counts = np.where(cells >= 0, ends - starts, 0).ravel()
    total = int(counts.sum())
    if total == 0:
        return rows, seps
    alert_of_cell = np.tile(np.arange(n, dtype=np.int64), cells.shape[0])
    pair_alert = np.repeat(alert_of_cell, counts)
    first_pair = np.cumsum(counts) - counts
    position = np.repeat(starts.ravel() - first_pair, counts) + np.arange(total)
    pair_row = catalog.row_of[position]
    alert_vectors = unit_vectors(np.asarray(ra_deg, np.float64), np.asarray(dec_deg, np.float64))
    pair_sep = separation_arcsec(alert_vectors[pair_alert], catalog.vectors[pair_row])
    within = pair_sep <= catalog.spec.radius_arcsec
    pair_alert, pair_row, pair_sep = pair_alert[within], pair_row[within], pair_sep[within]
    ordering = np.lexsort((pair_row, pair_sep, pair_alert))
    pair_alert, pair_row, pair_sep = pair_alert[ordering], pair_row[ordering], pair_sep[ordering]
    first = np.ones(len(pair_alert), dtype=bool)
    first[1:] = pair_alert[1:] != pair_alert[:-1]
    rows[pair_alert[first]] = pair_row[first]
    seps[pair_alert[first]] = pair_sep[first]
    return rows, seps


def brute_force_nearest(catalog: Catalog, ra: float, dec: float) -> tuple[int, float]:
    """The reference: haversine separation to every source, argmin, within the radius;
    (-1, nan) if none. Independent of the bucket index and of the unit-vector formula."""
    ra1, dec1 = np.radians(ra), np.radians(dec)
    ra2, dec2 = np.radians(catalog.ra), np.radians(catalog.dec)
    h = (
        np.sin((dec2 - dec1) / 2.0) ** 2
        + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2.0) ** 2
    )
    seps = 2.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))) * ARCSEC_PER_RAD
    row = int(np.argmin(seps))
    if seps[row] <= catalog.spec.radius_arcsec:
        return row, float(seps[row])
    return -1, float("nan")


def inside_ellipse(
    ra_deg: FloatArray,
    dec_deg: FloatArray,
    centre_ra: FloatArray,
    centre_dec: FloatArray,
    major_arcmin: FloatArray,
    minor_arcmin: FloatArray,
    pa_deg: FloatArray,
) -> NDArray[np.bool_]:
    """Whether each position lies inside the ellipse of full axes major x minor (arcmin) at
    position angle pa (east of north) around each centre. A missing minor axis or PA makes it a
    circle of the major axis; a missing major axis is False (callers report None)."""
    ra1, dec1 = np.radians(centre_ra), np.radians(centre_dec)
    ra2, dec2 = np.radians(ra_deg), np.radians(dec_deg)
    dra = ra2 - ra1
    # Position angle of the alert seen from the centre, east of north.
    theta = np.arctan2(
        np.sin(dra) * np.cos(dec2),
        np.cos(dec1) * np.sin(dec2) - np.sin(dec1) * np.cos(dec2) * np.cos(dra),
    )
    rho = separation_arcsec(unit_vectors(centre_ra, centre_dec), unit_vectors(ra_deg, dec_deg))
    circle = ~np.isfinite(minor_arcmin) | ~np.isfinite(pa_deg)
    a = major_arcmin * 30.0  # semi-axis in arcsec
    b = np.where(circle, a, minor_arcmin * 30.0)
    delta = theta - np.radians(np.where(circle, 0.0, pa_deg))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (rho * np.cos(delta) / a) ** 2 + (rho * np.sin(delta) / b) ** 2
    inside: NDArray[np.bool_] = np.isfinite(major_arcmin) & (major_arcmin > 0) & (value <= 1.0)
    return inside


def match_catalog(
    catalog: Catalog, ra_deg: FloatArray, dec_deg: FloatArray
) -> list[CatalogMatch | None]:
    """The nearest match (or None) for each valid position, as records."""
    rows, seps = nearest_matches(catalog, ra_deg, dec_deg)
    hit = np.flatnonzero(rows >= 0)
    inside: list[bool | None] = [None] * len(rows)
    if catalog.major_arcmin is not None and len(hit):
        r = rows[hit]
        nan = np.full(len(r), np.nan)
        flags = inside_ellipse(
            ra_deg[hit],
            dec_deg[hit],
            catalog.ra[r],
            catalog.dec[r],
            catalog.major_arcmin[r],
            nan if catalog.minor_arcmin is None else catalog.minor_arcmin[r],
            nan if catalog.pa_deg is None else catalog.pa_deg[r],
        )
        has_axes = np.isfinite(catalog.major_arcmin[r])
        for i, flag, known in zip(hit.tolist(), flags.tolist(), has_axes.tolist(), strict=True):
            inside[i] = flag if known else None
    out: list[CatalogMatch | None] = []
    names = catalog.spec.columns
    for i, (row, sep) in enumerate(zip(rows.tolist(), seps.tolist(), strict=True)):
        if row < 0:
            out.append(None)
            continue
        out.append(
            CatalogMatch(
                catalog=catalog.spec.name,
                id=catalog.ids[row],
                sep_arcsec=sep,
                columns=tuple((name, catalog.columns[name][row]) for name in names),
                inside_galaxy=inside[i],
            )
        )
    return out


def annotate_crossmatch(
    catalogs: Sequence[Catalog], ra_deg: FloatArray, dec_deg: FloatArray
) -> list[CrossMatch | AnnotationFailure]:
    """One :class:`CrossMatch` per position (every catalogue), or a failure for a bad position."""
    ra = np.asarray(ra_deg, np.float64)
    dec = np.asarray(dec_deg, np.float64)
    ok = valid_positions(ra, dec)
    good = np.flatnonzero(ok)
    ra_ok, dec_ok = ra[good] % 360.0, dec[good]
    per_catalog = [match_catalog(catalog, ra_ok, dec_ok) for catalog in catalogs]
    out: list[CrossMatch | AnnotationFailure] = [
        position_failure(STAGE, float(r), float(d)) for r, d in zip(ra, dec, strict=True)
    ]
    for j, i in enumerate(good.tolist()):
        out[i] = CrossMatch(
            tuple(
                (c.spec.name, matches[j]) for c, matches in zip(catalogs, per_catalog, strict=True)
            )
        )
    return out
