"""The replay service through the Flask test client, with a fake producer (no Kafka here; the
real one is in tests/e2e/test_replay_service_http.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient

from control_service.auth import ApiKey
from control_service.replay_messages import ID_STRIDE
from control_service.replay_models import ReplaySettings, replay_spec, settings_from
from control_service.replay_service import ReplayComponent, ReplayServiceConfig, create_app
from tests.datapaths import shared_data
from tests.metrics_text import samples
from transforms.decode import decode_message
from transforms.schemas import LsstSchemas

OPS = {"Authorization": "Bearer ops-secret-333"}
ALICE = {"Authorization": "Bearer alice-secret-1"}
KEYS = (ApiKey("alice-secret-1", "alice", "user"), ApiKey("ops-secret-333", "ops", "admin"))
DATA = shared_data()
LSST_BATCH = DATA / "lsst" / "alerts" / "lsstcam_20251231_v10_0.avro"  # 27 alerts
ZTF_FILES = sorted((DATA / "ztf" / "alerts" / "v4.0x_2023-2025").glob("*.avro"))[:3]
SCHEMAS = LsstSchemas()


class FakeProducer:
    """Records what is produced; delivers on poll/flush, failing every ``fail_every``-th."""

    def __init__(self, fail_every: int | None = None) -> None:
        self.produced: list[tuple[str, bytes]] = []
        self.pending: list[Callable[[Any, Any], None]] = []
        self.fail_every = fail_every
        self.flushes = 0

    def produce(
        self, topic: str, value: bytes, timestamp: int, on_delivery: Callable[[Any, Any], None]
    ) -> None:
        assert timestamp > 0
        self.produced.append((topic, value))
        self.pending.append(on_delivery)

    def poll(self, _timeout: float) -> int:
        pending, self.pending = self.pending, []
        for callback in pending:
            n = len(self.produced) - len(self.pending)
            failing = self.fail_every is not None and n % self.fail_every == 0
            callback("Broker: Message size too large" if failing else None, None)
        return len(pending)

    def flush(self, _timeout: float) -> int:
        self.flushes += 1
        self.poll(0)
        return 0


class Factory:
    def __init__(self, fail_every: int | None = None) -> None:
        self.producers: list[FakeProducer] = []
        self.bootstraps: list[str] = []
        self.fail_every = fail_every

    def __call__(self, bootstrap: str) -> FakeProducer:
        self.bootstraps.append(bootstrap)
        self.producers.append(FakeProducer(self.fail_every))
        return self.producers[-1]


def make(
    tmp_path: Path,
    factory: Factory | None = None,
    settings: ReplaySettings | None = None,
    kafka_up: bool = True,
) -> Flask:
    config = ReplayServiceConfig(api_keys=KEYS, audit_log=tmp_path / "audit.jsonl")
    return create_app(
        config,
        settings,
        producer_factory=factory or Factory(),
        kafka_check=lambda _bootstrap: None if kafka_up else "kafka down (test)",
    )


def comp_of(app: Flask) -> ReplayComponent:
    return app.extensions["alertflow.component"]


def finish(app: Flask) -> None:
    """Wait for the run's thread to end (it has no pacing, so it ends on its own)."""
    thread = comp_of(app)._thread
    assert thread is not None
    thread.join(30)
    assert not thread.is_alive()


@pytest.fixture
def factory() -> Factory:
    return Factory()


@pytest.fixture
def app(tmp_path: Path, factory: Factory) -> Flask:
    return make(tmp_path, factory)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def put(client: FlaskClient, body: Any, headers: dict[str, str] = OPS) -> Any:
    return client.put("/api/v1/config", json=body, headers=headers)


def error_of(response: Any) -> tuple[int, str]:
    body = response.get_json()
    assert set(body) == {"error", "message", "details"}
    return response.status_code, body["error"]


def validate(schema: str, body: Any) -> None:
    spec = replay_spec("1")
    jsonschema.validate(
        body, {"components": spec["components"], **spec["components"]["schemas"][schema]}
    )


