"""The local stack's configuration: where it lives, which ports it takes, which versions and
which Java it runs, and the error every stack module raises.

:class:`StackConfig` is built once from ``ALERTFLOW_*`` environment variables
(:meth:`StackConfig.from_env`, the pattern of flink_deploy/settings.py); :class:`StackPorts`,
its addresses alone, is what the services read to find the local stack. :func:`describe` is
what clients read from ``stack.json`` in the run folder.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_settings import SettingsConfigDict

from flink_deploy.nodes import DEFAULT_SUBNET, Budget, Nodes
from flink_deploy.settings import REPO_ROOT, ConfigError, Port, Settings
from flink_deploy.sizing import TaskManagerProfile
from flink_deploy.stack.placement import (
    FIXED_INDEX,
    NodePlan,
    Place,
    node_address,
    taskmanager_node,
)
from transforms.kafka_clients import DEFAULT_KAFKA_PORT

VERSIONS_FILE = REPO_ROOT / "flink_deploy" / "versions.env"
HOST = "127.0.0.1"

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


class StackMode(StrEnum):
    """How the broker runs on the local stack."""

    #: A session cluster that jobs are submitted to through the Beam job server.
    SESSION = "session"
    #: The broker baked into an application jar, run in reactive mode.
    APPLICATION = "application"


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


def _subnet(value: str) -> str:
    network = ipaddress.ip_network(value)  # ValueError: pydantic names the variable
    if network.version != 4 or network.prefixlen > 24:
        raise ValueError("must be an IPv4 network of at least 256 addresses, like 10.213.77.0/24")
    return str(network)


class StackPorts(Settings):
    """Where the local stack lives and which ports it takes (``ALERTFLOW_RUN_DIR``,
    ``ALERTFLOW_KAFKA_PORT``, ...): what the services need to find it, no Java needed."""

    model_config = SettingsConfigDict(env_prefix="ALERTFLOW_")

    run_dir: Annotated[Path, AfterValidator(Path.resolve)] = REPO_ROOT / ".run"
    kafka_port: Port = DEFAULT_KAFKA_PORT
    kafka_controller_port: Port = 9093
    flink_rest_port: Port = 8081
    flink_rpc_port: Port = 6123
    worker_pool_port: Port = 50000
    expansion_port: Port = 8097
    job_port: Port = 8099
    artifact_port: Port = 8098
    job_server_expansion_port: Port = 8096
    autoscaler_port: Port = 5001
    control_port: Port = 5000
    # On nodes of their own (flink_deploy/stack/placement.py) rather than the host's loopback.
    nodes: bool = False
    node_subnet: Annotated[str, AfterValidator(_subnet)] = DEFAULT_SUBNET

    @classmethod
    def local(cls) -> StackPorts:
        """The local stack of this process's environment; StackError naming a bad variable."""
        try:
            return cls.load(**_layout_file())
        except ConfigError as error:
            raise StackError(str(error)) from None

    def host(self, place: Place) -> str:
        """The address of the services at ``place``: its node's, or the loopback's."""
        return node_address(self.node_subnet, FIXED_INDEX[place]) if self.nodes else HOST

    @property
    def control_url(self) -> str:
        return f"http://{self.host(Place.CONTROL)}:{self.control_port}"

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host(Place.KAFKA)}:{self.kafka_port}"

    @property
    def flink_rest_url(self) -> str:
        return f"http://{self.host(Place.JOBMANAGER)}:{self.flink_rest_port}"


# What of a started stack's layout its clients take from its stack.json (below the environment).
LAYOUT_KEYS = ("nodes", "node_subnet")


def _layout_file() -> dict[str, Any]:
    """``file_values`` and ``file_label`` for :meth:`Settings.load`: the layout of the stack that
    runs from the run folder (``ALERTFLOW_RUN_DIR``, else ``.run``), if one does (its
    state.json records processes: ``down`` empties it)."""
    run_dir = Path(os.environ.get("ALERTFLOW_RUN_DIR", REPO_ROOT / ".run"))
    path = run_dir / "stack.json"
    try:
        if not json.loads((run_dir / "state.json").read_text()).get("services"):
            return {}
        described = json.loads(path.read_text())
    except (OSError, ValueError, AttributeError):
        return {}
    values = {key: described[key] for key in LAYOUT_KEYS if key in described}
    return {"file_values": values, "file_label": str(path)}


def default_run_dir() -> Path:
    """The run folder: ``ALERTFLOW_RUN_DIR``, else ``.run`` in the clone."""
    return StackPorts.local().run_dir


