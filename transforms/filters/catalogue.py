"""The field catalogue: every name a filter may use, its type, and where its value comes from.

Alert fields are read from the immutable alert model (``transforms.alert_model.Alert``), plus a
few history-derived fields that users of Lasair and Fink filter on all the time (number of
previous detections, age since the first detection, rise rate since the previous detection in
the same band). Annotation fields are declared here as data (name, type, annotator) so filters
can be validated before the annotators exist; their values are supplied at evaluation time as
columns (``name -> numpy array``).

The functions a filter may call are listed here too (:data:`FUNCTIONS`);
``transforms.filters.check`` type-checks an expression against both.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from transforms.alert_model import Alert, DetectionKind


class FieldType(StrEnum):
    NUMBER = "number"
    STRING = "string"
    BOOL = "bool"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field: dotted name, type, description; ``annotator`` is None for alert fields."""

    name: str
    type: FieldType
    description: str
    annotator: str | None = None
    getter: Callable[[Alert], Any] | None = field(default=None, compare=False, repr=False)
    #: numpy dtype of the column for alert fields ("f8", "i8", "U", "b"); ids are exact int64.
    dtype: str = "f8"


# --- history-derived values -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistorySummary:
    """What filters read from an alert's history, gathered in one pass over it."""

    n_detections: int  # earlier detections (upper limits and forced photometry excluded)
    first_mjd: float  # first detection, this one included (never null)
    last_nondetection_mjd: float | None  # latest earlier upper limit
    previous_mjd: float | None  # latest earlier same-band detection with a finite magnitude
    previous_mag: float | None


def history_summary(alert: Alert) -> HistorySummary:
    """One pass over ``alert.history`` for every history-derived field."""
    mjd, band = alert.mjd, alert.band
    count = 0
    first = mjd
    last_ul: float | None = None
    prev_mjd: float | None = None
    prev_mag: float | None = None
    detection, upper = DetectionKind.DETECTION, DetectionKind.UPPER_LIMIT
    for row in alert.history:
        row_mjd = row.mjd
        if not row_mjd < mjd:
            continue
        if row.kind is detection:
            count += 1
            if row_mjd < first:
                first = row_mjd
            mag = row.mag
            if (
                row.band == band
                and mag is not None
                and math.isfinite(mag)
                and (prev_mjd is None or row_mjd > prev_mjd)
            ):
                prev_mjd, prev_mag = row_mjd, mag
        elif row.kind is upper and (last_ul is None or row_mjd > last_ul):
            last_ul = row_mjd
    return HistorySummary(count, first, last_ul, prev_mjd, prev_mag)


def rise_rate(summary: HistorySummary, alert: Alert) -> float | None:
    """Brightening in mag/day since the latest earlier same-band detection (positive = rising)."""
    if (
        summary.previous_mag is None
        or summary.previous_mjd is None
        or alert.mag is None
        or not math.isfinite(alert.mag)
    ):
        return None
    return (summary.previous_mag - alert.mag) / (alert.mjd - summary.previous_mjd)


#: History-derived fields: name -> value from (summary, alert).
HISTORY_VALUES: Mapping[str, Callable[[HistorySummary, Alert], Any]] = {
    "history.n_detections": lambda h, a: h.n_detections,
    "history.first_mjd": lambda h, a: h.first_mjd,
    "history.age_days": lambda h, a: a.mjd - h.first_mjd,
    "history.last_nondetection_mjd": lambda h, a: h.last_nondetection_mjd,
    "history.previous_mag": lambda h, a: h.previous_mag,
    "history.rise_rate": rise_rate,
}


def _read(name: str) -> Callable[[Alert], Any]:
    """How alert field ``name`` is read: a history-derived value, an attribute of the alert, or
    an attribute of one of its sub-records (None where the alert has no such sub-record)."""
    if name in HISTORY_VALUES:
        value = HISTORY_VALUES[name]
        return lambda a: value(history_summary(a), a)
    record, _, attr = name.rpartition(".")
    if not record:
        return lambda a: getattr(a, attr)
    return lambda a: None if (sub := getattr(a, record)) is None else getattr(sub, attr)


_N, _S, _B = FieldType.NUMBER, FieldType.STRING, FieldType.BOOL

#: Number fields whose column is exact int64 (ids and pixel numbers), not float64.
_INTEGER_FIELDS = frozenset(
    ("alert_id", "source_id", "solar_system.ss_object_id", "sky.healpix", "sky.healpix_order")
)