def expected_ids(files: list[Path], count: int) -> list[int]:
    """Replay's fresh-id rule, computed here: pass c of the files adds c * 2**40 to every id."""
    ids = [a.alert_id for f in files for a in decode_message(f.read_bytes(), SCHEMAS)]
    return [ids[i % len(ids)] + (i // len(ids)) * (1 << 40) for i in range(count)]


# --- config -----------------------------------------------------------------------------------


def test_initial_status_and_config(client: FlaskClient) -> None:
    status = client.get("/api/v1/status").get_json()
    validate("ReplayStatus", status)
    assert (status["kind"], status["state"], status["accepting"], status["progress"]) == (
        "replay",
        "stopped",
        True,
        None,
    )
    config = client.get("/api/v1/config").get_json()
    validate("ReplayConfig", config)
    assert config["config_version"] == 1
    assert config["config"]["files"] == [] and config["config"]["visits"] == 1


def test_put_config_validates_and_applies(client: FlaskClient) -> None:
    body = {"files": [str(LSST_BATCH)], "topic": "replay.test", "count": 100, "rate": 500}
    response = put(client, body)
    assert response.status_code == 200, response.get_json()
    validate("ReplayConfig", response.get_json())
    assert response.get_json()["config_version"] == 2
    config = client.get("/api/v1/config").get_json()["config"]
    assert {k: config[k] for k in body} == {**body, "rate": 500.0}
    # A later PUT merges over the current settings.
    assert put(client, {"count": 5}).get_json()["config"]["topic"] == "replay.test"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"files": ["/nonexistent/alerts.avro"]}, ["files[0]"]),
        ({"rate": -3}, ["rate"]),
        ({"rate": "fast"}, ["rate"]),
        ({"rate": True}, ["rate"]),
        ({"colour": "blue"}, ["colour"]),
        ({"visit_size": 10}, ["visit_interval"]),
        ({"visit_size": 0, "visit_interval": -1}, ["visit_size", "visit_interval"]),
        ({"count": 0, "visits": 0}, ["visits", "count"]),
        ({"topic": "no spaces allowed"}, ["topic"]),
        ({"topic": "a", "topics": {"lsst": "b"}}, ["topics"]),
        ({"topics": {"hst": "x"}}, ["topics.hst"]),
        ({"files": "one.avro"}, ["files"]),
        ({"bootstrap_servers": ""}, ["bootstrap_servers"]),
        ({"files": [str(LSST_BATCH)], "topics": {"ztf": "z"}}, ["topics"]),
        ({"rate": 0, "colour": "blue", "files": ["/nonexistent"]}, ["colour", "rate"]),
    ],
)
def test_bad_config_is_rejected_whole(
    client: FlaskClient, body: dict[str, Any], fields: list[str]
) -> None:
    before = client.get("/api/v1/config").get_json()
    response = put(client, body)
    assert error_of(response) == (422, "validation_failed")
    assert [i["field"] for i in response.get_json()["details"]["issues"]] == fields
    assert client.get("/api/v1/config").get_json() == before


def test_a_file_that_does_not_decode_is_named(client: FlaskClient, tmp_path: Path) -> None:
    bad = tmp_path / "bad.avro"
    bad.write_bytes(b"Obj\x01garbage")
    response = put(client, {"files": [str(LSST_BATCH), str(bad)]})
    issues = response.get_json()["details"]["issues"]
    assert response.status_code == 422
    assert [i["field"] for i in issues] == ["files[1]"]
    assert "bad.avro: framing" in issues[0]["message"]


def test_a_directory_is_its_alert_files_and_one_bad_file_refuses_it_whole(
    client: FlaskClient, app: Flask, factory: Factory, tmp_path: Path
) -> None:
    folder = tmp_path / "alerts"
    folder.mkdir()
    for path in ZTF_FILES:
        (folder / path.name).write_bytes(path.read_bytes())
    assert put(client, {"files": [str(folder)], "topic": "z"}).status_code == 200
    assert client.post("/api/v1/actions/start", headers=OPS).get_json()["result"]["total"] == 3
    finish(app)
    assert [v for _, v in factory.producers[0].produced] == [p.read_bytes() for p in ZTF_FILES]
    # Unlike the one-shot command, the service sends all the files or none.
    (folder / "bad.avro").write_bytes(b"Obj\x01garbage")
    response = put(client, {"files": [str(LSST_BATCH), str(folder)]})
    assert response.status_code == 422
    issues = response.get_json()["details"]["issues"]
    assert [(i["field"], i["message"]) for i in issues] == [
        ("files[1]", f"{folder / 'bad.avro'}: framing: container header truncated or corrupt")
    ]


def test_config_needs_an_admin_token_and_json(client: FlaskClient) -> None:
    assert error_of(put(client, {"count": 5}, headers={})) == (401, "unauthorized")
    assert error_of(put(client, {"count": 5}, headers=ALICE)) == (403, "forbidden")
    wrong = {"Authorization": "Bearer not-a-key-at-all"}
    assert error_of(put(client, {"count": 5}, headers=wrong)) == (401, "unauthorized")
    response = client.put("/api/v1/config", data="count: 5", headers=OPS)
    assert error_of(response)[0] == 415
    response = client.put(
        "/api/v1/config", data="[1]", headers={**OPS, "Content-Type": "application/json"}
    )
    assert error_of(response) == (400, "bad_request")
    assert client.get("/api/v1/config").get_json()["config_version"] == 1


