"""The control service's configuration: one validated, immutable object, built once at start.

Sources, later wins: the defaults, a YAML file (``--config FILE`` or ``ALERTFLOW_CONTROL_CONFIG``),
then ``ALERTFLOW_CONTROL_<FIELD>`` environment variables (``ALERTFLOW_CONTROL_API_KEYS`` is
``token:user:role`` items separated by commas). The Kafka and Flink addresses default to the
local stack's (``ALERTFLOW_KAFKA_PORT``, ``ALERTFLOW_FLINK_REST_PORT``, as `alertflow stack up`
reads them). Every problem is reported at once, as :class:`ConfigError`; a bad configuration
stops the service at start. ``PUT /api/v1/config`` may change only the fields in
:data:`RUNTIME_FIELDS`, through :meth:`ControlConfig.with_changes`, validated the same way.

Example YAML::

    port: 5000
    api_keys:
      - {token: s3cret-alice, user: alice, role: user}
      - {token: s3cret-ops, user: ops, role: admin}
    reference_alerts: [../shared/data/lsst/alerts]
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from control_service.auth import ApiKey, api_key_problems, parse_api_keys
from flink_deploy.stack.config import HOST, REPO_ROOT
from transforms.kafka_clients import DEFAULT_KAFKA_PORT
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
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """The configuration is invalid; ``problems`` lists every ``(field, message)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {message}" for name, message in problems))


