"""Decoded survey packets to the alert model: ZTF (schema 1.3 to 4.02) and LSST (v3.0 to v11.1).

The records are what ``transforms.schemas``' projecting readers return (the fields of
``ZTF_PROJECTION`` and ``LSST_PROJECTION``). The rules of the model (MJD times, one-letter
bands, ZTF's sentinels as None, LSST magnitudes from fluxes) are applied here, once; a field
the model requires that is missing or invalid raises
:class:`~transforms.decode_errors.DecodeError` (stage MODEL).
"""

from __future__ import annotations

import math
from typing import Any

from transforms import alert_model as model
from transforms.decode_errors import DecodeError, DecodeStage

_ZTF_BANDS = {1: "g", 2: "r", 3: "i"}
# ZTF marks "no value" with these instead of null (see the ZTF schema docs).
_ZTF_MISSING = -999.0
_ZTF_MISSING_FLUX = -99999.0
_JD_TO_MJD = 2400000.5


def _required(record: dict[str, Any], names: tuple[str, ...], where: str) -> Any:
    """The first of ``names`` present and non-null in ``record``; DecodeError(MODEL) if none."""
    for name in names:
        value = record.get(name)
        if value is not None:
            return value
    present = [n for n in names if n in record]
    if present:
        raise DecodeError(DecodeStage.MODEL, f"required field {where}.{present[0]} is null")
    raise DecodeError(
        DecodeStage.MODEL,
        f"missing required field {where}.{names[0]}: the writer schema does not have it",
    )