def _field(
    name: str,
    ftype: FieldType,
    description: str,
    annotator: str | None = None,
    getter: Callable[[Alert], Any] | None = None,
) -> FieldSpec:
    """A field, its column dtype by rule: "U" for strings, "b" for booleans, "i8" for the
    integer fields, "f8" for the other numbers."""
    if ftype is _S:
        dtype = "U"
    elif ftype is _B:
        dtype = "b"
    else:
        dtype = "i8" if name in _INTEGER_FIELDS else "f8"
    return FieldSpec(name, ftype, description, annotator, getter, dtype)


#: The alert fields (name, type, description); each is read by :func:`_read`.
_ALERT_FIELD_ROWS: tuple[tuple[str, FieldType, str], ...] = (
    ("alert_id", _N, "unique alert id (ZTF candid, LSST alertId)"),
    ("source_id", _N, "triggering detection id"),
    ("object_id", _S, "object id (ZTF objectId, LSST diaObjectId)"),
    ("schema_version", _S, "schema version of the packet"),
    ("ra", _N, "right ascension, degrees (ICRS)"),
    ("dec", _N, "declination, degrees (ICRS)"),
    ("mjd", _N, "time of the detection, MJD"),
    ("band", _S, "one-letter band: g, r, i, ..."),
    ("mag", _N, "difference magnitude (AB)"),
    ("mag_err", _N, "magnitude error"),
    ("flux", _N, "LSST psfFlux, nJy (null for ZTF)"),
    ("flux_err", _N, "LSST psfFluxErr, nJy"),
    ("reliability", _N, "real/bogus score (ZTF drb or rb, LSST reliability)"),
    ("is_positive", _B, "positive difference (brightening vs template)"),
    ("solar_system.name", _S, "known solar-system object name (ZTF ssnamenr)"),
    ("solar_system.ss_object_id", _N, "LSST ssObjectId"),
    ("solar_system.distance_arcsec", _N, "distance to the known solar-system object"),
    ("solar_system.mag", _N, "V magnitude of the known solar-system object"),
    (
        "nearest_star.star_galaxy_score",
        _N,
        "PS1 star/galaxy score of the nearest source (1 = star)",
    ),
    ("nearest_star.distance_arcsec", _N, "distance to the nearest PS1 source"),
    ("nearest_star.r_mag", _N, "r magnitude of the nearest PS1 source"),
    ("history.n_detections", _N, "earlier detections in the history"),
    ("history.first_mjd", _N, "MJD of the first detection (this one included)"),
    ("history.age_days", _N, "days since the first detection"),
    ("history.last_nondetection_mjd", _N, "MJD of the latest earlier upper limit"),
    ("history.previous_mag", _N, "mag of the latest earlier same-band detection"),
    ("history.rise_rate", _N, "mag/day brightening since the latest earlier same-band detection"),
)

ALERT_FIELDS: tuple[FieldSpec, ...] = (
    # The survey as a plain string, not the enum member.
    _field("survey", _S, "'ztf' or 'lsst'", getter=lambda a: str(a.survey)),
    *(_field(name, ftype, text, getter=_read(name)) for name, ftype, text in _ALERT_FIELD_ROWS),
)

#: Annotators a filter may ask for in ``spec.annotations``.
ANNOTATORS: tuple[str, ...] = ("sky", "crossmatch", "dust", "lightcurve", "tags")

#: Catalogues the crossmatch annotator matches against, and the fields each match carries.
# The default catalogues of transforms.annotate.crossmatch (user catalogues: not yet).
CROSSMATCH_CATALOGS: tuple[str, ...] = ("ngc", "gaia", "gcvs")
_CROSSMATCH_FIELDS: tuple[tuple[str, FieldType, str], ...] = (
    ("id", _S, "identifier of the nearest match"),
    ("sep_arcsec", _N, "separation to the nearest match, arcsec"),
    ("mag", _N, "catalogue magnitude of the match"),
    ("redshift", _N, "redshift of the match (when the catalogue has one)"),
    ("class", _S, "catalogue class of the match (when the catalogue has one)"),
    ("n_matches", _N, "matches within the search radius"),
    ("inside_galaxy", _B, "inside the catalogued galaxy's ellipse (catalogues with axes)"),
)


#: Per-band light-curve features (names as the lightcurve annotator publishes them).
LIGHTCURVE_BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z", "y")
_LIGHTCURVE_BAND_FIELDS: tuple[tuple[str, str], ...] = (
    ("n_det", "detections"),
    ("first_mjd", "first detection MJD"),
    ("last_mjd", "last detection MJD"),
    ("span_days", "first to last detection, days"),
    ("first_mag", "first magnitude"),
    ("last_mag", "last magnitude"),
    ("peak_mag", "brightest magnitude"),
    ("peak_mjd", "MJD of the brightest magnitude"),
    ("amplitude", "magnitude amplitude"),
    ("rise_rate", "rise rate, mag/day"),
    ("fade_rate", "fade rate, mag/day"),
)


