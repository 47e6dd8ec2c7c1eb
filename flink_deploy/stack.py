"""The local stack: Kafka, Flink, the Beam job server, the expansion service and the worker pool.

Every service is a plain process that this module starts, health-checks and stops by its own
PID. ``up`` writes one run folder (``.run/`` by default, ``ALERTFLOW_RUN_DIR`` to move it) with
each service's log, its configuration and ``state.json``: the PID, the process start time (so a
recycled PID is never signalled), the port and the log of every service started. ``down``
stops exactly those processes, each with its whole process group (the worker pool's forked SDK
workers go with it), and checks that none is left.

Services, in start order:

- ``kafka``: a single-node KRaft broker (broker and controller in one JVM) from the jars that
  ``flink_deploy/pom.xml`` fetched. Topics are created once it answers.
- ``flink-jobmanager``: a Flink session cluster from the PyPI ``apache-flink-libraries`` jars,
  with the web UI and REST API on ``flink_rest_port``.
- ``flink-taskmanager-N``: N TaskManagers, each registered under the resource id of its name.
- ``beam-workerpool``: the Python SDK worker pool (EXTERNAL environment) the TaskManagers call
  to run the Python steps. The pipeline's environment names one address, so on one host all
  TaskManagers share one pool; on Kubernetes each TaskManager pod has its own pool as a sidecar
  at the same localhost address (see flink_deploy/README.md).
- ``beam-expansion-service``: expands the cross-language KafkaIO transforms with the EMBEDDED
  environment (KafkaIO runs inside the TaskManager JVMs) and ``use_deprecated_read``.
- ``beam-job-server``: the Beam Flink job server that pipelines are submitted to.
- ``alertflow-control``: the control service (``alertflow serve``, :func:`start_control`),
  joined by ``alertflow run``, with a local admin token kept in the run folder
  (:func:`local_admin_token`).

One ``up`` or ``alertflow run`` at a time holds a run folder (:func:`hold`); a second one is
refused with the holder's command and PID.

Application mode (``mode="application"``, ``alertflow stack up --mode application``): the
worker pool and the expansion service start first, the broker is built into an application jar
(:func:`build_application_jar`), and the JobManager runs it as a reactive-mode application
cluster under a fixed job id; there is no job server. ``alertflow-autoscaler``
(:func:`start_autoscaler`) may join the stack later, as may TaskManagers of other profiles
(:func:`start_taskmanager`, :func:`stop_taskmanager`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from flink_deploy.sizing import DEFAULT_PROFILE, TaskManagerProfile
from transforms.kafka_clients import kafka_config, kafka_problem

REPO_ROOT = Path(__file__).resolve().parent.parent
VERSIONS_FILE = Path(__file__).resolve().parent / "versions.env"
HOST = "127.0.0.1"

ALERT_TOPICS = ("alerts.ztf", "alerts.lsst")
CONFIG_TOPIC = "alertflow.config"
MODES = ("session", "application")
# The application cluster runs one job under this fixed id, so checkpoints and the REST paths of
# the job stay the same across JobManager restarts.
APPLICATION_JOB_ID = "a1e47f10000000000000000000000001"
APPLICATION_JOB_NAME = "alertflow-broker"
PIPELINE_RUNNER_CLASS = "org.apache.beam.runners.flink.FlinkPipelineRunner"
DEADLETTER_TOPIC = "alertflow.deadletter"
FILTER_ERRORS_TOPIC = "alertflow.filter-errors"


class StackError(Exception):
    """The stack could not do what was asked; the message names the service and its log."""


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """The pinned runtime versions (BEAM_VERSION, FLINK_VERSION, ...) from versions.env."""
    versions = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not an integer") from None


PORT_FIELDS = (
    "kafka_port", "kafka_controller_port", "flink_rest_port", "flink_rpc_port",
    "worker_pool_port", "expansion_port", "job_port", "artifact_port",
    "job_server_expansion_port", "autoscaler_port", "control_port",
)  # fmt: skip


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
    kafka_port: int = 9092
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
                taskmanagers
                if taskmanagers is not None
                else _env_int("ALERTFLOW_TASKMANAGERS", 1)
            ),
            mode=mode,
            alert_partitions=_env_int("ALERTFLOW_ALERT_PARTITIONS", 8),
            kafka_port=_env_int("ALERTFLOW_KAFKA_PORT", 9092),
            kafka_controller_port=_env_int("ALERTFLOW_KAFKA_CONTROLLER_PORT", 9093),
            flink_rest_port=_env_int("ALERTFLOW_FLINK_REST_PORT", 8081),
            flink_rpc_port=_env_int("ALERTFLOW_FLINK_RPC_PORT", 6123),
            worker_pool_port=_env_int("ALERTFLOW_WORKER_POOL_PORT", 50000),
            expansion_port=_env_int("ALERTFLOW_EXPANSION_PORT", 8097),
            job_port=_env_int("ALERTFLOW_JOB_PORT", 8099),
            artifact_port=_env_int("ALERTFLOW_ARTIFACT_PORT", 8098),
            job_server_expansion_port=_env_int("ALERTFLOW_JOB_SERVER_EXPANSION_PORT", 8096),
            autoscaler_port=_env_int("ALERTFLOW_AUTOSCALER_PORT", 5001),
            control_port=_env_int("ALERTFLOW_CONTROL_PORT", 5000),
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


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """One process of the stack: how to start it and how to tell that it is healthy."""

    name: str
    argv: list[str]
    port: int
    log: Path
    healthy: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    profile: str = ""


@dataclass(frozen=True)
class Started:
    """A process that ``up`` started, as recorded in state.json."""

    name: str
    pid: int
    start_ticks: int
    port: int
    log: str
    # A TaskManager's profile name (see TaskManagerProfile); empty for other services.
    profile: str = ""


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_running(proc: Started) -> bool:
    """True if the recorded process is still the one we started (same PID, same start time)."""
    return _start_ticks(proc.pid) == proc.start_ticks and not _is_zombie(proc.pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


class RunState:
    """state.json in the run folder: the processes started, written after each start."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "state.json"

    def load(self) -> list[Started]:
        if not self.path.exists():
            return []
        return [Started(**entry) for entry in json.loads(self.path.read_text())["services"]]

    def save(self, started: list[Started]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"services": [asdict(s) for s in started]}, indent=2))
        tmp.replace(self.path)