def _first(record: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in record:
            return record[name]
    return None


def _ztf_value(value: float | None) -> float | None:
    return None if value is None or value == _ZTF_MISSING else value


def _ztf_band(fid: Any, where: str) -> str:
    band = _ZTF_BANDS.get(fid)
    if band is None:
        raise DecodeError(
            DecodeStage.MODEL, f"{where}.fid is {fid!r}; ZTF filter ids are 1 (g), 2 (r), 3 (i)"
        )
    return band


def _ztf_positive(isdiffpos: Any, where: str) -> bool:
    if isdiffpos in ("t", "1"):
        return True
    if isdiffpos in ("f", "0"):
        return False
    raise DecodeError(
        DecodeStage.MODEL, f"{where}.isdiffpos is {isdiffpos!r}; expected 't', 'f', '1' or '0'"
    )


def _ztf_stamp(cutout: dict[str, Any] | None) -> bytes | None:
    return None if cutout is None else cutout.get("stampData")


def _ztf_schema_version(record: dict[str, Any], writer_version: str | None) -> str:
    """The packet's ``schemavsn`` (2.0 on), else the writer schema's version attribute (1.x)."""
    schemavsn = record.get("schemavsn")
    if schemavsn is not None:
        return str(schemavsn)
    if writer_version is not None:
        return writer_version
    raise DecodeError(
        DecodeStage.MODEL,
        "missing required field alert.schemavsn: the writer schema has neither it nor a "
        'top-level "version" attribute, so the packet\'s schema version is unknown',
    )


def ztf_alert_from_record(
    record: dict[str, Any], original: bytes, writer_version: str | None = None
) -> model.Alert:
    """Map a decoded ZTF packet (projection of ``transforms.schemas.ZTF_PROJECTION``) to an Alert.

    Every ZTF schema version from 1.3 on maps, with the model's fields that the version has;
    the others are None (distpsnr1 before 1.5; drb before 3.3, so reliability is rb; fp_hists
    before 4.01). Before 1.8 the closest PS1 source's score and r mag are ``sgscore``/``srmag``
    (before 1.5 only for a source within 1 arcsec), later ``sgscore1``/``srmag1``.
    ``schema_version`` is the packet's ``schemavsn``, or for 1.x, which has none,
    ``writer_version``: the writer schema's top-level ``"version"`` attribute.
    Raises DecodeError(MODEL) for a missing required field (objectId, absent in 1.1, is one),
    an unknown schema version, or an invalid fid/isdiffpos.
    """
    cand = _required(record, ("candidate",), "alert")
    candid = _required(cand, ("candid",), "candidate")
    drb = cand.get("drb")
    ssnamenr = cand.get("ssnamenr")
    solar_system = None
    if ssnamenr not in (None, "null", ""):
        distance = _ztf_value(cand.get("ssdistnr"))
        solar_system = model.SolarSystemObject(
            name=ssnamenr,
            distance_arcsec=None if distance is None or distance < 0 else distance,
            mag=_ztf_value(cand.get("ssmagnr")),
        )
    history = []
    for row in record.get("prv_candidates") or ():
        mjd = _required(row, ("jd",), "prv_candidate") - _JD_TO_MJD
        band = _ztf_band(row.get("fid"), "prv_candidate")
        if row.get("candid") is not None and row.get("magpsf") is not None:
            history.append(
                model.Detection(
                    kind=model.DetectionKind.DETECTION,
                    mjd=mjd,
                    band=band,
                    mag=row["magpsf"],
                    mag_err=row.get("sigmapsf"),
                    limiting_mag=row.get("diffmaglim"),
                    is_positive=_ztf_positive(row.get("isdiffpos"), "prv_candidate"),
                    source_id=row["candid"],
                    ra=row.get("ra"),
                    dec=row.get("dec"),
                )
            )
        else:
            history.append(
                model.Detection(
                    kind=model.DetectionKind.UPPER_LIMIT,
                    mjd=mjd,
                    band=band,
                    limiting_mag=row.get("diffmaglim"),
                )
            )
    forced = []
    for row in record.get("fp_hists") or ():
        flux = row.get("forcediffimflux")
        flux = None if flux is None or flux == _ZTF_MISSING_FLUX else flux
        flux_err = row.get("forcediffimfluxunc")
        flux_err = None if flux_err is None or flux_err == _ZTF_MISSING_FLUX else flux_err
        zero_point = row.get("magzpsci")
        mag = None
        if flux is not None and flux > 0 and zero_point is not None:
            mag = zero_point - 2.5 * math.log10(flux)
        forced.append(
            model.Detection(
                kind=model.DetectionKind.FORCED,
                mjd=_required(row, ("jd",), "fp_hist") - _JD_TO_MJD,
                band=_ztf_band(row.get("fid"), "fp_hist"),
                mag=mag,
                mag_err=None if mag is None else model.flux_err_to_mag_err(flux, flux_err),
                flux=flux,
                flux_err=flux_err,
                limiting_mag=row.get("diffmaglim"),
                is_positive=None if flux is None else flux > 0,
            )
        )
    science, template, difference = (
        _ztf_stamp(record.get("cutoutScience")),
        _ztf_stamp(record.get("cutoutTemplate")),
        _ztf_stamp(record.get("cutoutDifference")),
    )
    return model.Alert(
        survey=model.Survey.ZTF,
        alert_id=candid,
        source_id=candid,
        object_id=_required(record, ("objectId",), "alert"),
        ra=_required(cand, ("ra",), "candidate"),
        dec=_required(cand, ("dec",), "candidate"),
        mjd=_required(cand, ("jd",), "candidate") - _JD_TO_MJD,
        band=_ztf_band(cand.get("fid"), "candidate"),
        mag=_required(cand, ("magpsf",), "candidate"),
        mag_err=cand.get("sigmapsf"),
        flux=None,
        flux_err=None,
        reliability=drb if drb is not None else cand.get("rb"),
        is_positive=_ztf_positive(cand.get("isdiffpos"), "candidate"),
        solar_system=solar_system,
        nearest_star=model.NearestStar(
            star_galaxy_score=_ztf_value(_first(cand, "sgscore1", "sgscore")),
            distance_arcsec=_ztf_value(cand.get("distpsnr1")),
            r_mag=_ztf_value(_first(cand, "srmag1", "srmag")),
        ),
        history=tuple(history),
        forced_photometry=tuple(forced),
        schema_version=_ztf_schema_version(record, writer_version),
        cutouts=None
        if science is None and template is None and difference is None
        else model.Cutouts(science=science, template=template, difference=difference),
        original=original,
    )


def _lsst_row(row: dict[str, Any], kind: model.DetectionKind, where: str) -> model.Detection:
    flux = _first(row, "psfFlux", "psFlux")
    flux_err = _first(row, "psfFluxErr", "psFluxErr")
    mag = model.flux_to_mag(flux)
    source_id = row.get("diaSourceId") if kind is model.DetectionKind.DETECTION else None
    return model.Detection(
        kind=kind,
        mjd=_required(row, ("midpointMjdTai", "midPointTai"), where),
        band=_first(row, "band", "filterName"),
        mag=mag,
        mag_err=model.flux_err_to_mag_err(flux, flux_err),
        flux=flux,
        flux_err=flux_err,
        is_positive=None if flux is None else flux > 0,
        source_id=source_id if source_id is not None else row.get("diaForcedSourceId"),
        ra=row.get("ra"),
        dec=_first(row, "dec", "decl"),
    )


def lsst_alert_from_record(record: dict[str, Any], version: str, original: bytes) -> model.Alert:
    """Map a decoded Rubin packet (``LSST_PROJECTION``) of schema ``version`` to an Alert.

    Handles the field renames between v3.0 and v11.1 (psFlux/psfFlux, filterName/band,
    midPointTai/midpointMjdTai, decl/dec, alertId/diaSourceId). Raises DecodeError(MODEL).
    """
    src = _required(record, ("diaSource",), "alert")
    source_id = _required(src, ("diaSourceId",), "diaSource")
    flux = _first(src, "psfFlux", "psFlux")
    flux_err = _first(src, "psfFluxErr", "psFluxErr")
    dia_object_id = src.get("diaObjectId")
    ss_record = record.get("ssSource") or record.get("ssObject")
    ss_object_id = src.get("ssObjectId") or (ss_record or {}).get("ssObjectId") or None
    solar_system = None
    if ss_object_id is not None or ss_record is not None:
        solar_system = model.SolarSystemObject(
            name=(ss_record or {}).get("designation"), ss_object_id=ss_object_id
        )
    history = [
        _lsst_row(r, model.DetectionKind.DETECTION, "prvDiaSources")
        for r in record.get("prvDiaSources") or ()
    ]
    for row in record.get("prvDiaNondetectionLimits") or ():
        history.append(
            model.Detection(
                kind=model.DetectionKind.UPPER_LIMIT,
                mjd=_required(row, ("midpointMjdTai", "midPointTai"), "prvDiaNondetectionLimits"),
                band=_first(row, "band", "filterName"),
                flux_err=row.get("diaNoise"),
            )
        )
    cutouts = (
        record.get("cutoutScience"),
        record.get("cutoutTemplate"),
        record.get("cutoutDifference"),
    )
    return model.Alert(
        survey=model.Survey.LSST,
        alert_id=_first(record, "alertId", "diaSourceId") or source_id,
        source_id=source_id,
        object_id=str(dia_object_id) if dia_object_id else None,
        ra=_required(src, ("ra",), "diaSource"),
        dec=_required(src, ("dec", "decl"), "diaSource"),
        mjd=_required(src, ("midpointMjdTai", "midPointTai"), "diaSource"),
        band=_first(src, "band", "filterName"),
        mag=model.flux_to_mag(flux),
        mag_err=model.flux_err_to_mag_err(flux, flux_err),
        flux=flux,
        flux_err=flux_err,
        reliability=src.get("reliability"),
        is_positive=None if flux is None else flux > 0,
        solar_system=solar_system,
        nearest_star=None,
        history=tuple(history),
        forced_photometry=tuple(
            _lsst_row(r, model.DetectionKind.FORCED, "prvDiaForcedSources")
            for r in record.get("prvDiaForcedSources") or ()
        ),
        schema_version=version,
        cutouts=None if cutouts == (None, None, None) else model.Cutouts(*cutouts),
        original=original,
    )
