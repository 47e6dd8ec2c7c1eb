"""Explainable, rule-based tags: each fired tag carries the rule and the values that fired it.

The rules are a table (:data:`RULES`) of plain functions ``(alert, annotations, config) ->
reason or None``, evaluated in order over the other annotators' results, which must already be
on the record (``AnnotateAlerts`` runs tags last). A rule whose inputs are missing (the
annotator did not run, the survey does not publish the field) does not fire. Thresholds are
configuration (:class:`TagsConfig`); a filter asks ``'sn_candidate' in tags``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from transforms.alert_model import Alert
from transforms.annotation_model import Annotations, CatalogMatch, Tag, Tags

STAGE = "annotate.tags"


@dataclass(frozen=True, slots=True)
class TagsConfig:
    """Thresholds of the rules; distances in arcsec, rates in mag/day.

    * ``solar_system``: a known solar-system object associated, within ``ss_max_distance``
      when the survey gives the distance (ZTF ssdistnr; LSST associations carry none).
    * ``bogus_likely``: reliability below ``min_reliability``, or a negative difference within
      ``bright_star_radius`` of a star of magnitude <= ``bright_star_mag`` (ZTF's nearest PS1
      star, or any ``star_catalogs`` match).
    * ``variable_star``: a ``variable_catalogs`` match, a ``star_catalogs`` match within
      ``star_match_radius``, or ZTF sgscore1 >= ``star_sgscore`` with distpsnr1 <=
      ``star_max_distance``.
    * ``nuclear``: within ``nuclear_radius`` of a ``galaxy_catalogs`` centre.
    * ``sn_candidate``: a ``galaxy_catalogs`` match, rising (a band whose Theil-Sen rise rate is
      above ``sn_min_rise_rate`` and whose last point is within ``rising_tolerance_mag`` of its
      peak, over at least ``min_rise_span_days`` from its first point to its peak), not
      ``variable_star``, not ``solar_system``.
    * ``fast_riser``: a band rising faster than ``fast_rise_rate``.
    """

    ss_max_distance: float = 5.0
    min_reliability: float = 0.3
    bright_star_radius: float = 20.0
    bright_star_mag: float = 15.0
    star_match_radius: float = 1.5
    star_sgscore: float = 0.5
    star_max_distance: float = 1.0
    nuclear_radius: float = 2.0
    sn_min_rise_rate: float = 0.0
    rising_tolerance_mag: float = 0.2
    fast_rise_rate: float = 0.5
    min_rise_span_days: float = 0.5
    galaxy_catalogs: tuple[str, ...] = ("ngc",)
    star_catalogs: tuple[str, ...] = ("gaia",)
    variable_catalogs: tuple[str, ...] = ("gcvs",)


Rule = Callable[[Alert, Annotations, TagsConfig], str | None]


def _matches(annotations: Annotations, names: Sequence[str]) -> list[CatalogMatch]:
    cm = annotations.crossmatch
    if cm is None:
        return []
    return [m for name, m in cm.matches if name in names and m is not None]


def _describe(match: CatalogMatch) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in match.columns if v is not None)
    return (
        f"{match.catalog} {match.id}"
        + (f" ({extra})" if extra else "")
        + (f" at {match.sep_arcsec:.2f} arcsec")
    )


def solar_system(alert: Alert, annotations: Annotations, config: TagsConfig) -> str | None:
    sso = alert.solar_system
    if sso is None or (sso.name is None and sso.ss_object_id is None):
        return None
    label = sso.name if sso.name is not None else f"ssObjectId {sso.ss_object_id}"
    if sso.distance_arcsec is None:
        return f"associated with solar-system object {label}"
    if sso.distance_arcsec <= config.ss_max_distance:
        return (
            f"solar-system object {label} at {sso.distance_arcsec:.2f} arcsec "
            f"<= {config.ss_max_distance}"
        )
    return None


def bogus_likely(alert: Alert, annotations: Annotations, config: TagsConfig) -> str | None:
    if alert.reliability is not None and alert.reliability < config.min_reliability:
        return f"reliability {alert.reliability:.3f} < {config.min_reliability}"
    if alert.is_positive is not False:
        return None
    star = alert.nearest_star
    if (
        star is not None
        and star.distance_arcsec is not None
        and star.r_mag is not None
        and star.distance_arcsec <= config.bright_star_radius
        and star.r_mag <= config.bright_star_mag
    ):
        return (
            f"negative difference {star.distance_arcsec:.2f} arcsec from a r={star.r_mag:.2f} "
            f"star (<= {config.bright_star_radius} arcsec, <= {config.bright_star_mag} mag)"
        )
    for match in _matches(annotations, config.star_catalogs):
        if match.sep_arcsec <= config.bright_star_radius:
            return f"negative difference near bright star {_describe(match)}"
    return None


def variable_star(alert: Alert, annotations: Annotations, config: TagsConfig) -> str | None:
    for match in _matches(annotations, config.variable_catalogs):
        return f"variable-star match {_describe(match)}"
    for match in _matches(annotations, config.star_catalogs):
        if match.sep_arcsec <= config.star_match_radius:
            return f"star match {_describe(match)} <= {config.star_match_radius}"
    star = alert.nearest_star
    if (
        star is not None
        and star.star_galaxy_score is not None
        and star.distance_arcsec is not None
        and star.star_galaxy_score >= config.star_sgscore
        and star.distance_arcsec <= config.star_max_distance
    ):
        return (
            f"sgscore1 {star.star_galaxy_score:.3f} >= {config.star_sgscore} and distpsnr1 "
            f"{star.distance_arcsec:.2f} <= {config.star_max_distance} arcsec"
        )
    return None


def nuclear(alert: Alert, annotations: Annotations, config: TagsConfig) -> str | None:
    for match in _matches(annotations, config.galaxy_catalogs):
        if match.sep_arcsec <= config.nuclear_radius:
            return f"galaxy centre {_describe(match)} <= {config.nuclear_radius}"
    return None


def _rising(annotations: Annotations, config: TagsConfig, threshold: float) -> str | None:
    lc = annotations.lightcurve
    if lc is None:
        return None
    for band in lc.bands:
        if (
            band.rise_rate is not None
            and band.rise_rate > threshold
            and band.last_mag - band.peak_mag <= config.rising_tolerance_mag
            and band.peak_mjd - band.first_mjd >= config.min_rise_span_days
        ):
            return f"{band.band} rising {band.rise_rate:.3f} mag/day > {threshold}"
    return None


def sn_candidate(alert: Alert, annotations: Annotations, config: TagsConfig) -> str | None:
    hosts = _matches(annotations, config.galaxy_catalogs)
    if not hosts:
        return None
    rising = _rising(annotations, config, config.sn_min_rise_rate)
    if rising is None:
        return None
    if variable_star(alert, annotations, config) or solar_system(alert, annotations, config):
        return None
    return f"host {_describe(hosts[0])}; {rising}; not stellar, not solar system"


def fast_riser(alert: Alert, annotations: Annotations, config: TagsConfig) -> str | None:
    return _rising(annotations, config, config.fast_rise_rate)


RULES: tuple[tuple[str, Rule], ...] = (
    ("solar_system", solar_system),
    ("bogus_likely", bogus_likely),
    ("variable_star", variable_star),
    ("nuclear", nuclear),
    ("sn_candidate", sn_candidate),
    ("fast_riser", fast_riser),
)
TAG_NAMES: tuple[str, ...] = tuple(name for name, _ in RULES)


def tag_alert(alert: Alert, annotations: Annotations, config: TagsConfig) -> Tags:
    """The tags whose rules fire for one alert and its other annotations."""
    fired = []
    for name, rule in RULES:
        reason = rule(alert, annotations, config)
        if reason is not None:
            fired.append(Tag(name, reason))
    return Tags(tuple(fired))


def annotate_tags(
    alerts: Sequence[Alert], annotations: Sequence[Annotations], config: TagsConfig
) -> list[Tags]:
    return [tag_alert(a, ann, config) for a, ann in zip(alerts, annotations, strict=True)]