def spawn(service: Service) -> Started:
    if port_in_use(service.port):
        raise StackError(
            f"{service.name}: port {service.port} on {HOST} is already in use; stop whatever "
            f"holds it (`ss -ltnp 'sport = :{service.port}'`) or choose another port "
            "with the matching ALERTFLOW_*_PORT variable"
        )
    service.log.parent.mkdir(parents=True, exist_ok=True)
    with open(service.log, "ab") as log:
        proc = subprocess.Popen(
            service.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **service.env},
            start_new_session=True,
        )
    ticks = _start_ticks(proc.pid)
    if ticks is None:
        raise StackError(f"{service.name}: exited at once; see {service.log}:\n{tail(service.log)}")
    return Started(service.name, proc.pid, ticks, service.port, str(service.log), service.profile)


def wait_healthy(service: Service, started: Started, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(started):
            raise StackError(
                f"{service.name}: process {started.pid} exited before it was healthy; "
                f"see {service.log}:\n{tail(service.log)}"
            )
        if service.healthy():
            return
        time.sleep(0.5)
    raise StackError(
        f"{service.name}: not healthy after {timeout_s:.0f} s; see {service.log}:\n"
        f"{tail(service.log)}"
    )


def stop(proc: Started, grace_s: float = 20.0) -> None:
    """Stop one recorded process and its process group: SIGTERM, then SIGKILL after grace_s."""
    if not is_running(proc):
        return
    _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not is_running(proc) and not _group_alive(proc.pid):
            return
        time.sleep(0.2)
    _signal_group(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (is_running(proc) or _group_alive(proc.pid)):
        time.sleep(0.1)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def rss_mib(pgid: int) -> float:
    """Resident memory of the whole process group ``pgid`` (a JVM, or the pool and its workers)."""
    total_kib = 0
    for pid in group_members(pgid):
        try:
            status_text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status_text, re.MULTILINE)
        total_kib += int(match.group(1)) if match else 0
    return round(total_kib / 1024, 1)


def _group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def group_members(pgid: int) -> list[int]:
    """PIDs of the live processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


# --------------------------------------------------------------------------------------------
# Health checks
# --------------------------------------------------------------------------------------------


def http_json(url: str, timeout: float = 2.0) -> dict | list | None:
    """GET ``url`` and decode its JSON body, or None if it does not answer with 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read()) if resp.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def port_open(port: int) -> Callable[[], bool]:
    return lambda: port_in_use(port)


def kafka_healthy(bootstrap: str) -> Callable[[], bool]:
    """The broker listens and answers a metadata request (the services' readiness probe)."""

    def check() -> bool:
        _, _, port = bootstrap.rpartition(":")
        return port_in_use(int(port)) and kafka_problem(bootstrap) is None

    return check


