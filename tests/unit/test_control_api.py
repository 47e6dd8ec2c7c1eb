"""The control service's common control API through the Flask test client: health, readiness,
status, config, actions, metrics, OpenAPI, the error shape; and its configuration.

The filter store runs on in-memory snapshot logs (tests/control_support.py; the Kafka ones are
tested in tests/e2e/test_control_kafka.py). The filter endpoints are test_control_filters.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from control_service.config import ConfigError, load_config
from tests.control_support import ALICE, BOB, OPS, YAML, doc, error_of
from tests.metrics_text import samples

# --- the common control API -----------------------------------------------------------------


def test_health_ready_status(client: FlaskClient) -> None:
    assert client.get("/health").get_json() == {"status": "ok"}
    assert client.get("/ready").get_json() == {
        "ready": True,
        "checks": {"config_topic": True},
        "reasons": {},
    }
    status = client.get("/api/v1/status").get_json()
    assert {
        k: status[k] for k in ("id", "kind", "state", "config_version", "filter_set_version")
    } == {
        "id": "control",
        "kind": "control-service",
        "state": "running",
        "config_version": 1,
        "filter_set_version": 0,
    }
    assert set(status) >= {
        "id",
        "kind",
        "version",
        "state",
        "started_at",
        "config_version",
        "links",
    }


def test_ready_is_503_when_the_store_is_not_loaded(client: FlaskClient, app: Flask) -> None:
    app.extensions["alertflow.filters"].loaded = False
    response = client.get("/ready")
    assert response.status_code == 503 and response.get_json()["ready"] is False


def test_config_get_hides_tokens(client: FlaskClient) -> None:
    body = client.get("/api/v1/config").get_json()
    assert body["config_version"] == 1
    assert body["config"]["api_keys"][0] == {"user": "alice", "role": "user"}
    assert "alice-secret-1" not in json.dumps(body)


def test_config_put_needs_admin_and_is_whole(client: FlaskClient, tmp_path: Path) -> None:
    assert error_of(client.put("/api/v1/config", json={"open_reads": False})) == (
        401,
        "unauthorized",
    )
    assert error_of(client.put("/api/v1/config", json={"open_reads": False}, headers=ALICE)) == (
        403,
        "forbidden",
    )
    rejected = client.put(
        "/api/v1/config", json={"max_test_matches": 5, "port": 1, "nope": 1}, headers=OPS
    )
    assert error_of(rejected) == (422, "validation_failed")
    assert {i["field"] for i in rejected.get_json()["details"]["issues"]} == {"port", "nope"}
    assert (
        client.get("/api/v1/config").get_json()["config"]["max_test_matches"] == 100
    )  # nothing changed
    ok = client.put("/api/v1/config", json={"open_reads": False}, headers=OPS)
    assert ok.status_code == 200 and ok.get_json()["config_version"] == 2
    assert error_of(client.get("/api/v1/filters")) == (401, "unauthorized")  # reads closed now
    assert client.get("/api/v1/filters", headers=BOB).status_code == 200
    assert error_of(
        client.put("/api/v1/config", data="x", headers={**OPS, "Content-Type": "text/plain"})
    ) == (415, "unsupported_media_type")
    assert error_of(
        client.put("/api/v1/config", data="{x", headers={**OPS, "Content-Type": "application/json"})
    ) == (400, "bad_request")
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert (
        audit[-1]["action"] == "config.put"
        and audit[-1]["user"] == "ops"
        and (audit[-1]["old_version"], audit[-1]["new_version"]) == (1, 2)
    )


def test_actions(client: FlaskClient) -> None:
    assert error_of(client.post("/api/v1/actions/stop")) == (401, "unauthorized")
    assert error_of(client.post("/api/v1/actions/stop", headers=ALICE)) == (403, "forbidden")
    unknown = client.post("/api/v1/actions/explode", headers=OPS)
    assert error_of(unknown) == (404, "not_found") and unknown.get_json()["details"][
        "supported"
    ] == ["reload", "start", "stop"]
    assert client.post("/api/v1/actions/stop", headers=OPS).get_json()["state"] == "stopped"
    assert error_of(client.post("/api/v1/filters", data=doc(), headers={**ALICE, **YAML})) == (
        503,
        "unavailable",
    )
    assert client.post("/api/v1/actions/start", headers=OPS).get_json()["state"] == "running"
    assert client.post("/api/v1/filters", data=doc(), headers={**ALICE, **YAML}).status_code == 201
    assert client.post("/api/v1/actions/reload", headers=OPS).get_json()["result"] == {"version": 1}


def test_metrics_prometheus_text(client: FlaskClient) -> None:
    client.post("/api/v1/filters", data=doc(), headers={**ALICE, **YAML})
    text = client.get("/metrics").get_data(as_text=True)
    found = samples(text)
    assert found['alertflow_filters{state="active"}'] == 1
    assert found["alertflow_filter_set_version"] == 1
    assert (
        found['alertflow_http_requests_total{method="POST",route="/api/v1/filters",status="201"}']
        == 1
    )
    assert "# TYPE alertflow_http_requests_total counter" in text


def test_openapi_lists_every_route(client: FlaskClient, app: Flask) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    routes = {
        r.rule.replace("<", "{").replace(">", "}")
        for r in app.url_map.iter_rules()
        if r.endpoint != "static"
    }
    documented = set(spec["paths"])
    assert {r.replace("{action}", "{action}") for r in routes} - documented == set()


def test_unknown_route_and_method_use_the_error_shape(client: FlaskClient) -> None:
    assert error_of(client.get("/api/v1/nothing")) == (404, "not_found")
    assert error_of(client.patch("/api/v1/filters")) == (405, "method_not_allowed")


def test_unexpected_error_is_500_without_a_stack_trace(app: Flask) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail")

    response = app.test_client().get("/boom")
    assert error_of(response) == (500, "internal")
    assert "secret" not in response.get_data(as_text=True) and "Traceback" not in response.get_data(
        as_text=True
    )


# --- configuration ----------------------------------------------------------------------------


def test_config_from_yaml_and_env(tmp_path: Path) -> None:
    path = tmp_path / "control.yaml"
    path.write_text(
        "port: 5050\napi_keys:\n  - {token: from-yaml-token, user: carol, role: admin}\n"
    )
    cfg = load_config(
        path, env={"ALERTFLOW_CONTROL_PORT": "6000", "ALERTFLOW_CONTROL_OPEN_READS": "false"}
    )
    assert (cfg.port, cfg.open_reads, cfg.api_keys[0].user) == (6000, False, "carol")
    env_keys = load_config(
        env={"ALERTFLOW_CONTROL_API_KEYS": "longtoken1:dave:admin,longtoken2:erin"}
    )
    assert [(k.user, k.role) for k in env_keys.api_keys] == [("dave", "admin"), ("erin", "user")]
    path.write_text("port: x\ncolour: red\n")
    with pytest.raises(ConfigError, match="colour: unknown field"):
        load_config(path, env={})
    with pytest.raises(ConfigError) as problems:
        load_config(
            env={"ALERTFLOW_CONTROL_PORT": "x", "ALERTFLOW_CONTROL_API_KEYS": "short:u:root"}
        )
    assert {f for f, _ in problems.value.problems} == {"port", "api_keys"}
