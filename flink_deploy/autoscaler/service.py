"""The autoscaler as a service: the common control API around the scaling loop, and
``/api/v1/scaling``.

- The loop (:class:`.loop.ScalingLoop`): observe -> decide -> apply, every
  ``policy.interval_s`` seconds; every step a decision, kept in a bounded history.
- ``/api/v1/scaling`` (:mod:`.scaling_api`): the state (``GET``) and the policy (``PUT``).
- The common API (:func:`control_service.common.install_common`): kind ``autoscaler``, actions
  ``start`` and ``stop`` (resume and pause the loop), ``/ready`` true when Kafka and Flink
  answer (else 503 with the reason of each), ``/metrics`` with the TaskManager count, the lag
  and the decisions by action; the spec is :func:`.api_models.autoscaler_spec`.

It starts while Kafka or Flink is down: the loop records each failed observation in its
decisions and the next one that works is used, so it recovers by itself, without a restart.

Build it with :func:`create_app`; ``alertflow autoscale`` runs it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

from flask import Flask
from prometheus_client.metrics_core import Metric
from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from control_service.audit import AuditLog
from control_service.auth import ApiKeys, Authenticator, Principal, parse_api_keys
from control_service.common import Component, install_common, package_version
from control_service.metrics import gauge, gauges_by
from flink_deploy.autoscaler.api_models import autoscaler_spec
from flink_deploy.autoscaler.decide import Autoscaler
from flink_deploy.autoscaler.drivers import Driver
from flink_deploy.autoscaler.loop import Observes, ScalingLoop
from flink_deploy.autoscaler.model import Action, Policy
from flink_deploy.autoscaler.policy import MAX_POLICY_BYTES
from flink_deploy.autoscaler.scaling_api import LOOP_EXTENSION, scaling_bp
from flink_deploy.settings import NonEmpty, Port, Settings, split_on
from flink_deploy.stack.config import HOST, StackPorts
from transforms.topics import ALERT_TOPICS

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


__all__ = ["AutoscalerComponent", "AutoscalerConfig", "create_app", "parse_api_keys"]