def _default_reference() -> tuple[Path, ...]:
    data = Path(os.environ.get("ALERTFLOW_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    return tuple(p for p in (data / "lsst" / "alerts", data / "ztf" / "alerts") if p.is_dir())


def _stack_port(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.isdigit() else default


@dataclass(frozen=True)
class ControlConfig:
    service_id: str = "control"
    host: str = HOST
    port: int = 5000
    bootstrap_servers: str = field(
        default_factory=lambda: f"{HOST}:{_stack_port('ALERTFLOW_KAFKA_PORT', DEFAULT_KAFKA_PORT)}"
    )
    config_topic: str = CONFIG_TOPIC
    #: Deactivated filters live here (whole snapshots too), so they survive a restart without
    #: ever reaching the pipeline, which reads only ``config_topic``.
    inactive_topic: str = INACTIVE_CONFIG_TOPIC
    kafka_timeout_s: float = 10.0
    flink_rest_url: str = field(
        default_factory=lambda: f"http://{HOST}:{_stack_port('ALERTFLOW_FLINK_REST_PORT', 8081)}"
    )
    flink_timeout_s: float = 5.0
    savepoint_dir: str = field(
        default_factory=lambda: str(
            Path(os.environ.get("ALERTFLOW_RUN_DIR", REPO_ROOT / ".run")).resolve() / "savepoints"
        )
    )
    job_args: tuple[str, ...] = ()
    api_keys: tuple[ApiKey, ...] = ()
    open_reads: bool = True
    max_body_bytes: int = 256 * 1024
    max_yaml_bytes: int = 64 * 1024
    max_yaml_aliases: int = 16
    max_yaml_depth: int = 20
    audit_log: Path = field(
        default_factory=lambda: (
            Path(os.environ.get("ALERTFLOW_RUN_DIR", REPO_ROOT / ".run")).resolve()
            / "control-audit.jsonl"
        )
    )
    reference_alerts: tuple[Path, ...] = field(default_factory=_default_reference)
    reference_max_alerts: int = 2000
    max_test_matches: int = 100
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        problems = _check(self)
        if problems:
            raise ConfigError(problems)

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
        return _build({**{k: getattr(self, k) for k in FIELD_NAMES}, **changes})

    def public_view(self) -> dict[str, Any]:
        """The configuration as JSON, secrets left out."""
        out: dict[str, Any] = {}
        for name in FIELD_NAMES:
            value = getattr(self, name)
            if name == "api_keys":
                value = [{"user": k.user, "role": k.role} for k in value]
            elif isinstance(value, tuple):
                value = [str(v) for v in value]
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(ControlConfig))
_INT_FIELDS = {
    "port",
    "max_body_bytes",
    "max_yaml_bytes",
    "max_yaml_aliases",
    "max_yaml_depth",
    "reference_max_alerts",
    "max_test_matches",
}
_FLOAT_FIELDS = {"kafka_timeout_s", "flink_timeout_s"}
_STR_FIELDS = {
    "service_id",
    "host",
    "bootstrap_servers",
    "config_topic",
    "inactive_topic",
    "flink_rest_url",
    "savepoint_dir",
    "log_level",
}


def _check(cfg: ControlConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for name in _INT_FIELDS:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append((name, "must be a non-negative integer"))
    if isinstance(cfg.port, int) and not 0 <= cfg.port <= 65535:
        problems.append(("port", "must be 0-65535"))
    for name in _FLOAT_FIELDS:
        value = getattr(cfg, name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            problems.append((name, "must be a positive number"))
    for name in _STR_FIELDS:
        if not isinstance(getattr(cfg, name), str) or not getattr(cfg, name):
            problems.append((name, "must be a non-empty string"))
    if not isinstance(cfg.open_reads, bool):
        problems.append(("open_reads", "must be true or false"))
    if cfg.log_level not in LOG_LEVELS:
        problems.append(("log_level", f"must be one of {', '.join(LOG_LEVELS)}"))
    if (
        isinstance(cfg.max_body_bytes, int)
        and isinstance(cfg.max_yaml_bytes, int)
        and cfg.max_yaml_bytes > cfg.max_body_bytes
    ):
        problems.append(("max_yaml_bytes", "must not exceed max_body_bytes"))
    problems += api_key_problems(cfg.api_keys)
    return problems


def _api_keys(raw: Any, problems: list[tuple[str, str]]) -> tuple[ApiKey, ...]:
    if isinstance(raw, str):  # the environment form: token:user:role,...
        raw = parse_api_keys(raw)
    if isinstance(raw, tuple) and all(isinstance(k, ApiKey) for k in raw):
        return raw
    if not isinstance(raw, list):
        problems.append(("api_keys", "must be a list of {token, user, role}"))
        return ()
    keys = []
    for i, item in enumerate(raw):
        if (
            not isinstance(item, dict)
            or set(item) - {"token", "user", "role"}
            or not all(isinstance(item.get(k), str) for k in ("token", "user"))
        ):
            problems.append((f"api_keys[{i}]", "must be {token: str, user: str, role: user|admin}"))
            continue
        keys.append(ApiKey(item["token"], item["user"], item.get("role", "user")))
    return tuple(keys)


def _coerce(name: str, value: Any, from_env: bool, problems: list[tuple[str, str]]) -> Any:
    if name == "api_keys":
        return _api_keys(value, problems)
    if name in ("reference_alerts", "job_args"):
        if from_env:
            value = [v for v in value.split(os.pathsep if name == "reference_alerts" else " ") if v]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str | Path) for v in value):
            problems.append((name, "must be a list of strings"))
            return ()
        return (
            tuple(Path(v) for v in value)
            if name == "reference_alerts"
            else tuple(str(v) for v in value)
        )
    if name == "audit_log":
        if not isinstance(value, str | Path) or not str(value):
            problems.append((name, "must be a path"))
            return Path(".")
        return Path(value)
    if from_env:
        if name in _INT_FIELDS:
            return int(value) if value.strip().isdigit() else value
        if name in _FLOAT_FIELDS:
            try:
                return float(value)
            except ValueError:
                return value
        if name == "open_reads":
            return {
                "true": True,
                "1": True,
                "yes": True,
                "false": False,
                "0": False,
                "no": False,
            }.get(value.lower(), value)
    return value


def _build(values: Mapping[str, Any], from_env: frozenset[str] = frozenset()) -> ControlConfig:
    problems: list[tuple[str, str]] = []
    kwargs = {
        name: _coerce(name, value, name in from_env, problems) for name, value in values.items()
    }
    if problems:
        raise ConfigError(problems)
    return ControlConfig(**kwargs)


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> ControlConfig:
    """Defaults < YAML file < ``ALERTFLOW_CONTROL_*`` variables < ``overrides``.

    Raises ConfigError."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = path or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError([("config", f"{path}: {error}")]) from None
        if not isinstance(loaded, dict):
            raise ConfigError([("config", f"{path}: must be a mapping")])
        unknown = sorted(set(loaded) - set(FIELD_NAMES))
        if unknown:
            raise ConfigError([(name, "unknown field") for name in unknown])
        values.update(loaded)
    from_env = set()
    for name in FIELD_NAMES:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = raw
            from_env.add(name)
    for name, value in overrides.items():
        if name not in FIELD_NAMES:
            raise ConfigError([(name, "unknown field")])
        values[name] = value
        from_env.discard(name)
    return _build(values, frozenset(from_env))
