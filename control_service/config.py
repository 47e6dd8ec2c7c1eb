"""The control service's configuration: one validated, immutable object, built once at start.

Sources, later wins: the defaults, a YAML file (``--config FILE`` or ``ALERTFLOW_CONTROL_CONFIG``),
then ``ALERTFLOW_CONTROL_<FIELD>`` environment variables (``ALERTFLOW_CONTROL_API_KEYS`` is
``token:user:role`` items separated by commas), then the command line: the pattern of every
service (flink_deploy/settings.py). The Kafka and Flink addresses and the run folder default to
the local stack's (``ALERTFLOW_KAFKA_PORT``, ``ALERTFLOW_FLINK_REST_PORT``,
``ALERTFLOW_RUN_DIR``, as `alertflow stack up` reads them). Every problem is reported at once,
as :class:`ConfigError`; a bad configuration stops the service at start. ``PUT
/api/v1/config`` may change only the fields in :data:`RUNTIME_FIELDS`, through
:meth:`ControlConfig.with_changes`, validated the same way.

Example YAML::

    port: 5000
    api_keys:
      - {token: s3cret-alice, user: alice, role: user}
      - {token: s3cret-ops, user: ops, role: admin}
    reference_alerts: [../shared/data/lsst/alerts]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from control_service.auth import ApiKeys
from flink_deploy.settings import ConfigError, NonEmpty, Port, Settings, split_on
from flink_deploy.stack.config import HOST, StackPorts, shared_data
from transforms.topics import CONFIG_TOPIC, INACTIVE_CONFIG_TOPIC

ENV_PREFIX = "ALERTFLOW_CONTROL_"
#: Fields an admin may change on the running service (PUT /api/v1/config).
RUNTIME_FIELDS = (
    "open_reads",
    "max_body_bytes",
    "max_yaml_bytes",
    "max_yaml_aliases",
    "max_test_matches",
    "log_level",
)


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


def _default_reference() -> tuple[Path, ...]:
    data = shared_data()
    return tuple(p for p in (data / "lsst" / "alerts", data / "ztf" / "alerts") if p.is_dir())


Count = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(gt=0)]


class ControlConfig(Settings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    service_id: NonEmpty = "control"
    host: NonEmpty = HOST
    port: Port = 5000
    bootstrap_servers: NonEmpty = Field(default_factory=lambda: StackPorts.load().bootstrap_servers)
    config_topic: NonEmpty = CONFIG_TOPIC
    #: Deactivated filters live here (whole snapshots too), so they survive a restart without
    #: ever reaching the pipeline, which reads only ``config_topic``.
    inactive_topic: NonEmpty = INACTIVE_CONFIG_TOPIC
    kafka_timeout_s: Seconds = 10.0
    flink_rest_url: NonEmpty = Field(default_factory=lambda: StackPorts.load().flink_rest_url)
    flink_timeout_s: Seconds = 5.0
    savepoint_dir: NonEmpty = Field(
        default_factory=lambda: str(StackPorts.load().run_dir / "savepoints")
    )
    #: In the environment: separated by spaces.
    job_args: Annotated[tuple[str, ...], split_on(None)] = ()
    api_keys: ApiKeys = ()
    open_reads: bool = True
    max_body_bytes: Count = 256 * 1024
    max_yaml_bytes: Count = 64 * 1024
    max_yaml_aliases: Count = 16
    max_yaml_depth: Count = 20
    audit_log: Path = Field(
        default_factory=lambda: StackPorts.load().run_dir / "control-audit.jsonl"
    )
    #: In the environment: separated by ``os.pathsep`` (``:``).
    reference_alerts: Annotated[tuple[Path, ...], split_on(os.pathsep)] = Field(
        default_factory=_default_reference
    )
    reference_max_alerts: Count = 2000
    max_test_matches: Count = 100
    log_level: LogLevel = LogLevel.INFO

    @field_validator("max_yaml_bytes")
    @classmethod
    def _within_body(cls, value: int, info: ValidationInfo) -> int:
        body = info.data.get("max_body_bytes")
        if body is not None and value > body:
            raise ValueError("must not exceed max_body_bytes")
        return value

    def with_changes(self, changes: Mapping[str, Any]) -> ControlConfig:
        """A new config with ``changes`` (runtime fields only); raises ConfigError, whole."""
        problems = [
            (k, "cannot be changed at run time")
            for k in changes
            if k in FIELD_NAMES and k not in RUNTIME_FIELDS
        ]
        problems += [(k, "unknown field") for k in changes if k not in FIELD_NAMES]
        if problems:
            raise ConfigError(problems)
        return ControlConfig(**{**dict(self), **changes})


FIELD_NAMES = tuple(ControlConfig.model_fields)


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> ControlConfig:
    """Defaults < YAML file < ``ALERTFLOW_CONTROL_*`` variables < ``overrides`` (None: an
    option not given, left out).

    Raises ConfigError."""
    env = os.environ if env is None else env
    path = path or env.get(ENV_PREFIX + "CONFIG")
    loaded: Any = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError([("config", f"{path}: {error}")]) from None
        if not isinstance(loaded, dict):
            raise ConfigError([("config", f"{path}: must be a mapping")])
    return ControlConfig.load(env, loaded, str(path or ""), **overrides)


__all__ = ["ConfigError", "ControlConfig", "LogLevel", "load_config"]