def control_healthy(url: str) -> Callable[[], bool]:
    """The common control API's liveness: ``/health`` answers."""
    return lambda: http_json(f"{url}/health") is not None


def flink_jobmanager_healthy(rest_url: str) -> Callable[[], bool]:
    return lambda: http_json(f"{rest_url}/overview") is not None


def flink_taskmanager_healthy(rest_url: str, resource_id: str) -> Callable[[], bool]:
    def check() -> bool:
        body = http_json(f"{rest_url}/taskmanagers")
        return isinstance(body, dict) and any(
            tm.get("id") == resource_id for tm in body.get("taskmanagers", [])
        )

    return check


# --------------------------------------------------------------------------------------------
# Service definitions
# --------------------------------------------------------------------------------------------

KAFKA_LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = File
appender.file.name = File
appender.file.type = File
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""

FLINK_LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = File
appender.main.fileName = ${sys:log.file}
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
"""


def kafka_service(cfg: StackConfig) -> Service:
    """The KRaft broker; formats its storage on first start."""
    home = cfg.run_dir / "kafka"
    data = home / "data"
    props = home / "server.properties"
    home.mkdir(parents=True, exist_ok=True)
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers={HOST}:{cfg.kafka_controller_port}",
                f"listeners=PLAINTEXT://{HOST}:{cfg.kafka_port},"
                f"CONTROLLER://{HOST}:{cfg.kafka_controller_port}",
                f"advertised.listeners=PLAINTEXT://{HOST}:{cfg.kafka_port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                # Alerts are ~110 KB; a full visit burst must fit the broker's defaults.
                "message.max.bytes=10485760",
                "",
            ]
        )
    )
    (home / "log4j2.properties").write_text(KAFKA_LOG4J)
    classpath = f"{cfg.kafka_jars}/*"
    if not cfg.kafka_jars.is_dir():
        raise StackError(f"kafka: jars missing in {cfg.kafka_jars}; run `make install`")
    if not (data / "meta.properties").exists():
        fmt_log = home / "format.log"
        result = subprocess.run(
            [cfg.java, "-cp", classpath, "kafka.tools.StorageTool", "format", "--standalone",
             "-t", str(uuid.uuid4()), "-c", str(props)],
            stdout=open(fmt_log, "wb"), stderr=subprocess.STDOUT, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"kafka: storage format failed; see {fmt_log}:\n{tail(fmt_log)}")
    argv = [
        cfg.java, "-Xms512m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile=file:{home / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={home / 'logs'}",
        "-cp", classpath, "kafka.Kafka", str(props),
    ]  # fmt: skip
    return Service("kafka", argv, cfg.kafka_port, home / "kafka.out",
                   kafka_healthy(cfg.bootstrap_servers))  # fmt: skip


# Reactive mode: the job always runs at the parallelism of all the slots there are, and restarts
# from its latest checkpoint at a new parallelism when TaskManagers come or go.
APPLICATION_SETTINGS = {
    "scheduler-mode": "reactive",
    # Keep the last checkpoint when the job is cancelled, for a restart with --fromSavepoint.
    "execution": {"checkpointing": {"externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION"}},
    # A TaskManager that dies without saying goodbye is noticed after 20 s instead of 50 s.
    "heartbeat": {"timeout": 20000},
}
APPLICATION_SCHEDULER = {
    # Wait this long for more TaskManagers to register before (re)starting at a parallelism.
    "resource-stabilization-timeout": "5s",
    # Rescale at most this often (Flink's default is 30 s).
    "scaling-interval": {"min": "10s"},
}


def write_flink_conf(cfg: StackConfig) -> Path:
    """The Flink cluster's config.yaml and log4j configuration."""
    conf = cfg.run_dir / "flink" / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    flink = cfg.run_dir / "flink"
    settings = {
        "jobmanager": {
            "bind-host": HOST,
            "rpc": {"address": HOST, "port": cfg.flink_rpc_port},
            "memory": {"process": {"size": "1024m"}},
        },
        "taskmanager": {
            "bind-host": HOST,
            "host": HOST,
            "numberOfTaskSlots": cfg.slots_per_taskmanager,
            # Memory: each TaskManager's profile, as dynamic properties (flink_deploy/sizing.py).
        },
        "parallelism": {"default": 1},
        "rest": {"address": HOST, "bind-address": HOST, "port": cfg.flink_rest_port},
        "io": {"tmp": {"dirs": str(flink / "tmp")}},
        "state": {"checkpoints": {"dir": f"file://{flink / 'checkpoints'}"}},
        "web": {"submit": {"enable": True}, "cancel": {"enable": True}},
    }
    if cfg.mode == "application":
        settings.update(APPLICATION_SETTINGS)
        settings["jobmanager"]["adaptive-scheduler"] = APPLICATION_SCHEDULER
    # JSON is valid YAML, and Flink 1.19 reads config.yaml as standard YAML.
    (conf / "config.yaml").write_text(json.dumps(settings, indent=2))
    (conf / "log4j.properties").write_text(FLINK_LOG4J)
    return conf


