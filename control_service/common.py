"""The common control API that every alertflow service mounts (DESIGN.md section 4).

* ``GET /health``: the process answers; ``GET /ready``: its dependencies answer (503 if not,
  with the reason of each that does not: ``{ready, checks: {name: bool}, reasons: {name: why}}``);
* ``GET /api/v1/status``: ``{id, kind, version, state, started_at, config_version, links}``;
* ``GET /api/v1/config``; ``PUT /api/v1/config`` (admin): validated, applied whole or not at all;
* ``POST /api/v1/actions/<action>`` (admin): the actions the component supports (404 otherwise);
* ``GET /metrics``: Prometheus text (request counters and latency, plus the component's own;
  control_service/metrics.py);
* ``GET /api/v1/openapi.json``: the service's OpenAPI 3 spec.

A service describes itself with a :class:`Component` and calls :func:`install_common` in its
``create_app``; the blueprint finds the component in ``app.extensions``. The JSON error shape,
the body-size limit and bearer-token checks come with it.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client.metrics_core import Metric
from werkzeug.serving import BaseWSGIServer

from control_service.audit import AuditLog
from control_service.auth import EXTENSION as AUTH_EXTENSION
from control_service.auth import Authenticator, Principal, require_admin, require_read
from control_service.config import ConfigError
from control_service.errors import (
    ApiError,
    bad_request,
    not_found,
    register_error_handlers,
    too_large,
    unsupported_media_type,
    validation_failed,
)
from control_service.metrics import Metrics

COMPONENT_EXTENSION = "alertflow.component"
STATES = ("starting", "running", "stopped", "draining", "degraded")

control = Blueprint("control", __name__)


class Component:
    """What a service tells the common API about itself. Subclass and override what applies.

    ``actions`` maps an action name (``start``, ``stop``, ``drain``, ...) to a callable taking the
    admin principal and returning a JSON-able result.
    """

    def __init__(
        self, id: str, kind: str, version: str, links: Mapping[str, str] | None = None
    ) -> None:
        self.id = id
        self.kind = kind
        self.version = version
        self.links = dict(links or {})
        self.state = "starting"
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.config_version = 1
        self.metrics = Metrics(id, kind, version, self.metric_families)
        self.audit = AuditLog(None)
        self.actions: dict[str, Callable[[Principal], Mapping[str, Any]]] = {}

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "version": self.version,
            "state": self.state,
            "started_at": self.started_at,
            "config_version": self.config_version,
            "links": self.links,
        }

    def readiness(self) -> Mapping[str, str | None]:
        """Each dependency and why it cannot serve now (None: it can); ready when all can.

        Called on every ``GET /ready``: keep it to short timeouts (a service whose dependency is
        down must still answer, DESIGN.md section 4)."""
        return {}

    def get_config(self) -> Mapping[str, Any]:
        return {}

    def put_config(self, changes: Mapping[str, Any]) -> Mapping[str, Any]:
        """Validate and apply ``changes`` whole; raise ConfigError listing every problem."""
        raise ConfigError(
            [(name, "cannot be changed at run time") for name in changes]
            or [("config", "nothing to change")]
        )

    def metric_families(self) -> Iterable[Metric]:
        """The component's own metrics, read from its state at each scrape (override)."""
        return ()

    def openapi(self) -> Mapping[str, Any]:
        from control_service.openapi import common_spec

        return common_spec(self.kind)


def package_version() -> str:
    """The installed alertflow version every service reports in its status."""
    try:
        return metadata.version("alertflow")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def component() -> Component:
    found: Component = current_app.extensions[COMPONENT_EXTENSION]
    return found


def json_body(kind: type = dict) -> Any:
    """The request's JSON body, which must be a ``kind``; 415/400 otherwise."""
    if not request.is_json:
        raise unsupported_media_type(
            "send application/json", content_type=request.content_type or ""
        )
    data = request.get_json(silent=True)
    if data is None and request.get_data():
        raise bad_request("the body is not valid JSON")
    if not isinstance(data, kind):
        raise bad_request(f"the body must be a JSON {'object' if kind is dict else 'array'}")
    return data


@control.get("/health")
def health() -> Response:
    return jsonify({"status": "ok"})


@control.get("/ready")
def ready() -> tuple[Response, int]:
    problems = dict(component().readiness())
    reasons = {name: why for name, why in problems.items() if why is not None}
    checks = {name: name not in reasons for name in problems}
    ok = not reasons
    return jsonify({"ready": ok, "checks": checks, "reasons": reasons}), 200 if ok else 503


@control.get("/api/v1/status")
def status() -> Response:
    require_read()
    return jsonify(component().status())


@control.get("/api/v1/config")
def get_config() -> Response:
    require_read()
    comp = component()
    return jsonify({"config_version": comp.config_version, "config": comp.get_config()})


@control.put("/api/v1/config")
def put_config() -> Response:
    principal = require_admin()
    changes = json_body(dict)
    comp = component()
    old = comp.config_version
    try:
        applied = comp.put_config(changes)
    except ConfigError as error:
        raise validation_failed(
            "the configuration was rejected whole; nothing changed",
            [{"field": f, "message": m} for f, m in error.problems],
        ) from None
    comp.config_version += 1
    comp.audit.write(
        principal, "config.put", comp.id, old, comp.config_version, changes=sorted(changes)
    )
    return jsonify({"config_version": comp.config_version, "config": applied})


@control.post("/api/v1/actions/<action>")
def run_action(action: str) -> Response:
    principal = require_admin()
    comp = component()
    handler = comp.actions.get(action)
    if handler is None:
        raise not_found(
            f"{comp.kind} does not support the action {action!r}", supported=sorted(comp.actions)
        )
    before = comp.state
    result = dict(handler(principal))
    comp.audit.write(principal, f"action.{action}", comp.id, before, comp.state)
    return jsonify({"action": action, "state": comp.state, "result": result})


@control.get("/metrics")
def metrics() -> Response:
    body, content_type = component().metrics.exposition(request.headers.get("Accept"))
    return Response(body, content_type=content_type)


@control.get("/api/v1/openapi.json")
def openapi() -> Response:
    return jsonify(component().openapi())


def _before() -> None:
    g.started = time.perf_counter()
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and request.content_length is not None and request.content_length > limit:
        raise too_large(
            f"the body is {request.content_length} bytes; the limit is {limit}", limit=limit
        )


def _after(response: Response) -> Response:
    comp = current_app.extensions.get(COMPONENT_EXTENSION)
    if comp is not None:
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        comp.metrics.request_done(request.method, route, response.status_code, elapsed)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def install_common(
    app: Flask,
    comp: Component,
    authenticator: Authenticator,
    max_body_bytes: int,
    audit: AuditLog | None = None,
) -> None:
    """Mount the common control API on ``app`` for ``comp``; every service calls this once."""
    if audit is not None:
        comp.audit = audit
    app.extensions[COMPONENT_EXTENSION] = comp
    app.extensions[AUTH_EXTENSION] = authenticator
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    register_error_handlers(app)
    app.before_request(_before)
    app.after_request(_after)
    app.register_blueprint(control)


def iter_issue_dicts(issues: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {"line": i.line, "column": i.column, "path": i.path, "message": i.message} for i in issues
    ]


__all__ = ["ApiError", "Component", "control", "install_common", "json_body"]


def start_logging() -> None:
    """Every service's log: INFO and up on stderr, timestamped, librdkafka's lines
    (transforms/kafka_clients.py) among ours."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def serve_until_stopped(server: BaseWSGIServer) -> None:
    """Serve until Ctrl-C or SIGTERM (both stop it the same way), then close the socket."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
