"""The one alert model shared by ZTF and LSST (DESIGN.md section 2).

Alerts are decoded once, at the edge (``transforms.decode``), into these immutable records;
nothing downstream reads raw Avro dicts. Conventions every consumer can rely on:

* times are MJD (ZTF's JD minus 2400000.5; LSST's midpointMjdTai);
* ``band`` is a one-letter filter name (ZTF fid 1/2/3 -> g/r/i; LSST as published);
* magnitudes are AB-like magnitudes; for LSST they are derived from ``psfFlux`` in nJy as
  ``31.4 - 2.5 log10(flux)``, and a flux <= 0 (or missing) gives ``mag = None``, never an error;
* ZTF's "no value" sentinels (-999 for numbers, ``"null"`` for ssnamenr, -99999 for forced
  photometry flux) become ``None``, so a filter never compares against a magic number;
* ``None`` means "not measured / not in this schema version", never "zero".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: Zero point of LSST fluxes in nJy: AB mag = 31.4 - 2.5 log10(flux / nJy).
LSST_NJY_ZERO_POINT = 31.4
# d(mag)/d(flux) * flux = 2.5 / ln(10)
_MAG_ERR_FACTOR = 2.5 / math.log(10.0)


class Survey(StrEnum):
    """Which stream an alert came from."""

    ZTF = "ztf"
    LSST = "lsst"


class DetectionKind(StrEnum):
    """What a history row is: a detection, a forced-photometry point, or an upper limit."""

    DETECTION = "detection"
    FORCED = "forced"
    UPPER_LIMIT = "upper_limit"


@dataclass(frozen=True, slots=True)
class Detection:
    """One row of an alert's history or forced photometry.

    For detections ``mag``/``mag_err`` are set when the survey gives or implies one; for forced
    photometry ``flux``/``flux_err`` are the measurement (LSST: nJy; ZTF: DN at the image's
    zero point ``magzpsci``) and ``mag`` is set only for a positive flux; upper limits carry
    ``limiting_mag`` (ZTF diffmaglim) or, for LSST non-detections, the noise in ``flux_err``.
    """

    kind: DetectionKind
    mjd: float
    band: str | None
    mag: float | None = None
    mag_err: float | None = None
    flux: float | None = None
    flux_err: float | None = None
    limiting_mag: float | None = None
    is_positive: bool | None = None
    source_id: int | None = None
    ra: float | None = None
    dec: float | None = None


@dataclass(frozen=True, slots=True)
class SolarSystemObject:
    """A known solar-system object associated with the detection.

    ZTF: ``name`` is ssnamenr, with its distance (arcsec) and V magnitude; LSST: ``ss_object_id``
    (and the designation when the schema has one).
    """

    name: str | None = None
    ss_object_id: int | None = None
    distance_arcsec: float | None = None
    mag: float | None = None


@dataclass(frozen=True, slots=True)
class NearestStar:
    """ZTF's closest Pan-STARRS1 source: star/galaxy score (1 = star), distance, r magnitude."""

    star_galaxy_score: float | None
    distance_arcsec: float | None
    r_mag: float | None


