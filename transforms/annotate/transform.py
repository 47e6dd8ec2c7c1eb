"""``AnnotateAlerts``: Alert -> AnnotatedAlert, computed in numpy batches, failures routed.

:func:`annotate_batch` is the pure function that does the work for a list of alerts (tested
without Beam); :class:`AnnotateAlerts` only wires it: ``BatchElements`` groups the alerts of a
bundle into lists (up to ``max_batch_size``), a thin DoFn annotates each list. Catalogues and the
dust map are loaded once per worker process in ``DoFn.setup`` and shared between DoFn instances.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar

import apache_beam as beam
import numpy as np
import numpy.typing as npt
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput

from transforms.alert_model import Alert
from transforms.annotate import catalogs as _catalogs
from transforms.annotate import crossmatch as _crossmatch
from transforms.annotate import dust as _dust
from transforms.annotate import lightcurve as _lightcurve
from transforms.annotate import sky as _sky
from transforms.annotate import tags as _tags
from transforms.annotation_model import AnnotatedAlert, AnnotationFailure, Annotations
from transforms.decode import DeadLetter
from transforms.filters.model import FilterSet
from transforms.filters.snapshot import Snapshot, SnapshotFeed, newest_version, select_snapshot

T = TypeVar("T")


class Annotator(StrEnum):
    """The annotators, in the order they run (tags reads the others' results)."""

    SKY = "sky"
    CROSSMATCH = "crossmatch"
    DUST = "dust"
    LIGHTCURVE = "lightcurve"
    TAGS = "tags"


#: Annotators whose results another annotator reads; enabling it enables these too.
DEPENDENCIES: dict[Annotator, tuple[Annotator, ...]] = {
    Annotator.TAGS: (Annotator.CROSSMATCH, Annotator.LIGHTCURVE),
}
ENV_ENABLED = "ALERTFLOW_ANNOTATE_ENABLED"


def with_dependencies(names: frozenset[Annotator]) -> frozenset[Annotator]:
    out = set(names)
    for name in names:
        out.update(DEPENDENCIES.get(name, ()))
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class AnnotateConfig:
    """Which annotators run and how. ``enabled`` is closed over :data:`DEPENDENCIES`."""

    enabled: frozenset[Annotator] = frozenset(Annotator)
    sky: _sky.SkyConfig = field(default_factory=_sky.SkyConfig)
    crossmatch: _catalogs.CrossMatchConfig = field(default_factory=_catalogs.CrossMatchConfig)
    dust: _dust.DustConfig = field(default_factory=_dust.DustConfig)
    lightcurve: _lightcurve.LightCurveConfig = field(default_factory=_lightcurve.LightCurveConfig)
    tags: _tags.TagsConfig = field(default_factory=_tags.TagsConfig)
    max_batch_size: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "enabled", with_dependencies(frozenset(self.enabled)))
        if self.max_batch_size < 1:
            raise ValueError("annotate.max_batch_size must be >= 1")

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> AnnotateConfig:
        """From YAML-shaped data; ``ALERTFLOW_ANNOTATE_ENABLED=sky,tags`` overrides ``enabled``.
        Unknown keys and unknown annotator names are errors at start-up."""
        env = os.environ if environ is None else environ
        known = {"enabled", "sky", "crossmatch", "dust", "lightcurve", "tags", "max_batch_size"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"annotate config: unknown keys {sorted(unknown)}; known {sorted(known)}"
            )
        enabled_names: Sequence[str] = data.get("enabled", [a.value for a in Annotator])
        if env.get(ENV_ENABLED):
            enabled_names = [n.strip() for n in env[ENV_ENABLED].split(",") if n.strip()]
        try:
            enabled = frozenset(Annotator(n) for n in enabled_names)
        except ValueError as err:
            raise ValueError(
                f"annotate.enabled: {err}; known {[a.value for a in Annotator]}"
            ) from err
        sky_cfg = data.get("sky", {})
        lc_cfg = dict(data.get("lightcurve", {}))
        if "color_pairs" in lc_cfg:
            lc_cfg["color_pairs"] = tuple(tuple(p) for p in lc_cfg["color_pairs"])
        tag_cfg: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.get("tags", {}).items()
        }
        return cls(
            enabled=enabled,
            sky=_sky.SkyConfig(orders=tuple(sky_cfg.get("orders", (10,)))),
            crossmatch=_catalogs.CrossMatchConfig.from_mapping(data.get("crossmatch", {})),
            dust=_dust.DustConfig(**data.get("dust", {})),
            lightcurve=_lightcurve.LightCurveConfig(**lc_cfg),
            tags=_tags.TagsConfig(**tag_cfg),
            max_batch_size=int(data.get("max_batch_size", 1000)),
        )


