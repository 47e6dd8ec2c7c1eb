"""The autoscaler as a service: the common control API, ``/api/v1/scaling`` and the loop.

- :class:`ScalingLoop`: every ``policy.interval_s`` seconds, observe -> decide -> apply through
  the driver. Every step records a decision (``hold`` too) in a bounded history; a failure of
  the driver (or of anything in the step) is recorded as a decision with action ``error`` and
  never stops the loop. ``pause()``/``resume()`` keep the thread but skip the steps;
  ``stop()`` ends the thread and closes the observer.
- ``GET /api/v1/scaling``: the policy (and its version), the loop's state, the TaskManagers
  seen at the last step, the latest observation, the effectiveness check of the last
  scale-up (``last_scale_up``: rates before and after, verdict; null before the first
  scale-up with ``min_gain`` set) and the last decisions, oldest first (``?limit=N``,
  default 50), each with the observation it saw, the action and the reason.
- ``PUT /api/v1/scaling`` (admin token): a new policy, YAML (``application/yaml``) or JSON,
  validated whole; 422 with every problem's line and column, else applied from the next step
  and written to the audit log.
- The common API (:func:`control_service.common.install_common`): kind ``autoscaler``, actions
  ``start`` and ``stop`` (resume and pause the loop), ``/ready`` true when Kafka and Flink
  answer (else 503 with the reason of each), ``/metrics`` with the TaskManager count, the lag
  and the decisions by action.

It starts while Kafka or Flink is down: the loop records each failed observation in its
decisions and the next one that works is used, so it recovers by itself, without a restart.

Build it with :func:`create_app`; ``alertflow autoscale`` runs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Protocol

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client.metrics_core import Metric
from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from control_service.audit import AuditLog
from control_service.auth import (
    ApiKeys,
    Authenticator,
    Principal,
    parse_api_keys,
    require_admin,
    require_read,
)
from control_service.common import (
    Component,
    component,
    install_common,
    iter_issue_dicts,
    package_version,
)
from control_service.errors import bad_request, too_large, unsupported_media_type, validation_failed
from control_service.metrics import gauge, gauges_by
from flink_deploy.autoscaler.decide import (
    Action,
    Autoscaler,
    Decision,
    ScaleUpCheck,
    TaskManager,
    Verdict,
)
from flink_deploy.autoscaler.drivers import Driver
from flink_deploy.autoscaler.observe import Observation
from flink_deploy.autoscaler.policy import (
    DEFAULT_POLICY_FILE,
    MAX_POLICY_BYTES,
    Policy,
    PolicyError,
    load_policy,
    load_policy_data,
)
from flink_deploy.settings import NonEmpty, Port, Settings, split_on
from flink_deploy.stack.config import HOST, StackPorts
from transforms.topics import ALERT_TOPICS

log = logging.getLogger(__name__)
LOOP_EXTENSION = "alertflow.scaling"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
DEFAULT_LIMIT = 50


class Observes(Protocol):
    """What the loop and ``/ready`` need of an observer (:class:`.observe.Observer` fits)."""

    def observe(self) -> Observation: ...

    def kafka_problem(self) -> str | None:
        """Why Kafka cannot be observed now; None if it can."""
        ...

    def flink_problem(self) -> str | None:
        """Why Flink cannot be observed now; None if it can."""
        ...

    def close(self) -> None: ...


# --- configuration ----------------------------------------------------------------------------


class AutoscalerConfig(Settings):
    """The service's settings (the policy is separate: it changes at run time):
    ``ALERTFLOW_AUTOSCALER_<FIELD>`` variables, the API keys from
    ``ALERTFLOW_AUTOSCALER_API_KEYS``, else ``ALERTFLOW_CONTROL_API_KEYS``.

    Kafka and Flink default to the local stack's addresses (``ALERTFLOW_KAFKA_PORT``,
    ``ALERTFLOW_FLINK_REST_PORT``). Raises ConfigError listing every problem.
    """

    model_config = SettingsConfigDict(env_prefix="ALERTFLOW_AUTOSCALER_")

    service_id: NonEmpty = "autoscaler"
    host: NonEmpty = HOST
    port: Port = 5001
    bootstrap_servers: NonEmpty = Field(default_factory=lambda: StackPorts.load().bootstrap_servers)
    flink_rest_url: NonEmpty = Field(default_factory=lambda: StackPorts.load().flink_rest_url)
    group_id: NonEmpty = "alertflow-broker"
    #: In the environment and on the command line: separated by commas.
    topics: Annotated[tuple[str, ...], split_on(","), Field(min_length=1)] = ALERT_TOPICS
    job_name: str | None = None
    max_body_bytes: Annotated[int, Field(ge=1, le=MAX_POLICY_BYTES)] = MAX_POLICY_BYTES
    history: Annotated[int, Field(ge=1)] = 500
    api_keys: ApiKeys = Field(
        (),
        validation_alias=AliasChoices(
            "ALERTFLOW_AUTOSCALER_API_KEYS", "ALERTFLOW_CONTROL_API_KEYS"
        ),
    )
    open_reads: bool = True
    audit_log: Path | None = None


# --- the loop ---------------------------------------------------------------------------------


class ScalingLoop:
    """Observe -> decide -> apply, every ``interval_s`` of the current policy.

    ``clock`` gives the time (seconds since the epoch) used for the decisions' timestamps and
    the cooldowns. :meth:`step` runs one iteration in the caller's thread (tests call it
    directly); :meth:`start` runs steps on a daemon thread until :meth:`stop`.
    """

    def __init__(
        self,
        autoscaler: Autoscaler,
        observer: Observes,
        driver: Driver,
        *,
        history: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.autoscaler = autoscaler
        self.observer = observer
        self.driver = driver
        self.clock = clock
        self.policy_version = 1
        self._history: deque[Decision] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest: Observation | None = None
        self.taskmanagers: tuple[TaskManager, ...] = ()
        self.steps = 0

    @property
    def policy(self) -> Policy:
        return self.autoscaler.policy

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    @property
    def last_scale_up(self) -> ScaleUpCheck | None:
        """The effectiveness check of the last load-driven scale-up (an immutable object)."""
        with self._lock:
            return self.autoscaler.last_scale_up

    def replace_policy(self, policy: Policy) -> int:
        """Use ``policy`` from the next step on; returns the new policy version."""
        with self._lock:
            self.autoscaler.replace_policy(policy)
            self.policy_version += 1
            return self.policy_version

    def decisions(self, limit: int | None = None) -> list[Decision]:
        """The last ``limit`` decisions (all kept if None), oldest first."""
        with self._lock:
            items = list(self._history)
        return items if limit is None else items[-limit:] if limit else []

    def _record(self, decision: Decision) -> Decision:
        with self._lock:
            self._history.append(decision)
        level = logging.INFO if decision.action is not Action.HOLD else logging.DEBUG
        log.log(level, "scaling: %s: %s", decision.action, decision.reason)
        return decision

    def step(self) -> Decision:
        """One observation, one decision, applied; the decision recorded and returned."""
        observation = self.observer.observe()
        now = self.clock()
        self.latest = observation
        self.steps += 1
        try:
            self.taskmanagers = tuple(self.driver.taskmanagers())
        except Exception as error:  # noqa: BLE001 - any driver failure becomes an "error" decision
            n = len(self.taskmanagers)
            return self._record(
                Decision(
                    Action.ERROR,
                    n,
                    f"cannot list the TaskManagers: {type(error).__name__}: {error}",
                    now,
                    n,
                    observation=observation,
                    taskmanagers=self.taskmanagers,
                )
            )
        with self._lock:
            decision = self.autoscaler.decide(observation, self.taskmanagers, now)
            policy = self.autoscaler.policy
        try:
            if decision.action is Action.UP:
                assert decision.profile is not None
                added = self.driver.add(policy.profile(decision.profile))
                decision = replace(decision, taskmanager=added.name)
                self.taskmanagers = (*self.taskmanagers, added)
            elif decision.action is Action.DOWN:
                assert decision.taskmanager is not None
                self.driver.remove(decision.taskmanager)
                self.taskmanagers = tuple(
                    tm for tm in self.taskmanagers if tm.name != decision.taskmanager
                )
        except Exception as error:  # noqa: BLE001 - any driver failure becomes an "error" decision
            decision = replace(
                decision,
                action=Action.ERROR,
                target_count=decision.current_count,
                reason=f"{decision.reason}; the driver failed to scale "
                f"{decision.action}: {type(error).__name__}: {error}",
            )
        return self._record(decision)

    def _run(self) -> None:
        while not self._stop.wait(self.policy.interval_s):
            if self._paused.is_set():
                continue
            try:
                self.step()
            except Exception:
                log.exception("scaling: the step failed; the loop goes on")

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the scaling loop is already running")
        self._thread = threading.Thread(target=self._run, name="scaling-loop", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ends the thread after the step in progress, then closes the observer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise TimeoutError(f"the scaling loop did not stop within {timeout_s} s")
            self._thread = None
        self.observer.close()


# --- the component ----------------------------------------------------------------------------


class AutoscalerComponent(Component):
    """The autoscaler for the common API: start/stop resume and pause the loop."""

    def __init__(self, loop: ScalingLoop, config: AutoscalerConfig) -> None:
        super().__init__(
            config.service_id,
            "autoscaler",
            package_version(),
            {
                "openapi": "/api/v1/openapi.json",
                "scaling": "/api/v1/scaling",
                "flink": config.flink_rest_url,
            },
        )
        self.loop = loop
        self.config = config
        self.state = "stopped" if loop.paused else "running"
        self.actions = {"start": self._start, "stop": self._stop}

    def _start(self, _principal: Principal) -> Mapping[str, Any]:
        self.loop.resume()
        self.state = "running"
        return {"scaling": True}

    def _stop(self, _principal: Principal) -> Mapping[str, Any]:
        self.loop.pause()
        self.state = "stopped"
        return {"scaling": False}

    def status(self) -> dict[str, Any]:
        return {**super().status(), "policy_version": self.loop.policy_version}

    def readiness(self) -> Mapping[str, str | None]:
        return {
            "kafka": self.loop.observer.kafka_problem(),
            "flink": self.loop.observer.flink_problem(),
        }

    def get_config(self) -> Mapping[str, Any]:
        return self.config.public_view()

    def metric_families(self) -> Iterable[Metric]:
        yield gauge(
            "alertflow_autoscaler_taskmanagers",
            "TaskManagers the driver reported at the last step",
            len(self.loop.taskmanagers),
        )
        latest = self.loop.latest
        if latest is not None and latest.lag_total is not None:
            yield gauge(
                "alertflow_autoscaler_lag",
                "Consumer lag at the last observation (records)",
                latest.lag_total,
            )
        counts = Counter(decision.action for decision in self.loop.decisions())
        yield gauges_by(
            "alertflow_autoscaler_decisions",
            "Decisions in the kept history, by action",
            "action",
            {action.value: counts[action] for action in Action},
        )
        yield gauge(
            "alertflow_autoscaler_policy_version",
            "Version of the scaling policy",
            self.loop.policy_version,
        )

    def openapi(self) -> Mapping[str, Any]:
        return autoscaler_spec(self.version)


# --- /api/v1/scaling --------------------------------------------------------------------------

scaling_bp = Blueprint("scaling", __name__, url_prefix="/api/v1/scaling")


def _loop() -> ScalingLoop:
    loop: ScalingLoop = current_app.extensions[LOOP_EXTENSION]
    return loop


def scaling_view(loop: ScalingLoop, limit: int | None) -> dict[str, Any]:
    return {
        "policy_version": loop.policy_version,
        "policy": loop.policy.to_dict(),
        "state": "paused" if loop.paused else "running",
        "taskmanagers": [tm.to_dict() for tm in loop.taskmanagers],
        "observation": loop.latest.to_dict() if loop.latest else None,
        "last_scale_up": check.to_dict() if (check := loop.last_scale_up) else None,
        "decisions": [d.to_dict() for d in loop.decisions(limit)],
    }


@scaling_bp.get("")
def get_scaling() -> Response:
    require_read()
    return jsonify(scaling_view(_loop(), _limit(request.args.get("limit", str(DEFAULT_LIMIT)))))


def _limit(raw: str) -> int | None:
    """``?limit=``: ASCII digits (``str.isdigit`` also takes "²", which int() refuses); more
    digits than any history holds means every decision (int() refuses over 4300 digits)."""
    if not (raw.isascii() and raw.isdigit()):
        raise bad_request("limit must be a non-negative integer", parameter="limit")
    digits = raw.lstrip("0") or "0"
    return int(digits) if len(digits) <= 9 else None


def _policy_from_body() -> Policy:
    """The request body as a policy; 413/415/400/422 as the case may be."""
    limit = component().config.max_body_bytes  # type: ignore[attr-defined]
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise too_large(f"a policy may be at most {limit} bytes", limit=limit)
    if not raw.strip():
        raise bad_request("the body is empty; send the whole policy")
    try:
        if request.is_json:
            data = request.get_json(silent=True)
            if not isinstance(data, dict):
                raise bad_request("the body must be a JSON object (the whole policy)")
            return load_policy_data(data)
        if request.mimetype in YAML_TYPES:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise bad_request("the body is not UTF-8") from None
            return load_policy(text, source="<request>")
    except PolicyError as error:
        raise validation_failed(
            f"the policy has {len(error.issues)} problem(s); nothing was changed",
            iter_issue_dicts(error.issues),
        ) from None
    raise unsupported_media_type(
        "send application/yaml or application/json", content_type=request.content_type or ""
    )


@scaling_bp.put("")
def put_scaling() -> Response:
    principal = require_admin()
    policy = _policy_from_body()
    loop = _loop()
    old = loop.policy_version
    new = loop.replace_policy(policy)
    comp = component()
    comp.audit.write(principal, "scaling.policy.put", comp.id, old, new, policy=policy.to_dict())
    return jsonify(scaling_view(loop, DEFAULT_LIMIT))


# --- OpenAPI ----------------------------------------------------------------------------------

SCALING_SCHEMAS: dict[str, Any] = {
    "TaskManager": {
        "type": "object",
        "required": ["name", "profile"],
        "properties": {"name": {"type": "string"}, "profile": {"type": "string"}},
    },
    "Observation": {
        "type": "object",
        "required": ["timestamp", "lag_total", "lag_by_topic", "parallelism", "errors"],
        "properties": {
            "timestamp": {"type": "number"},
            "lag_total": {"type": ["integer", "null"]},
            "lag_by_topic": {"type": "object", "additionalProperties": {"type": "integer"}},
            "records_in_per_s": {"type": ["number", "null"]},
            "records_out_per_s": {"type": ["number", "null"]},
            "busy_max_ms_per_s": {"type": ["number", "null"]},
            "backpressure_max_ms_per_s": {"type": ["number", "null"]},
            "job_id": {"type": ["string", "null"]},
            "job_state": {"type": ["string", "null"]},
            "parallelism": {"type": "integer"},
            "tasks_running": {"type": "integer"},
            "tasks_total": {"type": "integer"},
            "taskmanagers": {"type": ["integer", "null"]},
            "slots_total": {"type": ["integer", "null"]},
            "slots_available": {"type": ["integer", "null"]},
            "checkpointed_since_restore": {"type": ["boolean", "null"]},
            "errors": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ScaleUpCheck": {
        "type": "object",
        "description": "whether the last load-driven scale-up raised the throughput "
        "(records out/s, alerts/s) by at least min_gain",
        "required": [
            "decided_at",
            "taskmanagers_before",
            "taskmanagers_after",
            "parallelism_before",
            "min_gain",
            "rate_before_per_s",
            "rate_after_per_s",
            "observations_after",
            "verdict",
            "reason",
            "judged_at",
            "blocked_until",
        ],
        "properties": {
            "decided_at": {"type": "number"},
            "taskmanagers_before": {"type": "integer"},
            "taskmanagers_after": {"type": "integer"},
            "parallelism_before": {"type": "integer"},
            "min_gain": {"type": "number"},
            "rate_before_per_s": {"type": ["number", "null"]},
            "rate_after_per_s": {"type": ["number", "null"]},
            "observations_after": {"type": "integer"},
            "verdict": {"type": "string", "enum": [v.value for v in Verdict]},
            "reason": {"type": "string"},
            "judged_at": {"type": ["number", "null"]},
            "blocked_until": {"type": ["number", "null"]},
        },
    },
    "Decision": {
        "type": "object",
        "required": ["timestamp", "action", "reason", "current_count", "target_count"],
        "properties": {
            "timestamp": {"type": "number"},
            "action": {"type": "string", "enum": [a.value for a in Action]},
            "reason": {"type": "string"},
            "profile": {"type": ["string", "null"]},
            "taskmanager": {"type": ["string", "null"]},
            "current_count": {"type": "integer"},
            "target_count": {"type": "integer"},
            "taskmanagers": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/TaskManager"},
            },
            "observation": {
                "oneOf": [{"$ref": "#/components/schemas/Observation"}, {"type": "null"}]
            },
        },
    },
    "Scaling": {
        "type": "object",
        "required": [
            "policy_version",
            "policy",
            "state",
            "taskmanagers",
            "observation",
            "last_scale_up",
            "decisions",
        ],
        "properties": {
            "policy_version": {"type": "integer"},
            "policy": {"type": "object"},
            "state": {"type": "string", "enum": ["running", "paused"]},
            "taskmanagers": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/TaskManager"},
            },
            "observation": {
                "oneOf": [{"$ref": "#/components/schemas/Observation"}, {"type": "null"}]
            },
            "last_scale_up": {
                "oneOf": [{"$ref": "#/components/schemas/ScaleUpCheck"}, {"type": "null"}]
            },
            "decisions": {"type": "array", "items": {"$ref": "#/components/schemas/Decision"}},
        },
    },
}


def scaling_paths() -> dict[str, Any]:
    from control_service.openapi import BEARER, OPTIONAL_BEARER, _errors, _json, _ref

    example = DEFAULT_POLICY_FILE.read_text("utf-8")  # the shipped default: accepted as is
    return {
        "/api/v1/scaling": {
            "get": {
                "operationId": "getScaling",
                "summary": "policy, TaskManagers, latest observation, last decisions",
                "security": OPTIONAL_BEARER,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    }
                ],
                "responses": {
                    "200": _json(_ref("Scaling"), "the autoscaler's state"),
                    **_errors("400", "401"),
                },
            },
            "put": {
                "operationId": "putScaling",
                "summary": "replace the policy; validated whole",
                "security": BEARER,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/yaml": {"schema": {"type": "string"}, "example": example},
                        "application/json": {
                            "schema": {"type": "object"},
                            "example": load_policy(example).to_dict(),
                        },
                    },
                },
                "responses": {
                    "200": _json(_ref("Scaling"), "applied from the next step"),
                    **_errors("400", "401", "403", "413", "415", "422"),
                },
            },
        },
    }


def autoscaler_spec(version: str) -> dict[str, Any]:
    """The autoscaler's OpenAPI document: the common API plus ``/api/v1/scaling``."""
    from control_service.openapi import common_spec

    spec = common_spec("autoscaler", version)
    spec["paths"] = {**spec["paths"], **scaling_paths()}
    spec["components"] = {
        **spec["components"],
        "schemas": {**spec["components"]["schemas"], **SCALING_SCHEMAS},
    }
    return spec


# --- the app ----------------------------------------------------------------------------------


def create_app(
    policy: Policy,
    observer: Observes,
    driver: Driver,
    config: AutoscalerConfig | None = None,
    *,
    clock: Callable[[], float] = time.time,
    start_loop: bool = False,
) -> Flask:
    """The autoscaler's Flask app; the loop is ``app.extensions["alertflow.scaling"]``.

    ``start_loop`` starts its thread (the CLI does; tests drive ``loop.step()`` themselves).
    The caller stops it with ``loop.stop()``.
    """
    config = config or AutoscalerConfig()
    app = Flask("autoscaler")
    loop = ScalingLoop(Autoscaler(policy), observer, driver, history=config.history, clock=clock)
    app.extensions[LOOP_EXTENSION] = loop
    install_common(
        app,
        AutoscalerComponent(loop, config),
        Authenticator(config.api_keys, config.open_reads),
        config.max_body_bytes,
        AuditLog(config.audit_log),
    )
    app.register_blueprint(scaling_bp)
    if start_loop:
        loop.start()
    return app


__all__ = ["AutoscalerConfig", "ScalingLoop", "autoscaler_spec", "create_app", "parse_api_keys"]