def java17_flags(flink_dist: Path) -> list[str]:
    """The --add-opens/--add-exports list that flink-dist's own config.yaml sets for Java 17."""
    with zipfile.ZipFile(flink_dist) as jar:
        text = jar.read("config.yaml").decode()
    match = re.search(r"^\s*all:\s*(--add.*)$", text, re.MULTILINE)
    return match.group(1).split() if match else []


def flink_dist(cfg: StackConfig) -> Path:
    dists = sorted((cfg.flink_home / "lib").glob("flink-dist-*.jar"))
    if not dists:
        lib = cfg.flink_home / "lib"
        raise StackError(f"flink: no flink-dist jar in {lib}; run `make install`")
    return dists[0]


def flink_service(
    cfg: StackConfig,
    conf: Path,
    taskmanager: int | None = None,
    profile: TaskManagerProfile = DEFAULT_PROFILE,
) -> Service:
    """The JobManager, or TaskManager number ``taskmanager`` of the given profile.

    Does what Flink's bin/jobmanager.sh, standalone-job.sh and taskmanager.sh do: BashJavaUtils
    turns the memory settings into JVM flags (and, for a TaskManager, dynamic properties), then
    the entry class starts with flink-dist's Java 17 flags. In application mode the JobManager
    runs the job in ``application_home/usrlib`` under a fixed job id. A TaskManager registers
    under its service name as resource id, which is how its health is told apart; it takes no
    fixed port (0).
    """
    lib = cfg.flink_home / "lib"
    dist = flink_dist(cfg)
    classpath = ":".join([*(str(j) for j in sorted(lib.glob("*.jar")) if j != dist), str(dist)])
    lib_dir, profile_name = lib, ""
    if taskmanager is None:
        name = "flink-jobmanager"
        entry = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
        port, healthy = cfg.flink_rest_port, flink_jobmanager_healthy(cfg.flink_rest_url)
        jvm_mem = _bash_java_utils(cfg, dist, conf, "GET_JM_RESOURCE_PARAMS")[0]
        args = []
        if cfg.mode == "application":
            # The entry point finds the job's jar in $(dirname FLINK_LIB_DIR)/usrlib.
            entry = "org.apache.flink.container.entrypoint.StandaloneApplicationClusterEntryPoint"
            lib_dir = cfg.application_home / "lib"
            args = ["--job-classname", PIPELINE_RUNNER_CLASS, "--job-id", APPLICATION_JOB_ID,
                    "--flink-conf-dir", str(conf)]  # fmt: skip
    else:
        name = f"flink-taskmanager-{taskmanager}"
        entry = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"
        port, healthy = 0, flink_taskmanager_healthy(cfg.flink_rest_url, name)
        shape = profile.dynamic_properties()
        jvm_mem, dynamic = _bash_java_utils(cfg, dist, conf, "GET_TM_RESOURCE_PARAMS", shape)
        # A heap OutOfMemoryError in one of KafkaIO's consumer threads ends that thread only,
        # and the job then reads nothing without failing; exiting makes it a TaskManager
        # failure, which the job recovers from on another TaskManager.
        jvm_mem = [*jvm_mem, "-XX:+ExitOnOutOfMemoryError"]
        args = [*shape, *dynamic, "-D", f"taskmanager.resource-id={name}"]
        profile_name = profile.name
    log = cfg.run_dir / "flink" / "log" / f"{name}.log"
    argv = [
        cfg.java, *jvm_mem, *java17_flags(dist),
        f"-Dlog.file={log}", f"-Dlog4j.configurationFile=file:{conf / 'log4j.properties'}",
        "-classpath", classpath, entry, "--configDir", str(conf), *args,
    ]  # fmt: skip
    env = {
        "FLINK_CONF_DIR": str(conf),
        "FLINK_LIB_DIR": str(lib_dir),
        "FLINK_PLUGINS_DIR": str(cfg.flink_home / "plugins"),
        "FLINK_OPT_DIR": str(cfg.flink_home / "opt"),
    }
    return Service(name, argv, port, log.with_suffix(".out"), healthy, env, profile_name)