@dataclass(frozen=True, slots=True)
class Cutouts:
    """Image stamps as published: ZTF gzip-compressed FITS, LSST plain FITS. Any may be None."""

    science: bytes | None
    template: bytes | None
    difference: bytes | None


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, either survey, immutable.

    ``alert_id`` is unique per alert (ZTF candid; LSST alertId or, from v8, diaSourceId);
    ``source_id`` identifies the triggering detection (ZTF candid, LSST diaSourceId);
    ``object_id`` the object it belongs to (ZTF objectId; LSST diaObjectId as a string, None for
    solar-system detections that have none). ``flux``/``flux_err`` are LSST psfFlux in nJy (None
    for ZTF). ``reliability``: ZTF drb when present, else rb; LSST reliability.
    ``is_positive``: ZTF isdiffpos, LSST sign of psfFlux (None only if the flux is missing).
    ``original`` holds the message bytes in the survey's wire form for pass-through output.
    """

    survey: Survey
    alert_id: int
    source_id: int
    object_id: str | None
    ra: float
    dec: float
    mjd: float
    band: str | None
    mag: float | None
    mag_err: float | None
    flux: float | None
    flux_err: float | None
    reliability: float | None
    is_positive: bool | None
    solar_system: SolarSystemObject | None
    nearest_star: NearestStar | None
    history: tuple[Detection, ...]
    forced_photometry: tuple[Detection, ...]
    schema_version: str
    cutouts: Cutouts | None = field(default=None, repr=False)
    original: bytes = field(default=b"", repr=False)


def flux_to_mag(flux_njy: float | None) -> float | None:
    """AB magnitude of a flux in nJy; None for a missing, zero or negative flux."""
    if flux_njy is None or not flux_njy > 0.0 or math.isinf(flux_njy):
        return None
    return LSST_NJY_ZERO_POINT - 2.5 * math.log10(flux_njy)


def flux_err_to_mag_err(flux: float | None, flux_err: float | None) -> float | None:
    """Magnitude error from a flux and its error (first order); None when flux <= 0."""
    if flux is None or flux_err is None or not flux > 0.0 or math.isinf(flux):
        return None
    return _MAG_ERR_FACTOR * flux_err / flux


def _clean_json(value: Any) -> Any:
    # JSON has no NaN/Infinity; the model may carry them from the packet.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _detection_dict(row: Detection) -> dict[str, Any]:
    return {
        "kind": str(row.kind),
        "mjd": _clean_json(row.mjd),
        "band": row.band,
        "mag": _clean_json(row.mag),
        "mag_err": _clean_json(row.mag_err),
        "flux": _clean_json(row.flux),
        "flux_err": _clean_json(row.flux_err),
        "limiting_mag": _clean_json(row.limiting_mag),
        "is_positive": row.is_positive,
        "source_id": row.source_id,
        "ra": _clean_json(row.ra),
        "dec": _clean_json(row.dec),
    }


def to_json_dict(alert: Alert) -> dict[str, Any]:
    """The alert as JSON-ready data, without cutout bytes and original bytes.

    Cutouts and the original message are summarised by their sizes (``cutout_bytes``,
    ``original_bytes``) so a person can see they are there. Non-finite floats become null.
    The key order is stable, so output diffs cleanly.
    """
    cutouts = alert.cutouts
    star = alert.nearest_star
    sso = alert.solar_system
    return {
        "survey": str(alert.survey),
        "alert_id": alert.alert_id,
        "source_id": alert.source_id,
        "object_id": alert.object_id,
        "schema_version": alert.schema_version,
        "ra": _clean_json(alert.ra),
        "dec": _clean_json(alert.dec),
        "mjd": _clean_json(alert.mjd),
        "band": alert.band,
        "mag": _clean_json(alert.mag),
        "mag_err": _clean_json(alert.mag_err),
        "flux": _clean_json(alert.flux),
        "flux_err": _clean_json(alert.flux_err),
        "reliability": _clean_json(alert.reliability),
        "is_positive": alert.is_positive,
        "solar_system": None
        if sso is None
        else {
            "name": sso.name,
            "ss_object_id": sso.ss_object_id,
            "distance_arcsec": _clean_json(sso.distance_arcsec),
            "mag": _clean_json(sso.mag),
        },
        "nearest_star": None
        if star is None
        else {
            "star_galaxy_score": _clean_json(star.star_galaxy_score),
            "distance_arcsec": _clean_json(star.distance_arcsec),
            "r_mag": _clean_json(star.r_mag),
        },
        "history": [_detection_dict(row) for row in alert.history],
        "forced_photometry": [_detection_dict(row) for row in alert.forced_photometry],
        "cutout_bytes": None
        if cutouts is None
        else {
            "science": None if cutouts.science is None else len(cutouts.science),
            "template": None if cutouts.template is None else len(cutouts.template),
            "difference": None if cutouts.difference is None else len(cutouts.difference),
        },
        "original_bytes": len(alert.original),
    }
