"""The autoscaler service through the Flask test client, and its loop with a fake clock.

A fake observer returns scripted observations and a fake driver keeps TaskManagers in a list;
no Kafka, Flink or Kubernetes here (the Observer is checked on the real stack).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient

from control_service.auth import ApiKey
from control_service.config import ConfigError
from flink_deploy.autoscaler.api_models import autoscaler_spec
from flink_deploy.autoscaler.decide import TaskManager
from flink_deploy.autoscaler.drivers import DriverError
from flink_deploy.autoscaler.loop import ScalingLoop
from flink_deploy.autoscaler.observe import Observation
from flink_deploy.autoscaler.policy import DEFAULT_POLICY_FILE, Profile, load_policy_file
from flink_deploy.autoscaler.service import AutoscalerConfig, create_app, parse_api_keys
from tests.metrics_text import samples
from tests.unit.autoscale_cases import ineffective_check, obs

OPS = {"Authorization": "Bearer ops-secret-333"}
ALICE = {"Authorization": "Bearer alice-secret-1"}
YAML = {"Content-Type": "application/yaml"}
POLICY = load_policy_file(DEFAULT_POLICY_FILE)  # sustain 3, cooldown 30 s up / 120 s down


def running(lag: int | None) -> Observation:
    """A job running at parallelism 2 on one TaskManager, with ``lag``."""
    return obs(lag=lag)


class FakeObserver:
    def __init__(self, observations: Iterable[Observation] = (), ready: bool = True) -> None:
        self.queue = list(observations)
        self.ready = ready
        self.closed = False
        self.observed = threading.Event()

    def observe(self) -> Observation:
        self.observed.set()
        return self.queue.pop(0) if self.queue else running(0)

    def kafka_problem(self) -> str | None:
        return None if self.ready else "kafka at kafka:9092 does not answer within 2 s: (test)"

    def flink_problem(self) -> str | None:
        return None

    def close(self) -> None:
        self.closed = True


class FakeDriver:
    def __init__(self, count: int = 1, fail: str | None = None) -> None:
        self.tms = [TaskManager(f"tm-{i + 1}", "small") for i in range(count)]
        self.fail = fail
        self.added = 0

    def taskmanagers(self) -> list[TaskManager]:
        if self.fail == "list":
            raise DriverError("deployment alertflow-taskmanager-small: Kubernetes answered 403")
        return list(self.tms)

    def add(self, profile: Profile) -> TaskManager:
        if self.fail == "add":
            raise OSError("flink-taskmanager-2 did not become healthy")
        self.added += 1
        tm = TaskManager(f"tm-{len(self.tms) + 1}", profile.name)
        self.tms.append(tm)
        return tm

    def remove(self, name: str) -> None:
        self.tms = [tm for tm in self.tms if tm.name != name]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def make(
    tmp_path: Path,
    observer: FakeObserver | None = None,
    driver: FakeDriver | None = None,
    clock: Clock | None = None,
    **config: Any,
) -> Flask:
    cfg = AutoscalerConfig(
        api_keys=parse_api_keys("alice-secret-1:alice:user,ops-secret-333:ops:admin"),
        audit_log=tmp_path / "audit.jsonl",
        **config,
    )
    return create_app(
        POLICY, observer or FakeObserver(), driver or FakeDriver(), cfg, clock=clock or Clock()
    )


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make(tmp_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def loop_of(app: Flask) -> ScalingLoop:
    return app.extensions["alertflow.scaling"]


def steps(loop: ScalingLoop, clock: Clock, count: int, every: float = 5.0) -> list[str]:
    out = []
    for _ in range(count):
        out.append(loop.step().action)
        clock.now += every
    return out


def validate(spec: dict[str, Any], schema: str, body: Any) -> None:
    resolver_doc = {"components": spec["components"], **spec["components"]["schemas"][schema]}
    jsonschema.validate(body, resolver_doc)


# --- the loop ---------------------------------------------------------------------------------


def test_loop_scales_up_then_down_with_the_policy(tmp_path: Path) -> None:
    clock = Clock()
    lags = [12_000] * 3 + [3_000] * 6 + [0] * 30
    driver = FakeDriver(1)
    app = make(tmp_path, FakeObserver(running(lag) for lag in lags), driver, clock)
    loop = loop_of(app)
    actions = steps(loop, clock, len(lags))
    assert actions.index("up") == 2  # after 3 observations
    assert actions.count("up") == 1 and actions.count("down") == 1
    # down after 3 calm observations, once 120 s have passed since the up at t=1010
    assert actions.index("down") == 26
    assert [d.taskmanager for d in loop.decisions() if d.action != "hold"] == ["tm-2", "tm-2"]
    assert driver.tms == [TaskManager("tm-1", "small")]
    up = next(d for d in loop.decisions() if d.action == "up")
    assert up.reason == (
        "lag 12,000 > 5,000 for 3 observations; adding a small TaskManager (1 -> 2)"
    )
    assert up.observation is not None and up.observation.lag_total == 12_000


def loaded(
    rate: float | None, parallelism: int = 2, fresh: bool = True, state: str = "RUNNING"
) -> Observation:
    """12,000 alerts behind, processing ``rate`` alerts/s; checkpointed since any restore."""
    return replace(
        running(12_000),
        records_out_per_s=rate,
        parallelism=parallelism,
        checkpointed_since_restore=fresh,
        job_state=state,
    )


def test_an_ineffective_scale_up_is_shown_and_blocks_the_next(tmp_path: Path) -> None:
    """The benchmark's run with the default policy (min_gain 0.1, ineffective_hold_s 600):
    218 alerts/s with one TaskManager, 203 with two; no third TaskManager."""
    clock = Clock()
    script = [loaded(218.0)] * 3 + [  # up at the third (t=1010)
        loaded(None, parallelism=0, state="RESTARTING"),
        loaded(0.0, parallelism=4, fresh=False),  # running, but the lag is stale
        loaded(1_800.0, parallelism=4),  # the first checkpoint since the restore: not counted
        loaded(200.0, parallelism=4),
        loaded(203.0, parallelism=4),
        loaded(206.0, parallelism=4),  # the verdict (t=1040)
        *[loaded(203.0, parallelism=4)] * 5,
    ]
    driver = FakeDriver(1)
    app = make(tmp_path, FakeObserver(script), driver, clock)
    loop = loop_of(app)
    assert steps(loop, clock, len(script)) == ["hold", "hold", "up"] + ["hold"] * 11
    assert len(driver.tms) == 2
    reasons = [d.reason for d in loop.decisions()]
    assert reasons[4] == (
        "restored from a checkpoint and none completed since: the committed "
        "offsets, and so the lag, are stale"
    )
    verdict = (
        "the last scale-up (1 -> 2 TaskManagers) took throughput from 218 to 203 "
        "alerts/s (< +10%): no scale-up for 600 s"
    )
    assert reasons[8] == f"lag 12,000 > 5,000 for 4 observations, but {verdict} (600 s left)"
    assert reasons[-1] == f"lag 12,000 > 5,000 for 9 observations, but {verdict} (575 s left)"
    body = app.test_client().get("/api/v1/scaling").get_json()
    validate(autoscaler_spec("1"), "Scaling", body)
    assert body["last_scale_up"] == ineffective_check(1000.0)
    assert body["observation"]["checkpointed_since_restore"] is True


@pytest.mark.parametrize(
    ("fail", "reason_part"),
    [
        (
            "add",
            "the driver failed to scale up: OSError: flink-taskmanager-2 did not become healthy",
        ),
        (
            "list",
            "cannot list the TaskManagers: DriverError: deployment "
            "alertflow-taskmanager-small: Kubernetes answered 403",
        ),
    ],
)
def test_driver_errors_are_decisions_and_the_loop_goes_on(
    tmp_path: Path, fail: str, reason_part: str
) -> None:
    clock = Clock()
    driver = FakeDriver(1, fail=fail)
    app = make(tmp_path, FakeObserver([running(20_000)] * 10), driver, clock)
    loop = loop_of(app)
    actions = steps(loop, clock, 10)
    assert "error" in actions
    error = next(d for d in loop.decisions() if d.action == "error")
    assert reason_part in error.reason
    assert error.target_count == error.current_count
    driver.fail = None
    clock.now += 60
    assert steps(loop, clock, 3)[-1] in ("up", "hold")  # still deciding


def test_history_is_bounded(tmp_path: Path) -> None:
    clock = Clock()
    loop = loop_of(make(tmp_path, clock=clock, history=5))
    steps(loop, clock, 12)
    assert len(loop.decisions()) == 5
    assert loop.decisions(2) == loop.decisions()[-2:]
    assert loop.decisions(0) == []


def test_loop_thread_runs_pauses_and_stops(tmp_path: Path) -> None:
    observer = FakeObserver()
    app = make(tmp_path, observer)
    loop = loop_of(app)
    loop.replace_policy(replace(POLICY, interval_s=0.01))
    loop.start()
    assert observer.observed.wait(10), "the loop never observed"
    with pytest.raises(RuntimeError, match="already running"):
        loop.start()
    loop.pause()
    loop.stop()
    assert observer.closed
    assert loop.steps >= 1


# --- the routes -------------------------------------------------------------------------------


def test_get_scaling(tmp_path: Path) -> None:
    clock = Clock()
    app = make(tmp_path, FakeObserver([running(12_345)]), clock=clock)
    client = app.test_client()
    body = client.get("/api/v1/scaling").get_json()
    assert body["observation"] is None and body["decisions"] == []
    assert body["last_scale_up"] is None
    assert body["policy"] == POLICY.to_dict() and body["state"] == "running"
    steps(loop_of(app), clock, 3)
    response = client.get("/api/v1/scaling?limit=2")
    assert response.status_code == 200
    body = response.get_json()
    assert len(body["decisions"]) == 2
    assert body["taskmanagers"] == [{"name": "tm-1", "profile": "small"}]
    assert body["observation"]["lag_total"] == 0
    assert body["decisions"][0]["observation"]["lag_total"] == 0
    validate(autoscaler_spec("1"), "Scaling", body)
    assert client.get("/api/v1/scaling?limit=x").status_code == 400
    # str.isdigit() takes "²", which int() refuses; int() refuses over 4300 digits.
    assert client.get("/api/v1/scaling?limit=\u00b2").status_code == 400
    assert len(client.get("/api/v1/scaling?limit=" + "9" * 5000).get_json()["decisions"]) == 3
    assert len(client.get("/api/v1/scaling?limit=0000000000001").get_json()["decisions"]) == 1


def test_put_policy_yaml_and_json(tmp_path: Path, client: FlaskClient) -> None:
    text = DEFAULT_POLICY_FILE.read_text().replace("max_taskmanagers: 4", "max_taskmanagers: 6")
    response = client.put("/api/v1/scaling", data=text, headers={**OPS, **YAML})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["policy"]["max_taskmanagers"] == 6
    assert response.get_json()["policy_version"] == 2
    data = {**POLICY.to_dict(), "sustain": 5}
    response = client.put("/api/v1/scaling", json=data, headers=OPS)
    assert response.status_code == 200
    assert response.get_json()["policy"]["sustain"] == 5
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["user"], a["action"], a["old_version"], a["new_version"]) for a in audit] == [
        ("ops", "scaling.policy.put", 1, 2),
        ("ops", "scaling.policy.put", 2, 3),
    ]
    assert audit[1]["policy"]["sustain"] == 5


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        ("interval_s: [1,\n", YAML, 422, "validation_failed"),
        (None, YAML, 422, "validation_failed"),  # an unknown key, below
        ("", YAML, 400, "bad_request"),
        ("[1, 2]", {"Content-Type": "application/json"}, 400, "bad_request"),
        ("{", {"Content-Type": "application/json"}, 400, "bad_request"),
        ("a: 1", {"Content-Type": "application/xml"}, 415, "unsupported_media_type"),
        (b"\xff\xfe", YAML, 400, "bad_request"),
    ],
)
def test_put_policy_errors(
    client: FlaskClient, body: Any, headers: dict[str, str], status: int, error: str
) -> None:
    if body is None:
        body = DEFAULT_POLICY_FILE.read_text().replace("sustain: 3", "sustian: 3")
    response = client.put("/api/v1/scaling", data=body, headers={**OPS, **headers})
    assert (response.status_code, response.get_json()["error"]) == (status, error)
    assert loop_of(client.application).policy_version == 1  # nothing changed


def test_put_policy_issue_has_line_and_column(client: FlaskClient) -> None:
    text = DEFAULT_POLICY_FILE.read_text().replace("sustain: 3", "sustian: 3")
    line = text.splitlines().index(next(x for x in text.splitlines() if x.startswith("sustian")))
    response = client.put("/api/v1/scaling", data=text, headers={**OPS, **YAML})
    [issue] = response.get_json()["details"]["issues"]
    assert issue == {
        "line": line + 1,
        "column": 1,
        "path": "sustian",
        "message": "unknown key 'sustian'; did you mean 'sustain'?",
    }


def test_put_policy_needs_an_admin_token(client: FlaskClient) -> None:
    text = DEFAULT_POLICY_FILE.read_text()
    assert client.put("/api/v1/scaling", data=text, headers=YAML).status_code == 401
    assert (
        client.put(
            "/api/v1/scaling", data=text, headers={**YAML, "Authorization": "Bearer wrong-token"}
        ).status_code
        == 401
    )
    assert client.put("/api/v1/scaling", data=text, headers={**ALICE, **YAML}).status_code == 403


def test_oversized_body(client: FlaskClient) -> None:
    big = "# padding\n" * 7000
    response = client.put("/api/v1/scaling", data=big, headers={**OPS, **YAML})
    assert (response.status_code, response.get_json()["error"]) == (413, "payload_too_large")


# --- the common API ---------------------------------------------------------------------------


def test_common_api(tmp_path: Path) -> None:
    observer = FakeObserver()
    app = make(tmp_path, observer)
    client = app.test_client()
    assert client.get("/health").get_json() == {"status": "ok"}
    assert client.get("/ready").get_json() == {
        "ready": True,
        "reasons": {},
        "checks": {"kafka": True, "flink": True},
    }
    observer.ready = False
    down = client.get("/ready")
    assert down.status_code == 503
    assert down.get_json() == {
        "ready": False,
        "checks": {"kafka": False, "flink": True},
        "reasons": {"kafka": "kafka at kafka:9092 does not answer within 2 s: (test)"},
    }
    status = client.get("/api/v1/status").get_json()
    assert (status["kind"], status["state"], status["policy_version"]) == (
        "autoscaler",
        "running",
        1,
    )
    config = client.get("/api/v1/config").get_json()["config"]
    assert config["group_id"] == "alertflow-broker"
    assert "secret" not in json.dumps(config)
    spec = client.get("/api/v1/openapi.json").get_json()
    assert {"get", "put"} <= set(spec["paths"]["/api/v1/scaling"])
    assert "/api/v1/actions/{action}" in spec["paths"]


def test_start_stop_actions_pause_the_loop(client: FlaskClient) -> None:
    loop = loop_of(client.application)
    assert client.post("/api/v1/actions/stop").status_code == 401
    response = client.post("/api/v1/actions/stop", headers=OPS)
    assert response.get_json() == {
        "action": "stop",
        "state": "stopped",
        "result": {"scaling": False},
    }
    assert loop.paused
    assert client.get("/api/v1/scaling").get_json()["state"] == "paused"
    client.post("/api/v1/actions/start", headers=OPS)
    assert not loop.paused
    assert client.post("/api/v1/actions/drain", headers=OPS).status_code == 404


def test_metrics(tmp_path: Path) -> None:
    clock = Clock()
    app = make(tmp_path, FakeObserver([running(7)]), clock=clock)
    steps(loop_of(app), clock, 1)
    found = samples(app.test_client().get("/metrics").get_data(as_text=True))
    assert found["alertflow_autoscaler_taskmanagers"] == 1
    assert found["alertflow_autoscaler_lag"] == 7
    assert found['alertflow_autoscaler_decisions{action="hold"}'] == 1


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError) as caught:
        AutoscalerConfig(port=70000, topics=(), history=0, api_keys=(ApiKey("short", "x", "root"),))
    assert [name for name, _ in caught.value.problems] == ["port", "topics", "history", "api_keys"]
    assert parse_api_keys("tok-12345:ops:admin, tok-67890:bob") == (
        ApiKey("tok-12345", "ops", "admin"),
        ApiKey("tok-67890", "bob", "user"),
    )