#: The annotation fields of fixed names: (name, type, description, annotator).
_ANNOTATION_FIELD_ROWS: tuple[tuple[str, FieldType, str, str], ...] = (
    ("sky.healpix", _N, "HEALPix pixel (nested) of the sky annotator's nside", "sky"),
    ("sky.healpix_order", _N, "HEALPix order of sky.healpix (nside = 2**order)", "sky"),
    ("sky.gal_l", _N, "galactic longitude, degrees", "sky"),
    ("sky.gal_b", _N, "galactic latitude, degrees", "sky"),
    ("sky.ecl_lon", _N, "ecliptic longitude, degrees", "sky"),
    ("sky.ecl_lat", _N, "ecliptic latitude, degrees", "sky"),
    ("dust.ebv", _N, "Galactic E(B-V) at the position", "dust"),
    ("lightcurve.n_det", _N, "detections in the light curve", "lightcurve"),
    ("lightcurve.days_since_first", _N, "days since the first detection", "lightcurve"),
    ("lightcurve.color", _N, "latest colour (bands in lightcurve.color_bands)", "lightcurve"),
    ("lightcurve.color_bands", _S, "bands of the colour, e.g. 'g-r'", "lightcurve"),
    ("lightcurve.color_mjd", _N, "MJD of the colour measurement", "lightcurve"),
)


def _annotation_fields() -> tuple[FieldSpec, ...]:
    specs = [_field(*row) for row in _ANNOTATION_FIELD_ROWS]
    for band in LIGHTCURVE_BANDS:
        for suffix, text in _LIGHTCURVE_BAND_FIELDS:
            specs.append(
                _field(f"lightcurve.{band}.{suffix}", _N, f"{band}-band {text}", "lightcurve")
            )
    for catalog in CROSSMATCH_CATALOGS:
        for suffix, ftype, text in _CROSSMATCH_FIELDS:
            specs.append(_field(f"crossmatch.{catalog}.{suffix}", ftype, text, "crossmatch"))
    return tuple(specs)


ANNOTATION_FIELDS: tuple[FieldSpec, ...] = _annotation_fields()
#: ``tags.<name>``: any boolean tag set by the tags annotator.
TAG_PATTERN = re.compile(r"tags\.[a-z_][a-z0-9_]*")

CATALOGUE: Mapping[str, FieldSpec] = {spec.name: spec for spec in ALERT_FIELDS + ANNOTATION_FIELDS}


def lookup(name: str) -> FieldSpec | None:
    """The field called ``name``, or None. Tag fields are made on demand."""
    spec = CATALOGUE.get(name)
    if spec is None and TAG_PATTERN.fullmatch(name):
        spec = _field(name, _B, "boolean tag", "tags")
    return spec


def closest_fields(name: str, limit: int = 3) -> list[str]:
    """Known field names closest to ``name``, best first."""
    names = list(CATALOGUE)
    close = difflib.get_close_matches(name, names, n=limit, cutoff=0.6)
    if not close:
        # A right leaf under a wrong prefix ("magnitude" vs "mag", "sep" vs "sep_arcsec").
        leaf = name.rsplit(".", 1)[-1]
        close = [
            n
            for n in names
            if len(leaf) >= 3
            and (n.rsplit(".", 1)[-1].startswith(leaf) or leaf.startswith(n.rsplit(".", 1)[-1]))
        ][:limit]
    return close


# --- functions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    signature: str
    description: str


FUNCTIONS: Mapping[str, FunctionSpec] = {
    f.name: f
    for f in (
        FunctionSpec(
            "cone",
            "cone(ra_deg, dec_deg, radius_arcsec) -> bool",
            "alert within radius of the position",
        ),
        FunctionSpec(
            "healpix_in",
            "healpix_in(nside, [pixels]) -> bool",
            "alert's nested HEALPix pixel is listed",
        ),
        FunctionSpec("abs", "abs(x) -> number", "absolute value"),
        FunctionSpec("min", "min(x, y, ...) -> number", "smallest argument (null if any is null)"),
        FunctionSpec("max", "max(x, y, ...) -> number", "largest argument (null if any is null)"),
        FunctionSpec("log10", "log10(x) -> number", "base-10 logarithm (error if x <= 0)"),
        FunctionSpec("sqrt", "sqrt(x) -> number", "square root (error if x < 0)"),
        FunctionSpec(
            "coalesce", "coalesce(x, y, ...) -> same type", "first argument that is not null"
        ),
    )
}
MAX_NSIDE = 2**29
