"""The one typed annotations record an alert carries after ``AnnotateAlerts``.

Every annotator writes its own sub-record; a sub-record is ``None`` when its annotator did not
run (it was not enabled), and a field inside it is ``None`` when the value is not defined for
this alert (no match, too few points). The filter language addresses values by dotted path
(``sky.gal_b``, ``crossmatch.ngc.redshift``, ``lightcurve.g.rise_rate``, ``tags``):
:func:`field_paths` lists every valid path with its type so filters are validated before they
run, and :func:`get_path` reads one path from a record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from transforms.alert_model import Alert

#: Every band a survey publishes, in wavelength order (ZTF uses g, r, i).
BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z", "y")

CatalogValue = str | float | int | None


@dataclass(frozen=True, slots=True)
class Sky:
    """Where the alert is. Angles in degrees.

    ``healpix`` is the NESTED index at ``healpix_order`` (nside = 2**order); ``healpix_orders``
    keeps ``(order, nested index)`` for every configured order, the primary first.
    ``ecl_lat``/``ecl_lon`` are in the mean ecliptic and equinox of J2000 (astropy's
    ``BarycentricMeanEcliptic``).
    """

    gal_l: float
    gal_b: float
    ecl_lon: float
    ecl_lat: float
    healpix: int
    healpix_order: int
    healpix_orders: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class CatalogMatch:
    """The nearest source of one catalogue within its configured radius.

    ``columns`` are the catalogue's chosen columns as ``(name, value)`` pairs in configuration
    order. ``inside_galaxy`` is None when the catalogue has no axes (or this source has none),
    else whether the alert lies inside the source's ellipse (D25 major/minor axes, position angle
    east of north; a missing PA is treated as a circle of the major axis).
    """

    catalog: str
    id: str
    sep_arcsec: float
    columns: tuple[tuple[str, CatalogValue], ...] = ()
    inside_galaxy: bool | None = None

    def column(self, name: str) -> CatalogValue:
        for key, value in self.columns:
            if key == name:
                return value
        raise KeyError(f"catalogue {self.catalog!r} has no column {name!r}")


@dataclass(frozen=True, slots=True)
class CrossMatch:
    """One entry per configured catalogue, in configuration order; ``None`` means no match."""

    matches: tuple[tuple[str, CatalogMatch | None], ...]

    def get(self, catalog: str) -> CatalogMatch | None:
        for name, match in self.matches:
            if name == catalog:
                return match
        raise KeyError(f"no catalogue {catalog!r} was cross-matched")


@dataclass(frozen=True, slots=True)
class Dust:
    """Galactic reddening E(B-V) in magnitudes at the alert position, from map ``map_name``."""

    ebv: float
    map_name: str


@dataclass(frozen=True, slots=True)
class BandFeatures:
    """Light-curve features of one band from the alert's positive detections (its own included).

    Rates are mag/day from a Theil-Sen fit: ``rise_rate`` over the points up to the peak
    (positive = brightening), ``fade_rate`` over the points from the peak on (positive = fading);
    None with fewer than two distinct epochs on that side.
    """

    band: str
    n_det: int
    first_mjd: float
    last_mjd: float
    span_days: float
    first_mag: float
    last_mag: float
    peak_mag: float
    peak_mjd: float
    amplitude: float
    rise_rate: float | None
    fade_rate: float | None


@dataclass(frozen=True, slots=True)
class LightCurve:
    """Features over the alert's history; ``bands`` in wavelength order, only bands seen.

    ``days_since_first`` is the alert's MJD minus the first positive detection in any band (None
    with no usable detection).
    ``color`` is the latest colour ``color_bands`` (e.g. "g-r") from two detections at most the
    configured time apart, measured at ``color_mjd`` (the later of the two).
    """

    n_det: int
    days_since_first: float | None
    bands: tuple[BandFeatures, ...]
    color: float | None
    color_bands: str | None
    color_mjd: float | None

    def band(self, name: str) -> BandFeatures | None:
        for features in self.bands:
            if features.band == name:
                return features
        return None


@dataclass(frozen=True, slots=True)
class Tag:
    """A tag and the rule that fired it, in words a person can check against the alert."""

    name: str
    rule: str


@dataclass(frozen=True, slots=True)
class Tags:
    """The tags that fired, in the order of the rule table."""

    fired: tuple[Tag, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(tag.name for tag in self.fired)


@dataclass(frozen=True, slots=True)
class Annotations:
    """Everything the annotators added to one alert; a None sub-record did not run."""

    sky: Sky | None = None
    crossmatch: CrossMatch | None = None
    dust: Dust | None = None
    lightcurve: LightCurve | None = None
    tags: Tags | None = None


# --------------------------------------------------------------------------------------------
# Dotted paths
# --------------------------------------------------------------------------------------------

_SKY_FIELDS = {
    "gal_l": "float",
    "gal_b": "float",
    "ecl_lon": "float",
    "ecl_lat": "float",
    "healpix": "int",
    "healpix_order": "int",
}
_BAND_FIELDS = {
    "n_det": "int",
    "first_mjd": "float",
    "last_mjd": "float",
    "span_days": "float",
    "first_mag": "float",
    "last_mag": "float",
    "peak_mag": "float",
    "peak_mjd": "float",
    "amplitude": "float",
    "rise_rate": "float",
    "fade_rate": "float",
}
_LIGHTCURVE_FIELDS = {
    "n_det": "int",
    "days_since_first": "float",
    "color": "float",
    "color_bands": "str",
    "color_mjd": "float",
}


@dataclass(frozen=True, slots=True)
class CatalogFields:
    """What :func:`field_paths` needs to know of one configured catalogue."""

    name: str
    columns: tuple[tuple[str, str], ...]  # (column name, "str" | "float" | "int")
    has_axes: bool


def field_paths(catalogs: Iterable[CatalogFields] = ()) -> dict[str, str]:
    """Every dotted path a filter may use, mapped to its type name; all values are nullable.

    The cross-match paths depend on the configured catalogues (their names and chosen
    columns), so they are passed in; ``annotate.catalogs.catalog_fields`` gives them.
    """
    paths: dict[str, str] = {f"sky.{name}": kind for name, kind in _SKY_FIELDS.items()}
    for catalog in catalogs:
        prefix = f"crossmatch.{catalog.name}"
        paths[f"{prefix}.id"] = "str"
        paths[f"{prefix}.sep_arcsec"] = "float"
        for column, kind in catalog.columns:
            paths[f"{prefix}.{column}"] = kind
        if catalog.has_axes:
            paths[f"{prefix}.inside_galaxy"] = "bool"
    paths["dust.ebv"] = "float"
    for name, kind in _LIGHTCURVE_FIELDS.items():
        paths[f"lightcurve.{name}"] = kind
    for band in BANDS:
        for name, kind in _BAND_FIELDS.items():
            paths[f"lightcurve.{band}.{name}"] = kind
    paths["tags"] = "tuple[str]"
    return paths


def get_path(annotations: Annotations, path: str) -> Any:
    """The value at ``path`` (see :func:`field_paths`); None when its annotator did not run or
    the value is undefined. Raises KeyError for a path that cannot exist."""
    head, _, rest = path.partition(".")
    if head == "tags" and not rest:
        return None if annotations.tags is None else annotations.tags.names
    if head == "sky" and rest in _SKY_FIELDS:
        return None if annotations.sky is None else getattr(annotations.sky, rest)
    if head == "dust" and rest == "ebv":
        return None if annotations.dust is None else annotations.dust.ebv
    if head == "lightcurve":
        lc = annotations.lightcurve
        if rest in _LIGHTCURVE_FIELDS:
            return None if lc is None else getattr(lc, rest)
        band, _, name = rest.partition(".")
        if band in BANDS and name in _BAND_FIELDS:
            features = None if lc is None else lc.band(band)
            return None if features is None else getattr(features, name)
    if head == "crossmatch":
        catalog, _, name = rest.partition(".")
        if catalog and name:
            cm = annotations.crossmatch
            if cm is None:
                return None
            match = cm.get(catalog)
            if match is None:
                return None
            if name in ("id", "sep_arcsec", "inside_galaxy"):
                return getattr(match, name)
            return match.column(name)
    raise KeyError(f"unknown annotation path {path!r}")


@dataclass(frozen=True, slots=True)
class AnnotationFailure:
    """Why one annotator could not annotate one alert; the alert goes to the dead letters."""

    stage: str
    reason: str


def to_json_dict(annotations: Annotations) -> dict[str, Any]:
    """The record as JSON-ready data (for ``alertflow inspect --annotate`` and logs): catalogue
    matches and columns become objects keyed by name, tags a list of {name, rule}."""
    out: dict[str, Any] = {
        "sky": None if annotations.sky is None else asdict(annotations.sky),
        "crossmatch": None,
        "dust": None if annotations.dust is None else asdict(annotations.dust),
        "lightcurve": None,
        "tags": None if annotations.tags is None else [asdict(t) for t in annotations.tags.fired],
    }
    if annotations.crossmatch is not None:
        out["crossmatch"] = {
            name: None
            if match is None
            else {
                "id": match.id,
                "sep_arcsec": match.sep_arcsec,
                **dict(match.columns),
                "inside_galaxy": match.inside_galaxy,
            }
            for name, match in annotations.crossmatch.matches
        }
    lc = annotations.lightcurve
    if lc is not None:
        out["lightcurve"] = {
            "n_det": lc.n_det,
            "days_since_first": lc.days_since_first,
            "color": lc.color,
            "color_bands": lc.color_bands,
            "color_mjd": lc.color_mjd,
            **{band.band: asdict(band) for band in lc.bands},
        }
    return out


@dataclass(frozen=True, slots=True)
class AnnotatedAlert:
    """An alert and its annotations; the alert is unchanged."""

    alert: Alert
    annotations: Annotations
