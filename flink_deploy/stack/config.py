"""The local stack's configuration: where it lives, which ports it takes, which versions and
which Java it runs, and the error every stack module raises.

:class:`StackConfig` is built once from ``ALERTFLOW_*`` environment variables
(:meth:`StackConfig.from_env`); :func:`describe` is what clients read from ``stack.json`` in the
run folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from transforms.kafka_clients import DEFAULT_KAFKA_PORT

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "flink_deploy" / "versions.env"
HOST = "127.0.0.1"

MODES = ("session", "application")
# The application cluster runs one job under this fixed id, so checkpoints and the REST paths of
# the job stay the same across JobManager restarts.
APPLICATION_JOB_ID = "a1e47f10000000000000000000000001"
APPLICATION_JOB_NAME = "alertflow-broker"
PIPELINE_RUNNER_CLASS = "org.apache.beam.runners.flink.FlinkPipelineRunner"


class StackError(Exception):
    """The stack could not do what was asked; the message names the service and its log."""


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a service's log, for the StackError that names it."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """The pinned runtime versions (BEAM_VERSION, FLINK_VERSION, ...) from versions.env."""
    versions = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def env_int(name: str, default: int) -> int:
    """The integer in environment variable ``name``, ``default`` if unset; StackError if not
    an integer, so that a mistyped port fails at start."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not an integer") from None


PORT_FIELDS = (
    "kafka_port",
    "kafka_controller_port",
    "flink_rest_port",
    "flink_rpc_port",
    "worker_pool_port",
    "expansion_port",
    "job_port",
    "artifact_port",
    "job_server_expansion_port",
    "autoscaler_port",
    "control_port",
)


