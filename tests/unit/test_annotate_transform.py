"""AnnotateAlerts in a pipeline (complete expected outputs on both tags), the batch function's
failure routing, the config and the dotted paths."""

from __future__ import annotations

import json
from dataclasses import replace

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.datapaths import real_alerts
from transforms.alert_model import Detection, DetectionKind
from transforms.annotate import (
    AnnotateAlerts,
    AnnotateConfig,
    AnnotatedAlert,
    Annotations,
    Annotator,
    annotate_batch,
    field_paths,
    get_path,
    load_annotators,
)
from transforms.annotate.catalogs import catalog_fields
from transforms.annotate.transform import only
from transforms.annotation_model import to_json_dict
from transforms.decode import DeadLetter


def _sample():
    alerts = real_alerts()
    # 40 real alerts of both surveys and several schema versions. Cutouts and original bytes are
    # left out: annotation never reads them, and pickling 100 KB per element slows the runner.
    good = [replace(a, cutouts=None, original=str(a.alert_id).encode()) for a in alerts[::13]]
    off_sky = replace(good[0], ra=float("nan"), original=b"off-sky bytes")
    return good, off_sky


def test_annotate_alerts_routes_every_alert() -> None:
    good, off_sky = _sample()
    config = AnnotateConfig(max_batch_size=16)
    loaded = load_annotators(config)
    # Per element, so the expectation does not depend on how the pipeline batches.
    expected = [annotate_batch([a], loaded)[0] for a in good]
    assert all(isinstance(e, AnnotatedAlert) for e in expected)
    expected_dead = [annotate_batch([off_sky], loaded)[0]]
    assert expected_dead[0].stage == "annotate.sky"
    assert expected_dead[0].original == b"off-sky bytes"
    assert expected_dead[0].reason.startswith("position ra=nan dec=")

    pipeline = BeamTestPipeline()
    with pipeline as p:
        out = p | beam.Create([*good, off_sky]) | "Annotate" >> AnnotateAlerts(config)
        assert_that(out.annotated, equal_to(expected), label="annotated")
        assert_that(out.dead_letters, equal_to(expected_dead), label="dead")
    counters = {
        c.key.metric.name: c.committed
        for c in pipeline.result.metrics().query(MetricsFilter())["counters"]
    }
    assert counters["alerts_annotated"] == len(good)
    assert counters["dead_letters_annotate.sky"] == 1


def test_enabled_annotators_only() -> None:
    good, _ = _sample()
    loaded = load_annotators(only(AnnotateConfig(), Annotator.SKY, Annotator.DUST))
    (result,) = annotate_batch(good[:1], loaded)
    assert isinstance(result, AnnotatedAlert)
    ann = result.annotations
    assert ann.sky is not None and ann.dust is not None
    assert ann.crossmatch is None and ann.lightcurve is None and ann.tags is None
    assert only(AnnotateConfig(), Annotator.TAGS).enabled == {
        Annotator.TAGS,
        Annotator.CROSSMATCH,
        Annotator.LIGHTCURVE,
    }


def test_failure_in_one_annotator_routes_only_that_alert() -> None:
    good, _ = _sample()
    loaded = load_annotators(only(AnnotateConfig(), Annotator.LIGHTCURVE))
    # A history time that is not a number (the model never produces one): numpy raises on it.
    bad_mjd: float = "x"  # type: ignore[assignment]
    row = Detection(DetectionKind.DETECTION, bad_mjd, "g", mag=18.0, is_positive=True)
    broken = replace(good[0], history=(row,))
    results = annotate_batch([good[1], broken, good[2]], loaded)
    assert [type(r).__name__ for r in results] == ["AnnotatedAlert", "DeadLetter", "AnnotatedAlert"]
    dead = results[1]
    assert isinstance(dead, DeadLetter) and dead.stage == "annotate.lightcurve"
    assert dead.reason.startswith("TypeError")


def test_config_from_mapping_and_environment() -> None:
    cfg = AnnotateConfig.from_mapping(
        {
            "enabled": ["sky"],
            "sky": {"orders": [8, 12]},
            "tags": {"min_reliability": 0.5},
            "crossmatch": {"defaults": False, "catalogs": []},
        },
        environ={},
    )
    assert cfg.enabled == {Annotator.SKY}
    assert cfg.sky.orders == (8, 12)
    assert cfg.tags.min_reliability == 0.5
    assert cfg.crossmatch.catalogs == ()
    env = AnnotateConfig.from_mapping({}, environ={"ALERTFLOW_ANNOTATE_ENABLED": "dust,tags"})
    assert env.enabled == {
        Annotator.DUST,
        Annotator.TAGS,
        Annotator.CROSSMATCH,
        Annotator.LIGHTCURVE,
    }
    with pytest.raises(ValueError, match="unknown keys"):
        AnnotateConfig.from_mapping({"skyy": {}}, environ={})
    with pytest.raises(ValueError, match="known"):
        AnnotateConfig.from_mapping({"enabled": ["colour"]}, environ={})


def test_every_field_path_resolves() -> None:
    loaded = load_annotators(AnnotateConfig())
    paths = field_paths(catalog_fields(loaded.catalogs))
    sn = next(a for a in real_alerts() if a.object_id == "ZTF21abiuvdk")
    (result,) = annotate_batch([sn], loaded)
    assert isinstance(result, AnnotatedAlert)
    for path in paths:
        get_path(result.annotations, path)
        assert get_path(Annotations(), path) is None
    assert paths["crossmatch.ngc.redshift"] == "float"
    assert paths["crossmatch.gcvs.VarType"] == "str"
    assert paths["lightcurve.g.rise_rate"] == "float"
    assert get_path(result.annotations, "crossmatch.ngc.id") == "NGC7814"
    assert get_path(result.annotations, "crossmatch.gaia.id") is None
    assert get_path(result.annotations, "lightcurve.r.n_det") >= 1
    assert get_path(result.annotations, "lightcurve.u.n_det") is None
    assert result.annotations.sky is not None
    assert get_path(result.annotations, "sky.healpix") == result.annotations.sky.healpix
    with pytest.raises(KeyError):
        get_path(result.annotations, "sky.nope")
    as_json = json.loads(json.dumps(to_json_dict(result.annotations)))
    assert as_json["crossmatch"]["ngc"]["id"] == "NGC7814"
    assert as_json["sky"]["healpix"] == result.annotations.sky.healpix