def test_initial_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no such file"):
        make(tmp_path, settings=ReplaySettings(files=("/nonexistent.avro",)))
    with pytest.raises(Exception, match="rate"):
        settings_from({"rate": -1})


# --- actions ----------------------------------------------------------------------------------


def test_start_sends_every_alert_with_fresh_ids(
    client: FlaskClient, app: Flask, factory: Factory
) -> None:
    files = [LSST_BATCH, *ZTF_FILES]  # 30 alerts, sent 70 times over: cycles 0-2
    put(
        client,
        {
            "files": [str(f) for f in files],
            "topics": {"lsst": "l", "ztf": "z"},
            "count": 70,
            "bootstrap_servers": "kafka.example:9092",
        },
    )
    response = client.post("/api/v1/actions/start", headers=OPS)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["result"] == {"run": 1, "total": 70}
    assert body["state"] in ("starting", "running", "stopped")
    finish(app)
    [producer] = factory.producers
    assert factory.bootstraps == ["kafka.example:9092"]
    assert producer.flushes == 1
    ids = [a.alert_id for _, v in producer.produced for a in decode_message(v, SCHEMAS)]
    assert ids == expected_ids(files, 70)
    assert ids[30] == ids[0] + ID_STRIDE
    assert [t for t, _ in producer.produced[:30]] == ["l"] * 27 + ["z"] * 3
    status = client.get("/api/v1/status").get_json()
    validate("ReplayStatus", status)
    progress = status["progress"]
    size = sum(len(v) for _, v in producer.produced)
    assert status["state"] == "stopped"
    assert {
        k: progress[k]
        for k in (
            "run",
            "total",
            "sent",
            "delivered",
            "failed",
            "bytes",
            "done",
            "stopped_early",
            "visit",
            "error",
        )
    } == {
        "run": 1,
        "total": 70,
        "sent": 70,
        "delivered": 70,
        "failed": 0,
        "bytes": size,
        "done": True,
        "stopped_early": False,
        "visit": None,
        "error": None,
    }
    assert progress["rate_per_s"] > 0
    metrics = client.get("/metrics").get_data(as_text=True)
    expected = {
        "alertflow_replay_sent_total": 70,
        "alertflow_replay_delivered_total": 70,
        "alertflow_replay_failed_total": 0,
        "alertflow_replay_bytes_total": size,
        "alertflow_replay_runs_total": 1,
        "alertflow_replay_running": 0,
    }
    assert {name: samples(metrics)[name] for name in expected} == expected
    assert "# TYPE alertflow_replay_sent_total counter" in metrics.splitlines()
    # A second run adds to the totals.
    assert client.post("/api/v1/actions/start", headers=OPS).status_code == 200
    finish(app)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert samples(metrics)["alertflow_replay_sent_total"] == 140