@dataclass(frozen=True, slots=True, eq=False)
class LoadedAnnotators:
    """Config plus what it needs from disk (catalogues, dust map), loaded once per process."""

    config: AnnotateConfig
    catalogs: tuple[_catalogs.Catalog, ...]
    dust_map: _dust.DustMap | None


def load_annotators(config: AnnotateConfig) -> LoadedAnnotators:
    """Read the files the enabled annotators need; raises at start-up if one is missing."""
    on = config.enabled
    return LoadedAnnotators(
        config=config,
        catalogs=_catalogs.load_catalogs(config.crossmatch) if Annotator.CROSSMATCH in on else (),
        dust_map=_dust.load_dust_map(config.dust) if Annotator.DUST in on else None,
    )


# Errors a numeric annotator can raise on data it did not expect; anything else is a bug and
# should fail the bundle loudly rather than be routed.
_DATA_ERRORS = (ValueError, TypeError, ArithmeticError, IndexError, KeyError)


def _guarded(
    stage: str, compute: Callable[[Sequence[Alert]], Sequence[T]], alerts: Sequence[Alert]
) -> list[T | AnnotationFailure]:
    """``compute`` over the batch; if it raises, again one alert at a time so only the alerts
    that fail become failures (and the rest keep their results)."""
    try:
        return list(compute(alerts))
    except _DATA_ERRORS:
        pass
    out: list[T | AnnotationFailure] = []
    for alert in alerts:
        try:
            out.extend(compute([alert]))
        except _DATA_ERRORS as err:
            out.append(AnnotationFailure(stage, f"{type(err).__name__}: {err}"))
    return out


