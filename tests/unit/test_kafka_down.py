"""Kafka down: every service starts, says why at ``/ready``, refuses what needs Kafka with 503,
and becomes ready without a restart (DESIGN.md section 4).

The real services, pointed at a loopback port where nothing listens: the control service with
its Kafka filter store, the replay service with the shared probe, the autoscaler with its
Observer; and ``alertflow serve`` itself, as a process. That the control service becomes ready
when the topics can be read is shown here with in-memory topics that come back, and on a real
Kafka that starts after the services in tests/e2e/test_kafka_starts_late.py.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import requests
from flask import Flask
from flask.testing import FlaskClient

from control_service.app import create_app
from control_service.audit import AuditLog
from control_service.config import load_config
from control_service.filters_api import STORE_EXTENSION
from control_service.replay_models import settings_from
from control_service.replay_service import ReplayServiceConfig
from control_service.replay_service import create_app as create_replay_app
from control_service.snapshots import SNAPSHOT_KEY, MemorySnapshotLog
from control_service.store import FilterStore
from flink_deploy.autoscaler.observe import Observer
from flink_deploy.autoscaler.service import AutoscalerConfig, parse_api_keys
from flink_deploy.autoscaler.service import create_app as create_autoscaler_app
from flink_deploy.settings import REPO_ROOT
from tests.control_support import ALICE, KEYS, OPS, YAML, doc, error_of
from tests.unit.test_autoscale_service import POLICY, FakeDriver
from tests.unit.test_replay_service import KEYS as REPLAY_KEYS
from tests.unit.test_replay_service import LSST_BATCH, Factory
from transforms.kafka_clients import kafka_problem
from transforms.polling import wait_until

REFUSED = "Failed to get metadata: Local: Broker transport failure"


def down(bootstrap: str, timeout_s: float) -> str:
    return f"kafka at {bootstrap} does not answer within {timeout_s:g} s: {REFUSED}"


# --- the control service ----------------------------------------------------------------------

#: Every filter call: all need the filters read from Kafka (a bad body is still 4xx first).
FILTER_CALLS = [
    ("GET", "/api/v1/filters", None),
    ("GET", "/api/v1/filters/bright", None),
    ("POST", "/api/v1/filters/bright/test", None),
    ("POST", "/api/v1/filters", doc()),
    ("PUT", "/api/v1/filters/bright", doc()),
    ("DELETE", "/api/v1/filters/bright", None),
    ("POST", "/api/v1/filters/bright/activate", None),
    ("POST", "/api/v1/filters/bright/deactivate", None),
]


def control_app(tmp_path: Path, bootstrap: str, timeout_s: float) -> Flask:
    config = load_config(
        env={},
        bootstrap_servers=bootstrap,
        kafka_timeout_s=timeout_s,
        api_keys=KEYS,
        audit_log=tmp_path / "audit.jsonl",
        flink_rest_url=f"http://{bootstrap}",
    )
    return create_app(config)


def test_control_service_starts_without_kafka_and_refuses_filter_calls(
    tmp_path: Path, closed_port: int
) -> None:
    bootstrap = f"127.0.0.1:{closed_port}"
    app = control_app(tmp_path, bootstrap, 0.5)  # before the fix: raised KafkaException
    try:
        client = app.test_client()
        why = down(bootstrap, 0.5)
        assert client.get("/health").get_json() == {"status": "ok"}
        ready = client.get("/ready")
        assert (ready.status_code, ready.get_json()) == (
            503,
            {
                "ready": False,
                "checks": {"config_topic": False},
                "reasons": {"config_topic": f"the filter topics are not read yet: {why}"},
            },
        )
        for method, path, body in FILTER_CALLS:
            response = client.open(path, method=method, data=body, headers={**ALICE, **YAML})
            assert error_of(response) == (503, "unavailable"), (method, path)
            message = response.get_json()["message"]
            assert message.startswith(f"the filters are not read from Kafka yet: {why};"), message
        reload = client.post("/api/v1/actions/reload", headers=OPS)
        assert error_of(reload) == (503, "unavailable")
        status = client.get("/api/v1/status").get_json()
        assert (status["state"], status["filter_set_version"]) == ("running", None)
        assert client.get("/metrics").status_code == 200
    finally:
        app.extensions[STORE_EXTENSION].close()


def test_control_service_becomes_ready_once_its_topics_can_be_read(tmp_path: Path) -> None:
    """Not ready while the topics cannot be read; then, with no restart, the store loads what
    the topics hold (version 3 here) before it serves reads and changes."""
    active = MemorySnapshotLog(
        "alertflow.config",
        [
            (
                SNAPSHOT_KEY,
                (
                    b'{"version":3,"filters":[{"apiVersion":"alertflow/v1","kind":"Filter",'
                    b'"metadata":{"name":"faint","owner":"alice"},"spec":{"where":"mag > 20"}}]}'
                ),
            )
        ],
    )
    inactive = MemorySnapshotLog("alertflow.config.inactive")
    active.down = inactive.down = "kafka at 127.0.0.1:9092 does not answer (test)"
    store = FilterStore(active, inactive, AuditLog(tmp_path / "audit.jsonl"))
    config = load_config(env={}, api_keys=KEYS, audit_log=tmp_path / "audit.jsonl")
    app = create_app(config, store=store)
    try:
        client = app.test_client()
        assert client.get("/ready").get_json()["reasons"] == {
            "config_topic": "the filter topics are not read yet: "
            "kafka at 127.0.0.1:9092 does not answer (test)"
        }
        assert error_of(client.post("/api/v1/filters", data=doc(), headers={**ALICE, **YAML})) == (
            503,
            "unavailable",
        )
        active.down = inactive.down = None  # Kafka is back
        wait_until(lambda: client.get("/ready").status_code == 200, 15, 0.1, "/ready to say 200")
        assert client.get("/api/v1/status").get_json()["filter_set_version"] == 3
        listing = client.get("/api/v1/filters").get_json()
        assert (listing["version"], [f["name"] for f in listing["filters"]]) == (3, ["faint"])
        applied = client.post("/api/v1/filters", data=doc(), headers={**ALICE, **YAML})
        assert (applied.status_code, applied.get_json()["version"]) == (201, 4)
    finally:
        store.close()


def test_serve_starts_while_kafka_is_down(tmp_path: Path, closed_port: int) -> None:
    """``alertflow serve`` listens, answers /health and /ready (503, why), stops on SIGTERM,
    and librdkafka's retries (about 40 lines per second) reach stderr as a line or two."""
    bootstrap = f"127.0.0.1:{closed_port}"
    env = {
        **os.environ,
        "ALERTFLOW_CONTROL_BOOTSTRAP_SERVERS": bootstrap,
        "ALERTFLOW_CONTROL_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "ALERTFLOW_RUN_DIR": str(tmp_path / "run"),
    }
    stderr = tmp_path / "serve.err"
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "control_service.cli", "serve", "--port", "0"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert process.stdout is not None
    stdout = process.stdout
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        # Before the fix: no banner; the process exited 1 with "cannot start".
        assert lines and lines[0].startswith("alertflow control service on http://"), (
            stderr.read_text()[-2000:]
        )
        url = lines[0].split(" on ", 1)[1].strip()
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        ready = requests.get(f"{url}/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["reasons"]["config_topic"] == (
            f"the filter topics are not read yet: {down(bootstrap, 2)}"
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        stdout.close()
    log = stderr.read_text()
    assert "Traceback" not in log and "%3|" not in log, log[-2000:]  # nothing raw on stderr
    rdkafka = [line for line in log.splitlines() if " librdkafka: " in line]
    assert 1 <= len(rdkafka) <= 2, rdkafka


# --- the replay service -----------------------------------------------------------------------


def test_replay_service_starts_without_kafka_and_refuses_to_start_a_replay(
    tmp_path: Path, closed_port: int
) -> None:
    bootstrap = f"127.0.0.1:{closed_port}"
    factory = Factory()
    app = create_replay_app(
        ReplayServiceConfig(api_keys=REPLAY_KEYS, audit_log=tmp_path / "audit.jsonl"),
        settings_from({"files": [str(LSST_BATCH)], "bootstrap_servers": bootstrap}),
        producer_factory=factory,
        kafka_check=functools.partial(kafka_problem, timeout_s=0.5),
    )
    client: FlaskClient = app.test_client()
    why = down(bootstrap, 0.5)
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert (ready.status_code, ready.get_json()["reasons"]) == (503, {"kafka": why})
    start = client.post("/api/v1/actions/start", headers=OPS)
    assert error_of(start) == (503, "unavailable")
    assert start.get_json()["message"] == f"{why}; start again once it does"
    assert factory.bootstraps == []  # no producer made, nothing sent
    assert client.get("/api/v1/status").get_json()["state"] == "stopped"
    # The settings need no Kafka: a wrong address can be corrected while it is down.
    changed = client.put("/api/v1/config", json={"count": 5}, headers=OPS)
    assert changed.status_code == 200


# --- the autoscaler ---------------------------------------------------------------------------


def test_autoscaler_starts_without_kafka_and_flink_and_says_why(
    tmp_path: Path, closed_port: int
) -> None:
    bootstrap, flink = f"127.0.0.1:{closed_port}", f"http://127.0.0.1:{closed_port}"
    observer = Observer(bootstrap, "alertflow-broker", ["alerts.ztf"], flink, timeout_s=0.5)
    config = AutoscalerConfig(
        api_keys=parse_api_keys("ops-secret-333:ops:admin"),
        bootstrap_servers=bootstrap,
        flink_rest_url=flink,
        audit_log=tmp_path / "audit.jsonl",
    )
    app = create_autoscaler_app(POLICY, observer, FakeDriver(), config)
    loop = app.extensions["alertflow.scaling"]
    try:
        client = app.test_client()
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        reasons = ready.get_json()["reasons"]
        assert ready.status_code == 503 and set(reasons) == {"kafka", "flink"}
        assert reasons["kafka"] == down(bootstrap, 0.5)
        assert reasons["flink"].startswith(
            f"the Flink REST API at {flink} does not answer GET /overview (ConnectionError"
        )
        loop.step()  # the loop goes on, with what it could not see in the observation
        errors = loop.latest.errors
        assert [e.split(":")[0] for e in errors] == ["kafka", "flink job", "flink cluster"]
    finally:
        loop.stop()