def test_delivery_failures_are_counted(tmp_path: Path) -> None:
    factory = Factory(fail_every=10)
    app = make(tmp_path, factory, settings_from({"files": [str(LSST_BATCH)], "count": 50}))
    client = app.test_client()
    assert client.post("/api/v1/actions/start", headers=OPS).status_code == 200
    finish(app)
    progress = client.get("/api/v1/status").get_json()["progress"]
    assert (progress["sent"], progress["delivered"], progress["failed"]) == (50, 45, 5)
    assert progress["failures"] == ["Broker: Message size too large"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert samples(metrics)["alertflow_replay_failed_total"] == 5


def test_visit_profile_reports_the_visit(tmp_path: Path) -> None:
    settings = settings_from(
        {"files": [str(LSST_BATCH)], "visit_size": 10, "visit_interval": 0, "visits": 3}
    )
    app = make(tmp_path, settings=settings)
    client = app.test_client()
    assert client.post("/api/v1/actions/start", headers=OPS).get_json()["result"]["total"] == 30
    finish(app)
    assert client.get("/api/v1/status").get_json()["progress"]["visit"] == 2
    assert samples(client.get("/metrics").get_data(as_text=True))["alertflow_replay_visit"] == 2


def paced(tmp_path: Path, factory: Factory) -> Flask:
    """A replay at 1 alert/s over 1000 alerts: it runs until stopped."""
    return make(
        tmp_path, factory, settings_from({"files": [str(LSST_BATCH)], "rate": 1, "count": 1000})
    )


def test_start_twice_then_stop_then_stop_again(tmp_path: Path, factory: Factory) -> None:
    app = paced(tmp_path, factory)
    client = app.test_client()
    assert client.post("/api/v1/actions/start", headers=OPS).status_code == 200
    assert comp_of(app).state in ("starting", "running")
    assert error_of(client.post("/api/v1/actions/start", headers=OPS)) == (409, "conflict")
    response = client.post("/api/v1/actions/stop", headers=OPS)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["state"] == "stopped"
    assert body["result"]["done"] and body["result"]["stopped_early"]
    assert body["result"]["sent"] == len(factory.producers[0].produced) < 1000
    assert factory.producers[0].flushes == 1
    assert error_of(client.post("/api/v1/actions/stop", headers=OPS)) == (409, "conflict")
    # Stopped, it starts again.
    assert client.post("/api/v1/actions/start", headers=OPS).get_json()["result"]["run"] == 2
    assert client.post("/api/v1/actions/stop", headers=OPS).status_code == 200


def test_drain_stops_flushes_and_refuses_new_starts(tmp_path: Path, factory: Factory) -> None:
    app = paced(tmp_path, factory)
    client = app.test_client()
    client.post("/api/v1/actions/start", headers=OPS)
    response = client.post("/api/v1/actions/drain", headers=OPS)
    assert response.status_code == 200
    body = response.get_json()
    assert (body["state"], body["result"]["accepting"]) == ("stopped", False)
    assert body["result"]["progress"]["done"]
    assert factory.producers[0].flushes == 1
    assert error_of(client.post("/api/v1/actions/start", headers=OPS)) == (409, "conflict")
    assert client.get("/api/v1/status").get_json()["accepting"] is False
    assert client.post("/api/v1/actions/drain", headers=OPS).status_code == 200  # idempotent


def test_action_errors(client: FlaskClient) -> None:
    assert error_of(client.post("/api/v1/actions/start")) == (401, "unauthorized")
    assert error_of(client.post("/api/v1/actions/start", headers=ALICE)) == (403, "forbidden")
    response = client.post("/api/v1/actions/rewind", headers=OPS)
    assert error_of(response) == (404, "not_found")
    assert response.get_json()["details"]["supported"] == ["drain", "start", "stop"]
    # No files configured yet.
    assert error_of(client.post("/api/v1/actions/start", headers=OPS)) == (409, "conflict")
    assert error_of(client.post("/api/v1/actions/stop", headers=OPS)) == (409, "conflict")


def test_a_producer_that_cannot_be_made_is_503(tmp_path: Path) -> None:
    def broken(_bootstrap: str) -> Any:
        raise ValueError("bootstrap.servers is malformed")

    config = ReplayServiceConfig(api_keys=KEYS)
    app = create_app(
        config,
        settings_from({"files": [str(LSST_BATCH)]}),
        producer_factory=broken,
        kafka_check=lambda _b: None,
    )
    response = app.test_client().post("/api/v1/actions/start", headers=OPS)
    assert error_of(response) == (503, "unavailable")
    assert comp_of(app).state == "stopped"


def test_a_failing_run_is_degraded_and_can_start_again(tmp_path: Path) -> None:
    class Exploding(FakeProducer):
        def produce(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("KafkaError{code=MSG_SIZE_TOO_LARGE}")

    app = make(tmp_path, settings=settings_from({"files": [str(LSST_BATCH)]}))
    comp_of(app).producer_factory = lambda _b: Exploding()
    client = app.test_client()
    client.post("/api/v1/actions/start", headers=OPS)
    finish(app)
    status = client.get("/api/v1/status").get_json()
    assert status["state"] == "degraded"
    assert status["progress"]["error"] == "RuntimeError: KafkaError{code=MSG_SIZE_TOO_LARGE}"
    comp_of(app).producer_factory = Factory()
    assert client.post("/api/v1/actions/start", headers=OPS).status_code == 200
    finish(app)
    assert client.get("/api/v1/status").get_json()["state"] == "stopped"


# --- health, readiness, metrics, spec ---------------------------------------------------------


def test_health_ready_and_openapi(tmp_path: Path, client: FlaskClient) -> None:
    assert client.get("/health").get_json() == {"status": "ok"}
    assert client.get("/ready").get_json() == {
        "ready": True,
        "checks": {"kafka": True},
        "reasons": {},
    }
    down = make(tmp_path, kafka_up=False).test_client().get("/ready")
    assert (down.status_code, down.get_json()) == (
        503,
        {"ready": False, "checks": {"kafka": False}, "reasons": {"kafka": "kafka down (test)"}},
    )
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec == replay_spec(spec["info"]["version"])
    assert spec["info"]["title"] == "alertflow replay"


def test_audit_log_records_config_and_actions(tmp_path: Path, client: FlaskClient) -> None:
    put(client, {"files": [str(LSST_BATCH)], "count": 3})
    client.post("/api/v1/actions/drain", headers=OPS)
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "config.put" in lines[0] and "action.drain" in lines[1]