def default_run_dir() -> Path:
    """The run folder: ``ALERTFLOW_RUN_DIR``, else ``.run`` in the clone."""
    return Path(os.environ.get("ALERTFLOW_RUN_DIR", REPO_ROOT / ".run")).resolve()


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and which ports it takes; built once from ALERTFLOW_* variables."""

    run_dir: Path
    build_dir: Path
    java: str
    taskmanagers: int = 1
    slots_per_taskmanager: int = 2
    # "session": a session cluster that jobs are submitted to through the Beam job server;
    # "application": the broker baked into an application jar, run in reactive mode.
    mode: str = "session"
    # Alert topics get this many partitions: the largest source parallelism we plan for.
    alert_partitions: int = 8
    kafka_port: int = DEFAULT_KAFKA_PORT
    kafka_controller_port: int = 9093
    flink_rest_port: int = 8081
    flink_rpc_port: int = 6123
    worker_pool_port: int = 50000
    expansion_port: int = 8097
    job_port: int = 8099
    artifact_port: int = 8098
    job_server_expansion_port: int = 8096
    autoscaler_port: int = 5001
    control_port: int = 5000
    start_timeout_s: float = 120.0
    versions: dict[str, str] = field(default_factory=read_versions)

    @classmethod
    def from_env(cls, taskmanagers: int | None = None, mode: str | None = None) -> StackConfig:
        mode = mode or os.environ.get("ALERTFLOW_STACK_MODE", "session")
        if mode not in MODES:
            raise StackError(f"stack mode {mode!r}: choose one of {', '.join(MODES)}")
        build_dir = Path(os.environ.get("ALERTFLOW_BUILD_DIR", REPO_ROOT / ".build"))
        return cls(
            run_dir=default_run_dir(),
            build_dir=build_dir.resolve(),
            java=find_java(),
            taskmanagers=(
                taskmanagers if taskmanagers is not None else env_int("ALERTFLOW_TASKMANAGERS", 1)
            ),
            mode=mode,
            alert_partitions=env_int("ALERTFLOW_ALERT_PARTITIONS", 8),
            kafka_port=env_int("ALERTFLOW_KAFKA_PORT", DEFAULT_KAFKA_PORT),
            kafka_controller_port=env_int("ALERTFLOW_KAFKA_CONTROLLER_PORT", 9093),
            flink_rest_port=env_int("ALERTFLOW_FLINK_REST_PORT", 8081),
            flink_rpc_port=env_int("ALERTFLOW_FLINK_RPC_PORT", 6123),
            worker_pool_port=env_int("ALERTFLOW_WORKER_POOL_PORT", 50000),
            expansion_port=env_int("ALERTFLOW_EXPANSION_PORT", 8097),
            job_port=env_int("ALERTFLOW_JOB_PORT", 8099),
            artifact_port=env_int("ALERTFLOW_ARTIFACT_PORT", 8098),
            job_server_expansion_port=env_int("ALERTFLOW_JOB_SERVER_EXPANSION_PORT", 8096),
            autoscaler_port=env_int("ALERTFLOW_AUTOSCALER_PORT", 5001),
            control_port=env_int("ALERTFLOW_CONTROL_PORT", 5000),
        )

    def moved(self, run_dir: Path, port_offset: int) -> StackConfig:
        """This stack in another run folder with every port ``port_offset`` higher, so that it
        runs beside the default one (tests, benchmarks)."""
        ports = {name: getattr(self, name) + port_offset for name in PORT_FIELDS}
        return replace(self, run_dir=run_dir.resolve(), **ports)

    def environment(self) -> dict[str, str]:
        """The ALERTFLOW_* variables that make ``from_env`` in a child process see this stack."""
        return {
            "ALERTFLOW_RUN_DIR": str(self.run_dir),
            "ALERTFLOW_STACK_MODE": self.mode,
            **{f"ALERTFLOW_{name.upper()}": str(getattr(self, name)) for name in PORT_FIELDS},
        }

    @property
    def control_url(self) -> str:
        return f"http://{HOST}:{self.control_port}"

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.kafka_port}"

    @property
    def flink_rest_url(self) -> str:
        return f"http://{HOST}:{self.flink_rest_port}"

    @property
    def job_endpoint(self) -> str:
        return f"{HOST}:{self.job_port}"

    @property
    def expansion_address(self) -> str:
        return f"{HOST}:{self.expansion_port}"

    @property
    def worker_pool_address(self) -> str:
        return f"localhost:{self.worker_pool_port}"

    @property
    def kafka_jars(self) -> Path:
        return self.build_dir / "jars" / "kafka"

    @property
    def job_server_jar(self) -> Path:
        v = self.versions
        name = f"beam-runners-flink-{v['FLINK_MINOR']}-job-server-{v['BEAM_VERSION']}.jar"
        return self.build_dir / "jars" / "beam" / name

    @property
    def flink_home(self) -> Path:
        return self.build_dir / f"flink-{self.versions['FLINK_VERSION']}" / "pyflink"

    @property
    def application_home(self) -> Path:
        """FLINK_HOME of the application cluster: lib/ (Flink's jars) and usrlib/ (the job)."""
        return self.run_dir / "flink" / "application"

    @property
    def application_jar(self) -> Path:
        return self.application_home / "usrlib" / "alertflow-broker.jar"


# --------------------------------------------------------------------------------------------
# Java
# --------------------------------------------------------------------------------------------

SUPPORTED_JAVA = 17


def java_candidates() -> list[str | None]:
    """Where to look for Java 17: ALERTFLOW_JAVA, JAVA_HOME, Debian's OpenJDK 17, then PATH.

    Flink 1.19 and Kafka 4 both run on 17; a newer JDK installed beside it (Temurin 25 on these
    machines) is not supported by Flink, so PATH is the last resort, not the first.
    """
    return [
        os.environ.get("ALERTFLOW_JAVA"),
        os.path.join(os.environ["JAVA_HOME"], "bin", "java") if "JAVA_HOME" in os.environ else None,
        "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
        shutil.which("java"),
    ]


def find_java(candidates: list[str | None] | None = None) -> str:
    """The first Java 17 launcher among ``candidates`` (default: :func:`java_candidates`)."""
    for candidate in java_candidates() if candidates is None else candidates:
        if candidate and os.access(candidate, os.X_OK) and java_major(candidate) == SUPPORTED_JAVA:
            return candidate
    raise StackError(
        f"Java {SUPPORTED_JAVA} not found (tried ALERTFLOW_JAVA, JAVA_HOME, "
        "/usr/lib/jvm/java-17-openjdk-amd64 and PATH); install openjdk-17-jdk-headless "
        "or point ALERTFLOW_JAVA at a Java 17 binary"
    )


def java_major(java: str) -> int | None:
    """The major version a java binary reports, or None if it does not run."""
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except OSError:
        return None
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else None


def describe(cfg: StackConfig) -> dict[str, Any]:
    """What clients need to reach the stack, written to stack.json in the run folder."""
    return {
        "mode": cfg.mode,
        "bootstrap_servers": cfg.bootstrap_servers,
        "flink_rest_url": cfg.flink_rest_url,
        "job_endpoint": cfg.job_endpoint,
        "expansion_service": cfg.expansion_address,
        "worker_pool": cfg.worker_pool_address,
        "taskmanagers": cfg.taskmanagers,
        "slots_per_taskmanager": cfg.slots_per_taskmanager,
        "alert_partitions": cfg.alert_partitions,
        "versions": cfg.versions,
        **({"job_id": APPLICATION_JOB_ID} if cfg.mode == "application" else {}),
    }


def running_mode(cfg: StackConfig) -> str:
    """The mode of the stack last started from ``cfg.run_dir`` (as its stack.json says)."""
    path = cfg.run_dir / "stack.json"
    return str(json.loads(path.read_text()).get("mode", "session")) if path.exists() else ""
