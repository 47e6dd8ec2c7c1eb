"""The control service: ``create_app(config=None)`` builds the Flask application.

Blueprints: the common control API (control_service.common), ``/api/v1/filters``,
``/api/v1/jobs`` and ``/api/v1/components``. ``store``, ``flink`` and ``submit`` replace the Kafka
filter store, the Flink REST client and the pipeline submitter (tests, other deployments).

The store is read from the config topics before the app is returned if Kafka answers. If it
does not, the app starts all the same: ``/health`` answers, ``/ready`` is 503 with the reason,
every read and change of the filters is 503, and the store keeps trying in the background
(:meth:`.store.FilterStore.load_or_retry`) until it has read the topics; then it is ready.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from flask import Flask
from prometheus_client.metrics_core import Metric

from control_service.audit import AuditLog
from control_service.auth import Authenticator, Principal
from control_service.common import Component, install_common, package_version
from control_service.components_api import components_bp
from control_service.config import ControlConfig, load_config
from control_service.filters_api import (
    REFERENCE_EXTENSION,
    STORE_EXTENSION,
    ReferenceAlerts,
    filters_bp,
)
from control_service.jobs_api import (
    FLINK_EXTENSION,
    SUBMIT_EXTENSION,
    jobs_bp,
    register_flink_errors,
    submit_broker,
)
from control_service.metrics import counter, gauge, gauges_by
from control_service.snapshots import KafkaSnapshotLog
from control_service.store import FilterStore
from flink_deploy.flink_rest import FlinkRest

CONFIG_EXTENSION = "alertflow.config"
AUDIT_EXTENSION = "alertflow.audit"


class ControlComponent(Component):
    """The control service as a component: start/stop accept or refuse changes; reload re-reads."""

    def __init__(self, app: Flask, config: ControlConfig, store: FilterStore) -> None:
        super().__init__(
            config.service_id,
            "control-service",
            package_version(),
            {
                "openapi": "/api/v1/openapi.json",
                "filters": "/api/v1/filters",
                "jobs": "/api/v1/jobs",
                "components": "/api/v1/components",
                "flink": config.flink_rest_url,
            },
        )
        self.app = app
        self.store = store
        self.state = "running"
        self.actions = {"start": self._start, "stop": self._stop, "reload": self._reload}

    @property
    def config(self) -> ControlConfig:
        config: ControlConfig = self.app.extensions[CONFIG_EXTENSION]
        return config

    def _start(self, _principal: Principal) -> Mapping[str, Any]:
        self.state = "running"
        return {"accepting_changes": True}

    def _stop(self, _principal: Principal) -> Mapping[str, Any]:
        self.state = "stopped"
        return {"accepting_changes": False}

    def _reload(self, _principal: Principal) -> Mapping[str, Any]:
        return {"version": self.store.reload()}

    def status(self) -> dict[str, Any]:
        version = self.store.version if self.store.loaded else None  # unknown until read
        return {**super().status(), "filter_set_version": version}

    def readiness(self) -> Mapping[str, str | None]:
        return {"config_topic": self.store.problem()}

    def get_config(self) -> Mapping[str, Any]:
        return self.config.public_view()

    def put_config(self, changes: Mapping[str, Any]) -> Mapping[str, Any]:
        new = self.config.with_changes(changes)
        self.app.extensions[CONFIG_EXTENSION] = new
        self.app.extensions["alertflow.auth"].open_reads = new.open_reads
        self.app.config["MAX_CONTENT_LENGTH"] = new.max_body_bytes
        logging.getLogger("control_service").setLevel(new.log_level)
        return new.public_view()

    def metric_families(self) -> Iterable[Metric]:
        if not self.store.loaded:
            return  # nothing is known of the filters yet
        active, inactive = self.store.counts()
        yield gauges_by(
            "alertflow_filters",
            "Filters in the store by state",
            "state",
            {"active": active, "inactive": inactive},
        )
        yield gauge(
            "alertflow_filter_set_version", "Version of the filter-set snapshot", self.store.version
        )
        yield counter(
            "alertflow_filter_changes", "Filter changes published since start", self.store.changes
        )

    def openapi(self) -> Mapping[str, Any]:
        from control_service.control_models import control_spec

        return control_spec(self.version)


def kafka_store(config: ControlConfig, audit: AuditLog) -> FilterStore:
    active = KafkaSnapshotLog(config.bootstrap_servers, config.config_topic, config.kafka_timeout_s)
    inactive = KafkaSnapshotLog(
        config.bootstrap_servers, config.inactive_topic, config.kafka_timeout_s
    )
    return FilterStore(active, inactive, audit)


def create_app(
    config: ControlConfig | None = None,
    *,
    store: FilterStore | None = None,
    flink: FlinkRest | None = None,
    submit: Callable[[Sequence[str]], Any] | None = None,
) -> Flask:
    config = config or load_config()
    logging.getLogger("control_service").setLevel(config.log_level)
    app = Flask("control_service")
    audit = store.audit if store is not None else AuditLog(config.audit_log)
    store = store or kafka_store(config, audit)
    if not store.loaded:
        store.load_or_retry()
    app.extensions[CONFIG_EXTENSION] = config
    app.extensions[AUDIT_EXTENSION] = audit
    app.extensions[STORE_EXTENSION] = store
    app.extensions[REFERENCE_EXTENSION] = ReferenceAlerts(
        config.reference_alerts, config.reference_max_alerts
    )
    app.extensions[FLINK_EXTENSION] = flink or FlinkRest(
        config.flink_rest_url, config.flink_timeout_s
    )
    app.extensions[SUBMIT_EXTENSION] = submit or submit_broker
    install_common(
        app,
        ControlComponent(app, config, store),
        Authenticator(config.api_keys, config.open_reads),
        config.max_body_bytes,
        audit,
    )
    app.register_blueprint(filters_bp)
    app.register_blueprint(jobs_bp)
    app.register_blueprint(components_bp)
    register_flink_errors(app)
    return app