def shared_data() -> Path:
    """The shared data folder (sample alerts, catalogues): ``ALERTFLOW_SHARED_DATA``, else
    ``shared/data`` beside the clone."""
    return Path(os.environ.get("ALERTFLOW_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


class StackConfig(StackPorts):
    """The whole local stack: its folders, ports, sizes, mode, Java and versions; built once
    from ``ALERTFLOW_*`` variables (:meth:`from_env`)."""

    build_dir: Annotated[Path, AfterValidator(Path.resolve)] = REPO_ROOT / ".build"
    java: str
    taskmanagers: Annotated[int, Field(ge=0)] = 1
    slots_per_taskmanager: Annotated[int, Field(ge=1)] = 2
    mode: StackMode = Field(StackMode.SESSION, validation_alias="ALERTFLOW_STACK_MODE")
    # Alert topics get this many partitions: the largest source parallelism we plan for.
    alert_partitions: Annotated[int, Field(ge=1)] = 8
    start_timeout_s: Annotated[float, Field(gt=0)] = 120.0
    # The budgets of the nodes (with ``nodes``): CPU cores as a quota, memory in MiB. A
    # TaskManager node's memory is its profile's process memory plus the worker pool's.
    kafka_cpu: Annotated[float, Field(gt=0)] = 0.5
    kafka_memory_mib: Annotated[int, Field(ge=256)] = 2048
    jobmanager_cpu: Annotated[float, Field(gt=0)] = 0.5
    jobmanager_memory_mib: Annotated[int, Field(ge=256)] = 1536
    control_cpu: Annotated[float, Field(gt=0)] = 0.5
    control_memory_mib: Annotated[int, Field(ge=256)] = 4096
    taskmanager_cpu: Annotated[float, Field(gt=0)] = 0.5
    worker_pool_memory_mib: Annotated[int, Field(ge=256)] = 2048
    versions: dict[str, str] = Field(default_factory=lambda: read_versions())

    @classmethod
    def from_env(
        cls,
        taskmanagers: int | None = None,
        mode: StackMode | None = None,
        nodes: bool | None = None,
    ) -> StackConfig:
        """The stack of this process's environment, ``taskmanagers``, ``mode`` and ``nodes``
        (when given) taking the place of ``ALERTFLOW_TASKMANAGERS``, ``ALERTFLOW_STACK_MODE``
        and ``ALERTFLOW_NODES``; StackError naming a bad variable, or when there is no Java 17.

        Whether the stack is on nodes, and their subnet, default to what the run folder's
        ``stack.json`` says of the stack last started there, so that every client finds it."""
        try:
            return cls.load(
                java=find_java(),
                taskmanagers=taskmanagers,
                mode=mode,
                nodes=nodes,
                **_layout_file(),
            )
        except ConfigError as error:
            raise StackError(str(error)) from None

    def moved(self, run_dir: Path, port_offset: int) -> StackConfig:
        """This stack in another run folder with every port ``port_offset`` higher, so that it
        runs beside the default one (tests, benchmarks)."""
        ports = {name: getattr(self, name) + port_offset for name in PORT_FIELDS}
        return self.model_copy(update={"run_dir": run_dir.resolve(), **ports})

    def environment(self) -> dict[str, str]:
        """The ALERTFLOW_* variables that make ``from_env`` in a child process see this stack."""
        return {
            "ALERTFLOW_RUN_DIR": str(self.run_dir),
            "ALERTFLOW_STACK_MODE": self.mode.value,
            **{f"ALERTFLOW_{name.upper()}": str(getattr(self, name)) for name in PORT_FIELDS},
            **(
                {"ALERTFLOW_NODES": "1", "ALERTFLOW_NODE_SUBNET": self.node_subnet}
                if self.nodes
                else {}
            ),
        }

    def node_set(self) -> Nodes:
        """The nodes of this run folder (none unless ``nodes``)."""
        return Nodes(self.run_dir, self.node_subnet)

    def node_address(self, plan: NodePlan) -> str:
        return node_address(self.node_subnet, plan.index)

    def taskmanager_plan(self, index: int, profile: TaskManagerProfile) -> NodePlan | None:
        """The node of TaskManager ``index`` and its worker pool, None on the host's loopback:
        the profile's memory and the pool's, and the profile's CPU (else ``taskmanager_cpu``)."""
        if not self.nodes:
            return None
        cpu = profile.cpu_cores or self.taskmanager_cpu
        return taskmanager_node(
            index, Budget(cpu, profile.memory_mib + self.worker_pool_memory_mib)
        )

    def node_plan(self, place: Place) -> NodePlan | None:
        """The node of the services at ``place``, None on the host's loopback."""
        if not self.nodes:
            return None
        budgets = {
            Place.KAFKA: Budget(self.kafka_cpu, self.kafka_memory_mib),
            Place.JOBMANAGER: Budget(self.jobmanager_cpu, self.jobmanager_memory_mib),
            Place.CONTROL: Budget(self.control_cpu, self.control_memory_mib),
        }
        return NodePlan(place.value, FIXED_INDEX[place], budgets[place])

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
        "job_endpoint": f"{cfg.host(Place.CONTROL)}:{cfg.job_port}",
        "expansion_service": f"{HOST}:{cfg.expansion_port}",  # on the host (services.py)
        "nodes": cfg.nodes,
        "node_subnet": cfg.node_subnet,
        "worker_pool": f"localhost:{cfg.worker_pool_port}",
        "taskmanagers": cfg.taskmanagers,
        "slots_per_taskmanager": cfg.slots_per_taskmanager,
        "alert_partitions": cfg.alert_partitions,
        "versions": cfg.versions,
        **({"job_id": APPLICATION_JOB_ID} if cfg.mode is StackMode.APPLICATION else {}),
    }


def running_mode(cfg: StackConfig) -> StackMode | None:
    """The mode of the stack last started from ``cfg.run_dir`` (as its stack.json says); None
    if none was started from there."""
    path = cfg.run_dir / "stack.json"
    if not path.exists():
        return None
    return StackMode(json.loads(path.read_text()).get("mode", StackMode.SESSION))
