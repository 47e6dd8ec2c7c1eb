"""The replay producer as a service: the common control API around replay's sending loop.

``alertflow replay --serve`` (127.0.0.1:5002 by default) runs it. Everything is the common
control API (:func:`control_service.common.install_common`), kind ``replay``:

- ``GET``/``PUT /api/v1/config`` (PUT: admin): the replay settings
  (:class:`.replay_models.ReplaySettings`). A PUT merges its keys over the current settings
  and validates the result whole (unknown keys, types, ranges, every file, or the alert files
  under a directory, read and decoded with :func:`.replay_engine.load_files`, fresh ids
  possible if cycling is needed); 422 listing every problem, else applied from the next start.
- ``POST /api/v1/actions/start``: sends with the current settings on a background thread
  (state ``starting``, then ``running``, then ``stopped`` when done); 409 if a replay runs, if no
  files are set or once drained; 503 with the reason if Kafka does not answer at
  ``bootstrap_servers``.
- ``POST /api/v1/actions/stop``: the sending stops after the current message, the producer is
  flushed, and the answer carries the final progress; 409 if nothing runs.
- ``POST /api/v1/actions/drain``: no start is accepted any more; a running replay is stopped
  as by ``stop`` (state ``draining`` meanwhile) and flushed; then ``stopped``.
- ``GET /api/v1/status``: the common fields plus ``accepting`` and ``progress`` (the last or
  current run: sent, delivered, failed deliveries, bytes, achieved rate, current visit).
- ``GET /metrics``: ``alertflow_replay_sent_total``, ``_delivered_total``, ``_failed_total``,
  ``_bytes_total``, ``_runs_total`` (over every run), ``alertflow_replay_rate`` and
  ``alertflow_replay_visit`` (the last or current run), ``alertflow_replay_running``.
- ``GET /ready``: Kafka answers at the configured bootstrap servers (else 503 with the reason).
  Each call asks anew, so the service is ready as soon as Kafka is; it starts without Kafka.

The sending itself is :class:`.replay_engine.Sender`, the loop the one-shot command runs.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, TextIO

from flask import Flask
from prometheus_client.metrics_core import Metric
from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from control_service.audit import AuditLog
from control_service.auth import ApiKeys, Authenticator, Principal
from control_service.common import (
    Component,
    install_common,
    package_version,
    serve_until_stopped,
    start_logging,
)
from control_service.config import ConfigError
from control_service.errors import conflict, unavailable
from control_service.metrics import counter, gauge
from control_service.replay_engine import (
    DEFAULT_TOPICS,
    Schedule,
    Sender,
    kafka_producer,
    plan_count,
)
from control_service.replay_messages import ReplayError, ReplayMessage, check_fresh_ids, load_files
from control_service.replay_models import (
    KIND,
    ReplayProgress,
    ReplaySettings,
    replay_spec,
    settings_from,
)
from flink_deploy.settings import NonEmpty, Port, Settings
from flink_deploy.stack.config import HOST
from transforms.alert_model import Survey
from transforms.kafka_clients import kafka_problem
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas

MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class Prepared:
    """Settings checked against the files: the messages, how many to send, where and when."""

    settings: ReplaySettings
    messages: Sequence[ReplayMessage]
    count: int
    schedule: Schedule
    topics: Mapping[Survey, str]


def prepare(settings: ReplaySettings, schemas: LsstSchemas) -> Prepared | None:
    """Load and check the files of ``settings`` (a directory: the alert files under it); None if
    there are none. ConfigError listing every file that does not exist or decode, or alerts
    without a topic: unlike the one-shot command, the service sends all the files or none."""
    if not settings.files:
        return None
    problems: list[tuple[str, str]] = []
    messages: list[ReplayMessage] = []
    for index, name in enumerate(settings.files):
        loaded = load_files([Path(name)], schemas)
        problems += [(f"files[{index}]", str(problem)) for problem in loaded.problems]
        messages += loaded.messages
    if problems:
        raise ConfigError(problems)
    schedule = Schedule(settings.rate, settings.visit_size, settings.visit_interval)
    count = plan_count(
        argparse.Namespace(
            count=settings.count, visit_size=settings.visit_size, visits=settings.visits
        ),
        len(messages),
    )
    try:
        check_fresh_ids(messages, count, schemas)
    except ReplayError as error:
        raise ConfigError([("files", f"cannot cycle with fresh ids: {error}")]) from None
    surveys = {m.survey for m in messages}
    if settings.topic is not None:
        topics = dict.fromkeys(surveys, settings.topic)
    elif settings.topics is not None:
        topics = {s: settings.topics[s.value] for s in surveys if s.value in settings.topics}
        missing = sorted(s.value for s in surveys - set(topics))
        if missing:
            raise ConfigError([("topics", f"no topic for the {', '.join(missing)} alerts")])
    else:
        topics = {s: DEFAULT_TOPICS[s] for s in surveys}
    return Prepared(settings, messages, count, schedule, topics)


class ReplayServiceConfig(Settings):
    """The service's own settings (start-up only; ``ALERTFLOW_REPLAY_<FIELD>`` variables, the
    API keys from ``ALERTFLOW_REPLAY_API_KEYS``, else ``ALERTFLOW_CONTROL_API_KEYS``); the
    replay settings are separate."""

    model_config = SettingsConfigDict(env_prefix="ALERTFLOW_REPLAY_")

    service_id: NonEmpty = "replay"
    host: NonEmpty = HOST
    port: Port = 5002
    schema_dir: Path = DEFAULT_LSST_SCHEMA_DIR
    registry_url: str | None = None
    api_keys: ApiKeys = Field(
        (),
        validation_alias=AliasChoices("ALERTFLOW_REPLAY_API_KEYS", "ALERTFLOW_CONTROL_API_KEYS"),
    )
    open_reads: bool = True
    max_body_bytes: Annotated[int, Field(ge=1)] = MAX_BODY_BYTES
    flush_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    audit_log: Path | None = None


class ReplayComponent(Component):
    """The replay producer for the common API: settings, start/stop/drain, progress."""

    #: The sender's totals, summed over every run for /metrics, and what each counts.
    COUNTERS: ClassVar[Mapping[str, str]] = {
        "sent": "Alerts produced, over every run",
        "delivered": "Alerts Kafka acknowledged, over every run",
        "failed": "Delivery failures (and alerts left unflushed), over every run",
        "bytes": "Bytes of the alerts produced, over every run",
    }

    def __init__(
        self,
        config: ReplayServiceConfig,
        settings: ReplaySettings,
        *,
        producer_factory: Callable[[str], Any] = kafka_producer,
        kafka_check: Callable[[str], str | None] = kafka_problem,
    ) -> None:
        super().__init__(
            config.service_id, KIND, package_version(), {"openapi": "/api/v1/openapi.json"}
        )
        self.config = config
        self.schemas = LsstSchemas(config.schema_dir, registry_url=config.registry_url)
        self.producer_factory = producer_factory
        self.kafka_check = kafka_check
        self.settings = settings
        self.prepared = prepare(settings, self.schemas)
        self.state = "stopped"
        self.accepting = True
        self.runs = 0
        self.sender: Sender | None = None
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._totals = dict.fromkeys(self.COUNTERS, 0)
        self.actions = {"start": self._start, "stop": self._stop, "drain": self._drain}

    # --- config -------------------------------------------------------------------------------

    def get_config(self) -> Mapping[str, Any]:
        return self.settings.to_dict()

    def put_config(self, changes: Mapping[str, Any]) -> Mapping[str, Any]:
        settings = settings_from({**self.settings.to_dict(), **changes})
        prepared = prepare(settings, self.schemas)
        with self._lock:
            self.settings, self.prepared = settings, prepared
        return settings.to_dict()

    # --- actions ------------------------------------------------------------------------------

    def _startable(self) -> Prepared:
        """What a start would send; 409 if the service cannot start (call with the lock)."""
        if not self.accepting:
            raise conflict("the replay service is drained; it accepts no new start")
        if self.state in ("starting", "running", "draining"):
            raise conflict(f"a replay is already {self.state}; stop it first", state=self.state)
        if self.prepared is None:
            raise conflict("no files to send; PUT /api/v1/config with files first")
        return self.prepared

    def _start(self, _principal: Principal) -> Mapping[str, Any]:
        with self._lock:
            bootstrap = self._startable().settings.bootstrap_servers
        # Asked without the lock: a Kafka that is down takes the probe's whole timeout.
        problem = self.kafka_check(bootstrap)
        if problem is not None:
            raise unavailable(f"{problem}; start again once it does", bootstrap_servers=bootstrap)
        with self._lock:
            prepared = self._startable()  # again: the state may have changed meanwhile
            try:
                producer = self.producer_factory(prepared.settings.bootstrap_servers)
            except Exception as error:  # noqa: BLE001 - any client failure answers 503
                raise unavailable(f"cannot create the Kafka producer: {error}") from None
            sender = Sender(
                producer,
                prepared.messages,
                prepared.count,
                self.schemas,
                prepared.schedule,
                prepared.topics,
                flush_timeout_s=self.config.flush_timeout_s,
            )
            self.sender, self.error = sender, None
            self.runs += 1
            self.state = "starting"
            self._thread = threading.Thread(
                target=self._send, args=(sender,), name=f"replay-{self.runs}", daemon=True
            )
            self._thread.start()
        return {"run": self.runs, "total": prepared.count}

    def _send(self, sender: Sender) -> None:
        with self._lock:
            if self.state == "starting":
                self.state = "running"
        try:
            sender.run()
        except Exception as error:  # noqa: BLE001 - the run's failure goes to status, not away
            self.error = f"{type(error).__name__}: {error}"
        with self._lock:
            for name in self.COUNTERS:
                self._totals[name] += getattr(sender, name)
            if self.error is not None:
                self.state = "degraded"
            elif self.state != "draining":
                self.state = "stopped"

    def _wait(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(self.config.flush_timeout_s + 30)
            if thread.is_alive():
                raise unavailable("the producer did not flush in time", state=self.state)

    def _stop(self, _principal: Principal) -> Mapping[str, Any]:
        with self._lock:
            if self.state not in ("starting", "running") or self.sender is None:
                raise conflict(f"no replay is running (state {self.state})", state=self.state)
            self.sender.stop()
        self._wait()
        return self.progress() or {}

    def _drain(self, _principal: Principal) -> Mapping[str, Any]:
        with self._lock:
            self.accepting = False
            running = self.state in ("starting", "running") and self.sender is not None
            if running:
                assert self.sender is not None
                self.state = "draining"
                self.sender.stop()
        if running:
            self._wait()
            with self._lock:
                if self.state == "draining":
                    self.state = "stopped"
        return {"accepting": False, "progress": self.progress()}

    # --- status, readiness, metrics -----------------------------------------------------------

    def progress(self) -> dict[str, Any] | None:
        sender = self.sender
        if sender is None:
            return None
        done = sender.finished is not None
        return ReplayProgress(
            run=self.runs,
            total=sender.count,
            sent=sender.sent,
            delivered=sender.delivered,
            failed=sender.failed,
            bytes=sender.bytes,
            rate_per_s=round(sender.rate(), 3),
            visit=sender.visit(),
            elapsed_s=round(sender.elapsed(), 3),
            done=done,
            stopped_early=done and sender.sent < sender.count,
            failures=sorted(set(sender.failures))[:5],
            error=self.error,
        ).model_dump()

    def status(self) -> dict[str, Any]:
        return {**super().status(), "accepting": self.accepting, "progress": self.progress()}

    def readiness(self) -> Mapping[str, str | None]:
        return {"kafka": self.kafka_check(self.settings.bootstrap_servers)}

    def metric_families(self) -> Iterable[Metric]:
        with self._lock:
            totals = dict(self._totals)
            sender = self.sender
            live = sender is not None and self.state in ("starting", "running", "draining")
        if live and sender is not None:
            for name in self.COUNTERS:
                totals[name] += getattr(sender, name)
        for name, value in totals.items():
            yield counter(f"alertflow_replay_{name}", self.COUNTERS[name], value)
        yield counter("alertflow_replay_runs", "Replays started", self.runs)
        yield gauge("alertflow_replay_running", "1 while a replay sends", 1 if live else 0)
        if sender is not None:
            yield gauge(
                "alertflow_replay_rate",
                "Achieved alerts/s of the current or last run",
                sender.rate(),
            )
            visit = sender.visit()
            if visit is not None:
                yield gauge(
                    "alertflow_replay_visit",
                    "Visit (0-based) of the last alert sent, with a visit profile",
                    visit,
                )

    def openapi(self) -> Mapping[str, Any]:
        return replay_spec(self.version)


# --- the app ----------------------------------------------------------------------------------


def create_app(
    config: ReplayServiceConfig | None = None,
    settings: ReplaySettings | None = None,
    *,
    producer_factory: Callable[[str], Any] = kafka_producer,
    kafka_check: Callable[[str], str | None] = kafka_problem,
) -> Flask:
    """The replay service's Flask app; the component is ``app.extensions["alertflow.component"]``.

    ``producer_factory(bootstrap_servers)`` makes a confluent-kafka-like producer for each start;
    ``kafka_check(bootstrap_servers)`` says why Kafka cannot serve (None if it can), for
    ``/ready`` and before each start (tests pass fakes). Raises ConfigError if ``settings`` do
    not hold.
    """
    config = config or ReplayServiceConfig()
    comp = ReplayComponent(
        config,
        settings or ReplaySettings(),
        producer_factory=producer_factory,
        kafka_check=kafka_check,
    )
    app = Flask("replay")
    install_common(
        app,
        comp,
        Authenticator(config.api_keys, config.open_reads),
        config.max_body_bytes,
        AuditLog(config.audit_log),
    )
    return app


def serve(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``alertflow replay --serve``: the files and options given are the initial settings."""
    from werkzeug.serving import make_server

    out = out or sys.stdout
    err = err or sys.stderr
    start_logging()
    initial: dict[str, Any] = {
        "files": [str(f) for f in args.files],
        "topic": args.topic,
        "rate": args.rate,
        "visit_size": args.visit_size,
        "visit_interval": args.visit_interval,
        "visits": args.visits,
        "count": args.count,
        "bootstrap_servers": args.bootstrap,
    }
    try:
        config = ReplayServiceConfig.from_options(args)
        app = create_app(config, settings_from(initial))
    except ConfigError as error:
        print(f"replay: bad configuration: {error}", file=err)
        return 2
    server = make_server(config.host, config.port, app, threaded=True)
    print(
        f"alertflow replay service on http://{config.host}:{server.server_port}",
        file=out,
        flush=True,
    )
    serve_until_stopped(server)
    return 0


__all__ = ["ReplayComponent", "ReplayServiceConfig", "create_app", "prepare", "serve"]