def _bash_java_utils(
    cfg: StackConfig, dist: Path, conf: Path, params: str, dynamic: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    result = subprocess.run(
        [cfg.java, "-cp", f"{cfg.flink_home / 'bin' / 'bash-java-utils.jar'}:{dist}",
         "org.apache.flink.runtime.util.bash.BashJavaUtils", params, "--configDir", str(conf),
         *dynamic],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = [
        line.removeprefix("BASH_JAVA_UTILS_EXEC_RESULT:")
        for line in result.stdout.splitlines()
        if line.startswith("BASH_JAVA_UTILS_EXEC_RESULT:")
    ]
    if result.returncode != 0 or not lines:
        raise StackError(
            f"flink: BashJavaUtils {params} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return lines[0].split(), (lines[1].split() if len(lines) > 1 else [])


def worker_pool_service(cfg: StackConfig) -> Service:
    """The Python SDK worker pool. It forks `python` from PATH, so the venv goes first."""
    venv_bin = str(Path(sys.executable).parent)
    argv = [
        sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
        f"--service_port={cfg.worker_pool_port}",
    ]  # fmt: skip
    env = {
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        # The pipeline's own packages (transforms/, pipelines/) must import in the workers.
        "PYTHONPATH": f"{REPO_ROOT}:{os.environ.get('PYTHONPATH', '')}".rstrip(":"),
    }
    return Service("beam-workerpool", argv, cfg.worker_pool_port,
                   cfg.run_dir / "beam" / "workerpool.log",
                   port_open(cfg.worker_pool_port), env)  # fmt: skip


def expansion_service(cfg: StackConfig) -> Service:
    """The KafkaIO expansion service, run from the job-server jar (it carries KafkaIO)."""
    argv = [
        cfg.java, "-Xmx512m", "-cp", str(cfg.job_server_jar),
        "org.apache.beam.sdk.expansion.service.ExpansionService", str(cfg.expansion_port),
        "--defaultEnvironmentType=EMBEDDED", "--experiments=use_deprecated_read",
    ]  # fmt: skip
    return Service("beam-expansion-service", argv, cfg.expansion_port,
                   cfg.run_dir / "beam" / "expansion-service.log",
                   port_open(cfg.expansion_port))  # fmt: skip


def job_server_service(cfg: StackConfig) -> Service:
    """The Beam Flink job server, submitting to the local session cluster."""
    artifacts = cfg.run_dir / "beam" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [
        cfg.java, "-Xmx1g", *java17_flags(flink_dist(cfg)),
        "-jar", str(cfg.job_server_jar),
        f"--flink-master={HOST}:{cfg.flink_rest_port}",
        f"--flink-conf-dir={cfg.run_dir / 'flink' / 'conf'}",
        f"--artifacts-dir={artifacts}",
        f"--job-host={HOST}", f"--job-port={cfg.job_port}",
        f"--artifact-port={cfg.artifact_port}", f"--expansion-port={cfg.job_server_expansion_port}",
    ]  # fmt: skip
    return Service("beam-job-server", argv, cfg.job_port,
                   cfg.run_dir / "beam" / "job-server.log", port_open(cfg.job_port))  # fmt: skip


# --------------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------------


def create_topics(cfg: StackConfig) -> None:
    """The broker's topics; existing ones are left as they are."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka_config(cfg.bootstrap_servers))
    wanted = [
        *(NewTopic(t, num_partitions=cfg.alert_partitions, replication_factor=1)
          for t in ALERT_TOPICS),
        NewTopic(CONFIG_TOPIC, num_partitions=1, replication_factor=1,
                 config={"cleanup.policy": "compact"}),
        NewTopic(DEADLETTER_TOPIC, num_partitions=cfg.alert_partitions, replication_factor=1),
        NewTopic(FILTER_ERRORS_TOPIC, num_partitions=1, replication_factor=1),
    ]  # fmt: skip
    existing = admin.list_topics(timeout=10).topics
    missing = [t for t in wanted if t.topic not in existing]
    for topic, future in admin.create_topics(missing).items() if missing else ():
        try:
            future.result(timeout=30)
        except Exception as err:  # noqa: BLE001 - re-raised with the topic named
            raise StackError(f"kafka: cannot create topic {topic}: {err}") from err


def wait_for_producer_ids(cfg: StackConfig, timeout_s: float = 60.0) -> None:
    """Wait until the new broker hands out producer ids. Until then every idempotent producer
    logs "Failed to acquire idempotence PID ... Coordinator load in progress" and retries, so
    this waits first: a transactional producer's ``init_transactions`` returns once the
    coordinator is loaded. It writes no message."""
    from confluent_kafka import KafkaException, Producer

    deadline = time.monotonic() + timeout_s
    while True:
        # Quiet: its retries are the very lines this wait is for.
        probe = Producer(kafka_config(cfg.bootstrap_servers, {
            "log_level": 0, "transactional.id": "alertflow-stack-probe"}))  # fmt: skip
        try:
            probe.init_transactions(min(10.0, max(deadline - time.monotonic(), 1.0)))
            return
        except KafkaException as err:
            if time.monotonic() > deadline:
                raise StackError(f"kafka: no producer ids after {timeout_s:.0f} s: {err}") from err
        finally:
            probe.flush(0)


# --------------------------------------------------------------------------------------------
# up / status / down
# --------------------------------------------------------------------------------------------


def check_installed(cfg: StackConfig) -> None:
    missing = [
        str(p)
        for p in (cfg.kafka_jars, cfg.job_server_jar, cfg.flink_home / "lib")
        if not p.exists()
    ]
    if missing:
        raise StackError(f"not installed: {', '.join(missing)}; run `make install`")


# The run folders this process holds, with how many nested holds each.
_HELD: dict[Path, tuple[int, int]] = {}


@contextmanager
def hold(cfg: StackConfig, command: str) -> Iterator[None]:
    """Hold ``cfg.run_dir`` for ``command`` (an ``up`` or an ``alertflow run``) until the block
    ends: an exclusive lock on its ``lock`` file, which says who holds it. Nested holds in one
    process share the lock; the lock goes with the process, however it ends.

    Raises StackError naming the holder if another process holds the folder.
    """
    if cfg.run_dir in _HELD:
        fd, depth = _HELD[cfg.run_dir]
        _HELD[cfg.run_dir] = (fd, depth + 1)
    else:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        path = cfg.run_dir / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text(errors="replace").strip() or "another process"
            os.close(fd)
            raise StackError(
                f"{cfg.run_dir} is held by {holder}: one `alertflow run` or `stack up` at a "
                "time. Use the stack it runs, stop it (Ctrl-C there, or `alertflow stack "
                "down`), or give this one its own folder with ALERTFLOW_RUN_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"`{command}` (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})\n"
                 .encode())  # fmt: skip
        _HELD[cfg.run_dir] = (fd, 1)
    try:
        yield
    finally:
        fd, depth = _HELD[cfg.run_dir]
        if depth > 1:
            _HELD[cfg.run_dir] = (fd, depth - 1)
        else:
            del _HELD[cfg.run_dir]
            os.close(fd)


def up(cfg: StackConfig, log: Callable[[str], None] = print) -> list[Started]:
    """Start every service in order and wait for each to be healthy, holding the run folder.

    Refuses to start over a stack that is still running from the same run folder, or while
    another process holds it. On a failure or an interrupt, everything this call started is
    stopped again before the error is raised.
    """
    with hold(cfg, "alertflow stack up"):
        return _up(cfg, log)


def _up(cfg: StackConfig, log: Callable[[str], None]) -> list[Started]:
    state = RunState(cfg.run_dir)
    if any(is_running(p) for p in state.load()):
        raise StackError(
            f"a stack is already running from {cfg.run_dir}; `alertflow stack status` shows "
            "it, `alertflow stack down` stops it"
        )
    check_installed(cfg)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "stack.json").write_text(json.dumps(_describe(cfg), indent=2))
    started: list[Started] = []

    def start(service: Service) -> None:
        t0 = time.monotonic()
        proc = spawn(service)
        started.append(proc)
        state.save(started)
        wait_healthy(service, proc, cfg.start_timeout_s)
        log(f"{service.name:<24} pid {proc.pid:<8} healthy in {time.monotonic() - t0:5.1f} s")

    try:
        start(kafka_service(cfg))
        create_topics(cfg)
        wait_for_producer_ids(cfg)
        conf = write_flink_conf(cfg)
        application = cfg.mode == "application"
        if application:
            # The job's jar is built against the worker pool and the expansion service, and
            # the JobManager runs it as soon as it starts.
            start(worker_pool_service(cfg))
            start(expansion_service(cfg))
            build_application_jar(cfg, log)
        start(flink_service(cfg, conf))
        for index in range(1, cfg.taskmanagers + 1):
            start(flink_service(cfg, conf, taskmanager=index))
        if not application:
            start(worker_pool_service(cfg))
            start(expansion_service(cfg))
            start(job_server_service(cfg))
    except BaseException:
        for proc in reversed(started):
            stop(proc)
        state.save([])
        raise
    return started


def build_application_jar(cfg: StackConfig, log: Callable[[str], None] = print) -> Path:
    """Write the broker as a Flink application jar (``cfg.application_jar``), unless the one
    there was built from the same pipeline code, versions and stack endpoints.

    The build runs ``alertflow submit broker --output-executable`` in a child process (Beam's
    FlinkRunner starts a job server of its own for it) and takes about two minutes. KafkaIO
    splits into ``alert_partitions`` readers, the most any rescale can use.
    """
    home = cfg.application_home
    (home / "usrlib").mkdir(parents=True, exist_ok=True)
    lib = home / "lib"
    if not lib.is_symlink():
        lib.symlink_to(cfg.flink_home / "lib")
    args = ["--parallelism", str(cfg.alert_partitions), "--job-name", APPLICATION_JOB_NAME]
    key = _application_key(cfg, args)
    stamp = cfg.application_jar.with_suffix(".key")
    if cfg.application_jar.exists() and stamp.exists() and stamp.read_text() == key:
        log(f"{'application jar':<24} up to date: {cfg.application_jar}")
        return cfg.application_jar
    t0 = time.monotonic()
    build_log = cfg.run_dir / "flink" / "log" / "application-jar.log"
    build_log.parent.mkdir(parents=True, exist_ok=True)
    with open(build_log, "wb") as out:
        result = subprocess.run(
            [sys.executable, "-m", "control_service.cli", "submit", "broker", *args,
             "--output-executable", str(cfg.application_jar)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=600,
            env={**os.environ, **cfg.environment()}, check=False,
        )  # fmt: skip
    if result.returncode != 0 or not cfg.application_jar.exists():
        raise StackError(f"application jar: build failed; see {build_log}:\n{tail(build_log)}")
    stamp.write_text(key)
    log(f"{'application jar':<24} built in {time.monotonic() - t0:5.1f} s: {cfg.application_jar}")
    return cfg.application_jar


def _application_key(cfg: StackConfig, args: Sequence[str]) -> str:
    """What the application jar depends on: pipeline code and sizing, versions, endpoints and
    arguments."""
    described = {k: v for k, v in _describe(cfg).items() if k != "taskmanagers"}
    digest = hashlib.sha256(json.dumps([described, list(args)], sort_keys=True).encode())
    sources = [path for folder in ("pipelines", "transforms")
               for path in (REPO_ROOT / folder).rglob("*.py")]  # fmt: skip
    # The pipeline options come from the sizing too.
    for path in sorted([*sources, REPO_ROOT / "flink_deploy" / "sizing.py"]):
        digest.update(path.relative_to(REPO_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def start_service(cfg: StackConfig, service: Service) -> Started:
    """Start ``service`` into the running stack and wait until it is healthy. It takes the
    place of a dead record of its name (status lists keep their order). If it does not come
    up, or the wait is interrupted, it is stopped and unrecorded before the error is raised."""
    state = RunState(cfg.run_dir)
    recorded = state.load()
    if any(p.name == service.name and is_running(p) for p in recorded):
        raise StackError(f"{service.name} is already running")
    proc = spawn(service)
    names = [p.name for p in recorded]
    if service.name in names:
        recorded[names.index(service.name)] = proc
    else:
        recorded.append(proc)
    state.save(recorded)
    try:
        wait_healthy(service, proc, cfg.start_timeout_s)
    except BaseException:
        stop(proc)
        state.save([p for p in state.load() if p != proc])
        raise
    return proc


def start_taskmanager(
    cfg: StackConfig, index: int, profile: TaskManagerProfile = DEFAULT_PROFILE
) -> Started:
    """Start TaskManager ``index`` with ``profile`` into the running stack and wait until it
    registers with the JobManager."""
    return start_service(cfg, flink_service(cfg, cfg.run_dir / "flink" / "conf", index, profile))


def autoscaler_service(cfg: StackConfig, policy: Path) -> Service:
    """`alertflow autoscale` with the local driver, on ``cfg.autoscaler_port``."""
    argv = [
        sys.executable, "-m", "control_service.cli", "autoscale", "--policy", str(policy),
        "--port", str(cfg.autoscaler_port), "--bootstrap", cfg.bootstrap_servers,
        "--flink-rest-url", cfg.flink_rest_url,
    ]  # fmt: skip
    return Service("alertflow-autoscaler", argv, cfg.autoscaler_port,
                   cfg.run_dir / "autoscaler.log", port_open(cfg.autoscaler_port),
                   cfg.environment())  # fmt: skip


def start_autoscaler(cfg: StackConfig, policy: Path) -> Started:
    """Start the autoscaler into the running stack; ``down`` stops it first."""
    return start_service(cfg, autoscaler_service(cfg, policy))


#: The local control service's admin token, in the run folder.
ADMIN_TOKEN_FILE = "control/admin.token"


def local_admin_token(cfg: StackConfig) -> str:
    """The admin token of the local control service: made once per run folder, readable by its
    owner only (:data:`ADMIN_TOKEN_FILE`), and what ``alertflow filters`` uses when no token
    is given."""
    path = cfg.run_dir / ADMIN_TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def local_control_token(url: str) -> str | None:
    """The local stack's admin token if ``url`` is its control service (the run folder and
    port of ALERTFLOW_RUN_DIR and ALERTFLOW_CONTROL_PORT) and one was made; else None, so
    that the token never goes anywhere else."""
    local = f"http://{HOST}:{_env_int('ALERTFLOW_CONTROL_PORT', 5000)}"
    path = default_run_dir() / ADMIN_TOKEN_FILE
    return path.read_text().strip() if url.rstrip("/") == local and path.exists() else None


def control_service(cfg: StackConfig) -> Service:
    """`alertflow serve` on ``cfg.control_port``, for this stack, with the local admin token."""
    argv = [sys.executable, "-m", "control_service.cli", "serve", "--port", str(cfg.control_port)]
    env = {**cfg.environment(),
           "ALERTFLOW_CONTROL_API_KEYS": f"{local_admin_token(cfg)}:admin:admin"}  # fmt: skip
    return Service("alertflow-control", argv, cfg.control_port, cfg.run_dir / "control.log",
                   control_healthy(cfg.control_url), env)  # fmt: skip


def start_control(cfg: StackConfig) -> Started:
    """Start the control service into the running stack; ``down`` stops it first."""
    return start_service(cfg, control_service(cfg))


def stop_service(cfg: StackConfig, name: str) -> None:
    """Stop the recorded service ``name`` (SIGTERM first, so a TaskManager leaves the cluster
    at once) and drop it from the record."""
    state = RunState(cfg.run_dir)
    recorded = state.load()
    matches = [p for p in recorded if p.name == name]
    if not matches:
        raise StackError(f"no service named {name} in {state.path}")
    stop(matches[0])
    if is_running(matches[0]) or _group_alive(matches[0].pid):
        raise StackError(f"{name} (pid {matches[0].pid}) did not stop")
    state.save([p for p in state.load() if p != matches[0]])


def stop_taskmanager(cfg: StackConfig, name: str) -> None:
    """Stop the recorded TaskManager ``name`` and drop it from the record."""
    if not name.startswith("flink-taskmanager-"):
        raise StackError(f"{name} is not a TaskManager")
    stop_service(cfg, name)


def _describe(cfg: StackConfig) -> dict:
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


def status(cfg: StackConfig) -> dict:
    """Each recorded service with its PID, port, log, whether it runs and whether it is healthy."""
    checks = {
        "kafka": kafka_healthy(cfg.bootstrap_servers),
        "flink-jobmanager": flink_jobmanager_healthy(cfg.flink_rest_url),
        "beam-workerpool": port_open(cfg.worker_pool_port),
        "beam-expansion-service": port_open(cfg.expansion_port),
        "beam-job-server": port_open(cfg.job_port),
        "alertflow-autoscaler": port_open(cfg.autoscaler_port),
        "alertflow-control": control_healthy(cfg.control_url),
    }
    services = []
    for proc in RunState(cfg.run_dir).load():
        running = is_running(proc)
        check = checks.get(proc.name) or flink_taskmanager_healthy(cfg.flink_rest_url, proc.name)
        services.append(
            {
                "name": proc.name,
                "pid": proc.pid,
                "port": proc.port or None,
                "running": running,
                "healthy": running and check(),
                "rss_mib": rss_mib(proc.pid) if running else 0.0,
                **({"profile": proc.profile} if proc.profile else {}),
                "log": proc.log,
            }
        )
    return {
        "run_dir": str(cfg.run_dir),
        "flink_web_ui": cfg.flink_rest_url,
        "healthy": bool(services) and all(s["healthy"] for s in services),
        "rss_mib": round(sum(s["rss_mib"] for s in services), 1),
        "services": services,
    }


def down(cfg: StackConfig, log: Callable[[str], None] = print) -> list[str]:
    """Stop every recorded process, newest first; returns the names of any still alive."""
    state = RunState(cfg.run_dir)
    recorded = state.load()
    for proc in reversed(recorded):
        if is_running(proc):
            stop(proc)
            log(f"stopped {proc.name} (pid {proc.pid})")
    left = [p.name for p in recorded if is_running(p) or _group_alive(p.pid)]
    if not left:
        state.save([])
    return left
