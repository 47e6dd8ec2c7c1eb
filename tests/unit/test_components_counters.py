"""The components table names only counters that the stages' DoFns really create.

A counter renamed in a stage but not in ``control_service/components_api.py`` would read 0 for
ever (a counter Flink does not report reads 0), so this compares the table with what the DoFns
register with ``Metrics.counter`` when they are built.
"""

from __future__ import annotations

from typing import Any

import pytest
from apache_beam.metrics import Metrics

from control_service.components_api import counter_key, stages
from transforms.annotate.transform import AnnotateConfig, Annotator, _AnnotateBatchFn
from transforms.apply_filters import _ApplyFn
from transforms.decode_alerts import _DecodeFn
from transforms.publish import _PublishFn
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas


def created_counters(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The keys (``<Namespace>_<name>``) of every counter the broker's DoFns create."""
    created: set[str] = set()
    real = Metrics.counter

    def counter(namespace: Any, name: str) -> Any:
        created.add(counter_key(str(namespace), name))
        return real(namespace, name)

    monkeypatch.setattr(Metrics, "counter", counter)
    _DecodeFn(LsstSchemas(DEFAULT_LSST_SCHEMA_DIR))
    _AnnotateBatchFn(AnnotateConfig())
    _ApplyFn()
    _PublishFn("localhost:1", 1)
    return created


def test_every_counter_in_the_components_table_is_created_by_a_stage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = created_counters(monkeypatch)
    table = stages(created)
    assert [s.stage for s in table] == [
        "ingest",
        "decode",
        *(f"annotate.{a}" for a in Annotator),
        "filters",
        "publish",
        "deadletters",
    ]
    for stage in table:
        for figure in (stage.elements_in, stage.elements_out, stage.errors):
            if figure is None:
                continue
            counters = {k for k in figure if not k.startswith("op:")}
            assert counters <= created, f"{stage.stage}: {sorted(counters - created)} not created"
            if stage.stage not in ("ingest", "deadletters"):
                assert figure, f"{stage.stage}: a figure resolves to no counter"
    decode = next(s for s in table if s.stage == "decode")
    dead_letters = sorted(k for k in created if k.startswith("DecodeAlerts_dead_letters_"))
    assert decode.errors == tuple(dead_letters)