def _positions(
    alerts: Sequence[Alert],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    ra = np.fromiter((a.ra for a in alerts), np.float64, len(alerts))
    dec = np.fromiter((a.dec for a in alerts), np.float64, len(alerts))
    return ra, dec


def running_annotators(loaded: LoadedAnnotators) -> tuple[Annotator, ...]:
    """The annotators :func:`annotate_batch` runs with ``loaded``, in order (dust only with its
    map loaded)."""
    on = loaded.config.enabled
    return tuple(
        a for a in Annotator if a in on and (a != Annotator.DUST or loaded.dust_map is not None)
    )


def annotate_batch(
    alerts: Sequence[Alert], loaded: LoadedAnnotators
) -> list[AnnotatedAlert | DeadLetter]:
    """Annotate a batch; each alert becomes an AnnotatedAlert or, if any enabled annotator
    fails on it, one DeadLetter naming the first stage that failed and why. Order is kept."""
    config = loaded.config
    on = config.enabled
    n = len(alerts)
    records: list[dict[str, Any]] = [{} for _ in range(n)]
    failures: list[AnnotationFailure | None] = [None] * n

    def collect(name: str, results: Sequence[Any]) -> None:
        for i, result in enumerate(results):
            if isinstance(result, AnnotationFailure):
                failures[i] = failures[i] or result
            else:
                records[i][name] = result

    if Annotator.SKY in on:
        collect(
            "sky",
            _guarded(_sky.STAGE, lambda b: _sky.annotate_sky(*_positions(b), config.sky), alerts),
        )
    if Annotator.CROSSMATCH in on:
        collect(
            "crossmatch",
            _guarded(
                _crossmatch.STAGE,
                lambda b: _crossmatch.annotate_crossmatch(loaded.catalogs, *_positions(b)),
                alerts,
            ),
        )
    if Annotator.DUST in on and loaded.dust_map is not None:
        dust_map = loaded.dust_map
        collect(
            "dust",
            _guarded(_dust.STAGE, lambda b: _dust.annotate_dust(dust_map, *_positions(b)), alerts),
        )
    if Annotator.LIGHTCURVE in on:
        collect(
            "lightcurve",
            _guarded(
                _lightcurve.STAGE,
                lambda b: _lightcurve.annotate_lightcurves(b, config.lightcurve),
                alerts,
            ),
        )
    partial = [Annotations(**record) for record in records]
    if Annotator.TAGS in on:
        by_alert = dict(zip(map(id, alerts), partial, strict=True))
        collect(
            "tags",
            _guarded(
                _tags.STAGE,
                lambda b: _tags.annotate_tags(b, [by_alert[id(a)] for a in b], config.tags),
                alerts,
            ),
        )
    out: list[AnnotatedAlert | DeadLetter] = []
    for alert, record, failure in zip(alerts, records, failures, strict=True):
        if failure is not None:
            out.append(DeadLetter(alert.original, failure.stage, failure.reason))
        else:
            out.append(AnnotatedAlert(alert, Annotations(**record)))
    return out


# --------------------------------------------------------------------------------------------
# Beam wiring
# --------------------------------------------------------------------------------------------

COUNTER_NAMESPACE = "AnnotateAlerts"
#: The dead-letter stages, one per annotator (``annotate.<annotator>``).
STAGES = (_sky.STAGE, _crossmatch.STAGE, _dust.STAGE, _lightcurve.STAGE, _tags.STAGE)
ANNOTATED_COUNTER = "alerts_annotated"


def dead_letters_counter(stage: str) -> str:
    """The counter of the alerts that failed in ``stage`` (one of :data:`STAGES`)."""
    return f"dead_letters_{stage}"


def alerts_in_counter(annotator: Annotator) -> str:
    """The counter of the alerts ``annotator`` ran on."""
    return f"alerts_in_{annotator.value}"


def needed_annotators(filter_set: FilterSet) -> frozenset[Annotator]:
    """The annotators the filters of ``filter_set`` name in ``spec.annotations``, closed over
    :data:`DEPENDENCIES`; unknown names are left to filter validation."""
    names = {a for f in filter_set.filters for a in f.annotations}
    return with_dependencies(frozenset(a for a in Annotator if a.value in names))


def for_filters(loaded: LoadedAnnotators, filter_set: FilterSet | None) -> LoadedAnnotators:
    """Of ``loaded``, the annotators that ``filter_set`` needs; none without a filter set."""
    needed = frozenset() if filter_set is None else needed_annotators(filter_set)
    return replace(loaded, config=replace(loaded.config, enabled=needed & loaded.config.enabled))


class _AnnotateBatchFn(beam.DoFn):
    def __init__(self, config: AnnotateConfig, feed: SnapshotFeed | None = None) -> None:
        self._config = config
        self._feed = feed
        self._loaded: LoadedAnnotators | None = None
        # (newest snapshot version, or None: no snapshot has one; the subset it needs)
        self._active: tuple[int | None, LoadedAnnotators] | None = None
        self._annotated = Metrics.counter(COUNTER_NAMESPACE, ANNOTATED_COUNTER)
        self._failed = {
            s: Metrics.counter(COUNTER_NAMESPACE, dead_letters_counter(s)) for s in STAGES
        }
        self._ran = {a: Metrics.counter(COUNTER_NAMESPACE, alerts_in_counter(a)) for a in Annotator}

    def setup(self) -> None:
        self._loaded = load_annotators(self._config)

    def process(
        self, batch: list[Alert], side: Sequence[Snapshot] | None = None
    ) -> Iterator[AnnotatedAlert | TaggedOutput]:
        assert self._loaded is not None, "setup() loads the annotators"
        snapshots = side if self._feed is None else self._feed.snapshots()
        loaded = self._loaded if snapshots is None else self._for_snapshots(snapshots)
        for annotator in running_annotators(loaded):
            self._ran[annotator].inc(len(batch))
        for result in annotate_batch(batch, loaded):
            if isinstance(result, DeadLetter):
                self._failed[result.stage].inc()
                yield TaggedOutput(AnnotateAlerts.DEAD_LETTERS, result)
            else:
                self._annotated.inc()
                yield result

    def _for_snapshots(self, snapshots: Sequence[Snapshot]) -> LoadedAnnotators:
        """The configured annotators that the newest valid filter set needs, cached by the
        newest version."""
        assert self._loaded is not None
        newest = newest_version(snapshots)
        if self._active is None or self._active[0] != newest:
            chosen, _ = select_snapshot(snapshots)
            self._active = (newest, for_filters(self._loaded, chosen))
        return self._active[1]


class AnnotateAlerts(beam.PTransform[PCollection[Alert], beam.pvalue.DoOutputsTuple]):
    """Alert -> AnnotatedAlert, with failures on the ``dead_letters`` output.

    Input: ``PCollection[Alert]``, bounded or not, any windowing (batches are formed within a
    bundle and a window; timestamps and windows pass through). Outputs (``DoOutputsTuple``):

    * ``annotated`` (main): ``PCollection[AnnotatedAlert]``: the alert unchanged plus an
      :class:`Annotations` whose sub-records for the enabled annotators are set.
    * ``dead_letters``: ``PCollection[DeadLetter]``, one per alert on which an enabled annotator
      failed (a position off the sky, data the computation rejects), with the alert's original
      bytes, the stage (``annotate.<annotator>``) and the reason.

    Every alert ends up in exactly one output. Counters in namespace ``AnnotateAlerts``:
    ``alerts_annotated``, ``dead_letters_<stage>`` and, per annotator, ``alerts_in_<annotator>``
    (the alerts it ran on). Without ``snapshots`` the enabled
    annotators are fixed at construction. With ``snapshots`` (the decoded filter-set snapshots,
    as ApplyFilters reads them: a list side input), each batch runs only the
    configured annotators that the newest valid filter set names in its filters'
    ``spec.annotations``: adding a filter that needs ``crossmatch`` turns cross-matching on.
    ``feed`` (a :class:`~transforms.filters.snapshot.SnapshotFeed`, e.g.
    ``transforms.filters.live.ConfigTopicFeed``) does the same without a side input.
    Delivery is the runner's (at least once on Flink with checkpoints).
    """

    DEAD_LETTERS = "dead_letters"
    ANNOTATED = "annotated"

    def __init__(
        self,
        config: AnnotateConfig | None = None,
        snapshots: PCollection[Snapshot] | None = None,
        label: str | None = None,
        feed: SnapshotFeed | None = None,
    ) -> None:
        super().__init__(label)
        self._config = config if config is not None else AnnotateConfig()
        self._snapshots = snapshots
        self._feed = feed

    def expand(self, alerts: PCollection[Alert]) -> beam.pvalue.DoOutputsTuple:
        side = [] if self._snapshots is None else [beam.pvalue.AsList(self._snapshots)]
        outputs: beam.pvalue.DoOutputsTuple = (
            alerts
            | "Batch"
            >> beam.BatchElements(min_batch_size=1, max_batch_size=self._config.max_batch_size)
            | "Annotate"
            >> beam.ParDo(_AnnotateBatchFn(self._config, self._feed), *side).with_outputs(
                self.DEAD_LETTERS, main=self.ANNOTATED
            )
        )
        return outputs


def only(config: AnnotateConfig, *names: Annotator) -> AnnotateConfig:
    """``config`` with just ``names`` (and their dependencies) enabled."""
    return replace(config, enabled=frozenset(names))
