"""The field catalogue: every name a filter may use, its type, and where its value comes from.

Alert fields are read from the immutable alert model (``transforms.alert_model.Alert``), plus a
few history-derived fields that users of Lasair and Fink filter on all the time (number of
previous detections, age since the first detection, rise rate since the previous detection in
the same band). Annotation fields are declared here as data (name, type, annotator) so filters
can be validated before the annotators exist; their values are supplied at evaluation time as
columns (``name -> numpy array``).

This module also type-checks an expression against the catalogue (:func:`check_expression`),
reporting unknown fields with the closest known names, type mismatches, and fields whose
annotator is missing from ``spec.annotations``, each with its offset in the expression.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from transforms.alert_model import Alert, DetectionKind
from transforms.filters.expr import (
    Between,
    Binary,
    Call,
    Expr,
    Field,
    In,
    IsNull,
    ListExpr,
    Literal,
    Logical,
    Unary,
)


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


def _history(name: str) -> Callable[[Alert], Any]:
    value = HISTORY_VALUES[name]
    return lambda a: value(history_summary(a), a)


def _sso(attr: str) -> Callable[[Alert], Any]:
    return lambda a: None if a.solar_system is None else getattr(a.solar_system, attr)


def _star(attr: str) -> Callable[[Alert], Any]:
    return lambda a: None if a.nearest_star is None else getattr(a.nearest_star, attr)


_N, _S, _B = FieldType.NUMBER, FieldType.STRING, FieldType.BOOL

ALERT_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("survey", _S, "'ztf' or 'lsst'", getter=lambda a: str(a.survey), dtype="U"),
    FieldSpec(
        "alert_id",
        _N,
        "unique alert id (ZTF candid, LSST alertId)",
        getter=lambda a: a.alert_id,
        dtype="i8",
    ),
    FieldSpec("source_id", _N, "triggering detection id", getter=lambda a: a.source_id, dtype="i8"),
    FieldSpec(
        "object_id",
        _S,
        "object id (ZTF objectId, LSST diaObjectId)",
        getter=lambda a: a.object_id,
        dtype="U",
    ),
    FieldSpec(
        "schema_version",
        _S,
        "schema version of the packet",
        getter=lambda a: a.schema_version,
        dtype="U",
    ),
    FieldSpec("ra", _N, "right ascension, degrees (ICRS)", getter=lambda a: a.ra),
    FieldSpec("dec", _N, "declination, degrees (ICRS)", getter=lambda a: a.dec),
    FieldSpec("mjd", _N, "time of the detection, MJD", getter=lambda a: a.mjd),
    FieldSpec("band", _S, "one-letter band: g, r, i, ...", getter=lambda a: a.band, dtype="U"),
    FieldSpec("mag", _N, "difference magnitude (AB)", getter=lambda a: a.mag),
    FieldSpec("mag_err", _N, "magnitude error", getter=lambda a: a.mag_err),
    FieldSpec("flux", _N, "LSST psfFlux, nJy (null for ZTF)", getter=lambda a: a.flux),
    FieldSpec("flux_err", _N, "LSST psfFluxErr, nJy", getter=lambda a: a.flux_err),
    FieldSpec(
        "reliability",
        _N,
        "real/bogus score (ZTF drb or rb, LSST reliability)",
        getter=lambda a: a.reliability,
    ),
    FieldSpec(
        "is_positive",
        _B,
        "positive difference (brightening vs template)",
        getter=lambda a: a.is_positive,
        dtype="b",
    ),
    FieldSpec(
        "solar_system.name",
        _S,
        "known solar-system object name (ZTF ssnamenr)",
        getter=_sso("name"),
        dtype="U",
    ),
    FieldSpec(
        "solar_system.ss_object_id", _N, "LSST ssObjectId", getter=_sso("ss_object_id"), dtype="i8"
    ),
    FieldSpec(
        "solar_system.distance_arcsec",
        _N,
        "distance to the known solar-system object",
        getter=_sso("distance_arcsec"),
    ),
    FieldSpec(
        "solar_system.mag", _N, "V magnitude of the known solar-system object", getter=_sso("mag")
    ),
    FieldSpec(
        "nearest_star.star_galaxy_score",
        _N,
        "PS1 star/galaxy score of the nearest source (1 = star)",
        getter=_star("star_galaxy_score"),
    ),
    FieldSpec(
        "nearest_star.distance_arcsec",
        _N,
        "distance to the nearest PS1 source",
        getter=_star("distance_arcsec"),
    ),
    FieldSpec(
        "nearest_star.r_mag", _N, "r magnitude of the nearest PS1 source", getter=_star("r_mag")
    ),
    FieldSpec(
        "history.n_detections",
        _N,
        "earlier detections in the history",
        getter=_history("history.n_detections"),
    ),
    FieldSpec(
        "history.first_mjd",
        _N,
        "MJD of the first detection (this one included)",
        getter=_history("history.first_mjd"),
    ),
    FieldSpec(
        "history.age_days",
        _N,
        "days since the first detection",
        getter=_history("history.age_days"),
    ),
    FieldSpec(
        "history.last_nondetection_mjd",
        _N,
        "MJD of the latest earlier upper limit",
        getter=_history("history.last_nondetection_mjd"),
    ),
    FieldSpec(
        "history.previous_mag",
        _N,
        "mag of the latest earlier same-band detection",
        getter=_history("history.previous_mag"),
    ),
    FieldSpec(
        "history.rise_rate",
        _N,
        "mag/day brightening since the latest earlier same-band detection",
        getter=_history("history.rise_rate"),
    ),
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


def _annotation_fields() -> tuple[FieldSpec, ...]:
    specs = [
        FieldSpec(
            "sky.healpix",
            _N,
            "HEALPix pixel (nested) of the sky annotator's nside",
            "sky",
            dtype="i8",
        ),
        FieldSpec(
            "sky.healpix_order",
            _N,
            "HEALPix order of sky.healpix (nside = 2**order)",
            "sky",
            dtype="i8",
        ),
        FieldSpec("sky.gal_l", _N, "galactic longitude, degrees", "sky"),
        FieldSpec("sky.gal_b", _N, "galactic latitude, degrees", "sky"),
        FieldSpec("sky.ecl_lon", _N, "ecliptic longitude, degrees", "sky"),
        FieldSpec("sky.ecl_lat", _N, "ecliptic latitude, degrees", "sky"),
        FieldSpec("dust.ebv", _N, "Galactic E(B-V) at the position", "dust"),
        FieldSpec("lightcurve.n_det", _N, "detections in the light curve", "lightcurve"),
        FieldSpec(
            "lightcurve.days_since_first", _N, "days since the first detection", "lightcurve"
        ),
        FieldSpec(
            "lightcurve.color", _N, "latest colour (bands in lightcurve.color_bands)", "lightcurve"
        ),
        FieldSpec(
            "lightcurve.color_bands", _S, "bands of the colour, e.g. 'g-r'", "lightcurve", dtype="U"
        ),
        FieldSpec("lightcurve.color_mjd", _N, "MJD of the colour measurement", "lightcurve"),
    ]
    for band in LIGHTCURVE_BANDS:
        for suffix, description in _LIGHTCURVE_BAND_FIELDS:
            specs.append(
                FieldSpec(
                    f"lightcurve.{band}.{suffix}", _N, f"{band}-band {description}", "lightcurve"
                )
            )
    for catalog in CROSSMATCH_CATALOGS:
        for suffix, ftype, description in _CROSSMATCH_FIELDS:
            dtype = {_S: "U", _B: "b"}.get(ftype, "f8")
            specs.append(
                FieldSpec(
                    f"crossmatch.{catalog}.{suffix}", ftype, description, "crossmatch", dtype=dtype
                )
            )
    return tuple(specs)


ANNOTATION_FIELDS: tuple[FieldSpec, ...] = _annotation_fields()
#: ``tags.<name>``: any boolean tag set by the tags annotator.
TAG_PATTERN = re.compile(r"tags\.[a-z_][a-z0-9_]*")

CATALOGUE: Mapping[str, FieldSpec] = {spec.name: spec for spec in ALERT_FIELDS + ANNOTATION_FIELDS}


def lookup(name: str) -> FieldSpec | None:
    """The field called ``name``, or None. Tag fields are made on demand."""
    spec = CATALOGUE.get(name)
    if spec is None and TAG_PATTERN.fullmatch(name):
        spec = FieldSpec(name, _B, "boolean tag", "tags", dtype="b")
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


# --- type checking --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExprIssue:
    """A problem found in an expression, at character ``offset``."""

    offset: int
    message: str


@dataclass
class _Checker:
    annotators: frozenset[str] | None
    issues: list[ExprIssue] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)

    def fail(self, node: Expr, message: str) -> None:
        self.issues.append(ExprIssue(node.pos, message))

    def check(self, node: Expr) -> FieldType | None:
        """Type of ``node``; None when unknown because of an error already reported."""
        match node:
            case Literal(value=None):
                self.fail(
                    node,
                    "null is not a value here; test a missing value with 'is null' or "
                    "'is not null'",
                )
                return None
            case Literal(value=bool()):
                return _B
            case Literal(value=str()):
                return _S
            case Literal():
                return _N
            case Field(path=path):
                return self.field(node, path)
            case ListExpr():
                self.fail(node, "a list is only allowed after 'in' or as healpix_in's pixels")
                return None
            case Unary(op="not", operand=operand):
                self.expect(operand, _B, "'not'")
                return _B
            case Unary(operand=operand):
                self.expect(operand, _N, "unary '-'")
                return _N
            case Logical(op=op, items=items):
                for item in items:
                    self.expect(item, _B, f"'{op}'")
                return _B
            case Binary(op=op, left=left, right=right):
                return self.binary(node, op, left, right)
            case In(operand=operand, items=items):
                return self.in_list(operand, items)
            case Between(operand=operand, low=low, high=high):
                for part in (operand, low, high):
                    self.expect(part, _N, "'between'")
                return _B
            case IsNull(operand=operand):
                self.check(operand)
                return _B
            case Call():
                return self.call(node)
        raise AssertionError(f"unhandled node {node!r}")

    def field(self, node: Expr, path: str) -> FieldType | None:
        spec = lookup(path)
        if spec is None:
            close = closest_fields(path)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            self.fail(node, f"unknown field {path!r}{hint}")
            return None
        if (
            spec.annotator is not None
            and self.annotators is not None
            and spec.annotator not in self.annotators
        ):
            self.fail(
                node,
                f"field {path!r} needs the {spec.annotator!r} annotator; "
                f"add {spec.annotator!r} to spec.annotations",
            )
        self.fields.add(path)
        return spec.type

    def expect(self, node: Expr, wanted: FieldType, context: str) -> None:
        got = self.check(node)
        if got is not None and got is not wanted:
            self.fail(node, f"{context} needs a {wanted}, got a {got}")

    def binary(self, node: Expr, op: str, left: Expr, right: Expr) -> FieldType | None:
        if op in ("+", "-", "*", "/", "%"):
            self.expect(left, _N, f"'{op}'")
            self.expect(right, _N, f"'{op}'")
            return _N
        for side in (left, right):
            if isinstance(side, Literal) and side.value is None:
                verb = "is not null" if op == "!=" else "is null"
                self.fail(side, f"comparison with null is never true; write '{verb}'")
                return _B
        lt, rt = self.check(left), self.check(right)
        if lt is None or rt is None:
            return _B
        if lt is not rt:
            self.fail(node, f"cannot compare a {lt} with a {rt} using '{op}'")
        elif lt is _B and op not in ("==", "!="):
            self.fail(node, f"booleans can only be compared with '==' or '!=', not '{op}'")
        return _B

    def in_list(self, operand: Expr, items: ListExpr) -> FieldType:
        ot = self.check(operand)
        if ot is _B:
            self.fail(operand, "'in' needs a number or a string on the left, got a bool")
        if not items.items:
            self.fail(items, "'in' needs a non-empty list")
        for item in items.items:
            if not isinstance(item, Literal) or item.value is None or isinstance(item.value, bool):
                self.fail(item, "'in' lists hold number or string constants only")
                continue
            it = _S if isinstance(item.value, str) else _N
            if ot is not None and ot is not _B and it is not ot:
                self.fail(item, f"list item is a {it} but the value tested is a {ot}")
        return _B

    def call(self, node: Call) -> FieldType | None:
        name, args = node.name, node.args
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(name, list(FUNCTIONS), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(c + '()' for c in close)}?" if close else ""
            names = ", ".join(FUNCTIONS)
            self.fail(node, f"unknown function {name!r}{hint} (known: {names})")
            return None
        signature = FUNCTIONS[name].signature
        if name == "cone":
            if len(args) != 3:
                self.fail(node, f"wrong number of arguments: {signature}")
                return _B
            for arg in args:
                self.expect(arg, _N, "cone()")
            radius = args[2]
            if (
                isinstance(radius, Literal)
                and isinstance(radius.value, int | float)
                and not radius.value >= 0
            ):
                self.fail(radius, "cone() radius must be >= 0 arcsec")
            return _B
        if name == "healpix_in":
            self.healpix(node, args, signature)
            return _B
        if name in ("abs", "log10", "sqrt"):
            if len(args) != 1:
                self.fail(node, f"wrong number of arguments: {signature}")
            for arg in args:
                self.expect(arg, _N, f"{name}()")
            return _N
        if name in ("min", "max"):
            if len(args) < 2:
                self.fail(node, f"wrong number of arguments: {signature}")
            for arg in args:
                self.expect(arg, _N, f"{name}()")
            return _N
        # coalesce
        if len(args) < 2:
            self.fail(node, f"wrong number of arguments: {signature}")
        types = [self.check(arg) for arg in args]
        known = [t for t in types if t is not None]
        if known and any(t is not known[0] for t in known):
            self.fail(node, "coalesce() arguments must all have the same type")
        return known[0] if known else None

    def healpix(self, node: Call, args: tuple[Expr, ...], signature: str) -> None:
        if len(args) != 2:
            self.fail(node, f"wrong number of arguments: {signature}")
            return
        nside_arg, pixels = args
        nside = nside_arg.value if isinstance(nside_arg, Literal) else None
        if not (
            isinstance(nside, int)
            and not isinstance(nside, bool)
            and 0 < nside <= MAX_NSIDE
            and nside & (nside - 1) == 0
        ):
            self.fail(nside_arg, f"healpix_in() nside must be a power of 2 from 1 to {MAX_NSIDE}")
            nside = None
        if not isinstance(pixels, ListExpr) or not pixels.items:
            self.fail(pixels, "healpix_in() needs a non-empty list of pixel numbers")
            return
        for item in pixels.items:
            value = item.value if isinstance(item, Literal) else None
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                self.fail(item, "healpix_in() pixels must be non-negative integers")
            elif nside is not None and value >= 12 * nside * nside:
                self.fail(
                    item,
                    f"pixel {value} does not exist at nside {nside} (max {12 * nside * nside - 1})",
                )


@dataclass(frozen=True, slots=True)
class CheckResult:
    type: FieldType | None
    issues: tuple[ExprIssue, ...]
    fields: frozenset[str]


def check_expression(expr: Expr, annotators: Iterable[str] | None = None) -> CheckResult:
    """Type-check ``expr``; ``annotators`` is spec.annotations (None: any annotator allowed)."""
    checker = _Checker(None if annotators is None else frozenset(annotators))
    result_type = checker.check(expr)
    if result_type is not None and result_type is not _B and not checker.issues:
        checker.fail(expr, f"a filter's 'where' must be a condition (bool), got a {result_type}")
    return CheckResult(result_type, tuple(checker.issues), frozenset(checker.fields))
