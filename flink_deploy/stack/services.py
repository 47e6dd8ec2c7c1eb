"""What each service of the stack is: the command line, configuration files, port, log and
health check of the Flink JobManager and TaskManagers, the Beam worker pool,
expansion service and job server, the autoscaler and the control service.

Functions here build a :class:`Service` (writing the configuration it needs into the run
folder) and start nothing: flink_deploy.stack.supervisor starts, watches and stops them.
Kafka's are in flink_deploy.stack.kafka.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flink_deploy.settings import REPO_ROOT
from flink_deploy.sizing import DEFAULT_PROFILE, TaskManagerProfile
from flink_deploy.stack.config import (
    APPLICATION_JOB_ID,
    HOST,
    PIPELINE_RUNNER_CLASS,
    StackConfig,
    StackError,
    StackMode,
    StackPorts,
)
from flink_deploy.stack.health import (
    control_healthy,
    flink_jobmanager_healthy,
    flink_taskmanager_healthy,
    port_open,
)
from flink_deploy.stack.placement import NodePlan, Place

#: TaskManager ``n`` is the service ``flink-taskmanager-<n>``, registered under that resource id.
TASKMANAGER_PREFIX = "flink-taskmanager-"


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
    # The address it listens on, and the node it runs on (None: the host, flink_deploy/nodes.py).
    host: str = HOST
    node: NodePlan | None = None


def _listening(
    cfg: StackConfig,
    name: str,
    argv: list[str],
    port: int,
    log: str,
    env: dict[str, str] | None = None,
    place: Place | NodePlan | None = Place.CONTROL,
) -> Service:
    """A service that is healthy once it listens on ``port`` at ``place`` (a fixed node's, a
    TaskManager's, or None: the host's loopback); ``log`` is in the run folder."""
    node: NodePlan | None
    if place is None:
        node, host = None, HOST
    elif isinstance(place, NodePlan):
        node, host = place, cfg.node_address(place)
    else:
        node, host = cfg.node_plan(place), cfg.host(place)
    return Service(
        name, argv, port, cfg.run_dir / log, port_open(port, host), env or {}, "", host, node
    )


FLINK_LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = File
appender.main.fileName = ${sys:log.file}
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
"""


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
    jobmanager = cfg.host(Place.JOBMANAGER)
    # On a node a process binds every address of its namespace (its own eth0 and loopback), as
    # in Flink's container images: the JobManager's REST handler reaches its own blob server
    # through the loopback.
    bind = "0.0.0.0" if cfg.nodes else HOST
    settings: dict[str, Any] = {
        "jobmanager": {
            "bind-host": bind,
            "rpc": {"address": jobmanager, "port": cfg.flink_rpc_port},
            "memory": {"process": {"size": "1024m"}},
        },
        "taskmanager": {
            # On nodes each TaskManager is given its own address (flink_service).
            "bind-host": HOST,
            "host": HOST,
            "numberOfTaskSlots": cfg.slots_per_taskmanager,
            # Memory: each TaskManager's profile, as dynamic properties (flink_deploy/sizing.py).
        },
        "parallelism": {"default": 1},
        "rest": {"address": jobmanager, "bind-address": bind, "port": cfg.flink_rest_port},
        "io": {"tmp": {"dirs": str(flink / "tmp")}},
        "state": {"checkpoints": {"dir": f"file://{flink / 'checkpoints'}"}},
        "web": {"submit": {"enable": True}, "cancel": {"enable": True}},
    }
    if cfg.mode is StackMode.APPLICATION:
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
        host, node = cfg.host(Place.JOBMANAGER), cfg.node_plan(Place.JOBMANAGER)
        entry = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
        port, healthy = cfg.flink_rest_port, flink_jobmanager_healthy(cfg.flink_rest_url)
        jvm_mem = _bash_java_utils(cfg, dist, conf, "GET_JM_RESOURCE_PARAMS")[0]
        args = []
        if cfg.mode is StackMode.APPLICATION:
            # The entry point finds the job's jar in $(dirname FLINK_LIB_DIR)/usrlib.
            entry = "org.apache.flink.container.entrypoint.StandaloneApplicationClusterEntryPoint"
            lib_dir = cfg.application_home / "lib"
            args = [
                "--job-classname",
                PIPELINE_RUNNER_CLASS,
                "--job-id",
                APPLICATION_JOB_ID,
                "--flink-conf-dir",
                str(conf),
            ]
    else:
        name = f"{TASKMANAGER_PREFIX}{taskmanager}"
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
        host, node = HOST, cfg.taskmanager_plan(taskmanager, profile)
        if node is not None:
            host = cfg.node_address(node)
            args += ["-D", f"taskmanager.host={host}", "-D", "taskmanager.bind-host=0.0.0.0"]
    log = cfg.run_dir / "flink" / "log" / f"{name}.log"
    argv = [
        cfg.java,
        *jvm_mem,
        *java17_flags(dist),
        f"-Dlog.file={log}",
        f"-Dlog4j.configurationFile=file:{conf / 'log4j.properties'}",
        "-classpath",
        classpath,
        entry,
        "--configDir",
        str(conf),
        *args,
    ]
    env = {
        "FLINK_CONF_DIR": str(conf),
        "FLINK_LIB_DIR": str(lib_dir),
        "FLINK_PLUGINS_DIR": str(cfg.flink_home / "plugins"),
        "FLINK_OPT_DIR": str(cfg.flink_home / "opt"),
    }
    return Service(
        name, argv, port, log.with_suffix(".out"), healthy, env, profile_name, host, node
    )


def _bash_java_utils(
    cfg: StackConfig, dist: Path, conf: Path, params: str, dynamic: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    result = subprocess.run(
        [
            cfg.java,
            "-cp",
            f"{cfg.flink_home / 'bin' / 'bash-java-utils.jar'}:{dist}",
            "org.apache.flink.runtime.util.bash.BashJavaUtils",
            params,
            "--configDir",
            str(conf),
            *dynamic,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
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


def worker_pool_service(
    cfg: StackConfig, taskmanager: int | None = None, profile: TaskManagerProfile = DEFAULT_PROFILE
) -> Service:
    """The Python SDK worker pool. It forks `python` from PATH, so the venv goes first.

    On the host one pool serves every TaskManager; on nodes TaskManager ``taskmanager`` has its
    own, on its node, at the same ``localhost`` port (the Kubernetes sidecar pattern)."""
    venv_bin = str(Path(sys.executable).parent)
    argv = [
        sys.executable,
        "-m",
        "apache_beam.runners.worker.worker_pool_main",
        f"--service_port={cfg.worker_pool_port}",
    ]
    env = {
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        # The pipeline's own packages (transforms/, pipelines/) must import in the workers.
        "PYTHONPATH": f"{REPO_ROOT}:{os.environ.get('PYTHONPATH', '')}".rstrip(":"),
    }
    node = None if taskmanager is None else cfg.taskmanager_plan(taskmanager, profile)
    if node is None:
        return _listening(
            cfg, "beam-workerpool", argv, cfg.worker_pool_port, "beam/workerpool.log", env
        )
    name = f"beam-workerpool-{taskmanager}"
    return _listening(cfg, name, argv, cfg.worker_pool_port, f"beam/{name}.log", env, node)


def expansion_service(cfg: StackConfig) -> Service:
    """The KafkaIO expansion service, run from the job-server jar (it carries KafkaIO). Only a
    pipeline's submitter calls it, to build the pipeline, so it stays on the host's loopback
    even on nodes: Beam's Python client reaches an expansion service only at a loopback
    address (``grpc.local_channel_credentials`` in apache_beam/transforms/external.py)."""
    argv = [
        cfg.java,
        "-Xmx512m",
        "-cp",
        str(cfg.job_server_jar),
        "org.apache.beam.sdk.expansion.service.ExpansionService",
        str(cfg.expansion_port),
        "--defaultEnvironmentType=EMBEDDED",
        "--experiments=use_deprecated_read",
    ]
    return _listening(
        cfg,
        "beam-expansion-service",
        argv,
        cfg.expansion_port,
        "beam/expansion-service.log",
        place=None,
    )


def job_server_service(cfg: StackConfig) -> Service:
    """The Beam Flink job server, submitting to the local session cluster."""
    artifacts = cfg.run_dir / "beam" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [
        cfg.java,
        "-Xmx1g",
        *java17_flags(flink_dist(cfg)),
        "-jar",
        str(cfg.job_server_jar),
        f"--flink-master={cfg.host(Place.JOBMANAGER)}:{cfg.flink_rest_port}",
        f"--flink-conf-dir={cfg.run_dir / 'flink' / 'conf'}",
        f"--artifacts-dir={artifacts}",
        f"--job-host={cfg.host(Place.CONTROL)}",
        f"--job-port={cfg.job_port}",
        f"--artifact-port={cfg.artifact_port}",
        f"--expansion-port={cfg.job_server_expansion_port}",
    ]
    return _listening(cfg, "beam-job-server", argv, cfg.job_port, "beam/job-server.log")


def autoscaler_service(cfg: StackConfig, policy: Path) -> Service:
    """`alertflow autoscale` with the local driver, on ``cfg.autoscaler_port``."""
    argv = [
        sys.executable,
        "-m",
        "control_service.cli",
        "autoscale",
        "--policy",
        str(policy),
        "--host",
        cfg.host(Place.CONTROL),
        "--port",
        str(cfg.autoscaler_port),
        "--bootstrap",
        cfg.bootstrap_servers,
        "--flink-rest-url",
        cfg.flink_rest_url,
    ]
    return _listening(
        cfg, "alertflow-autoscaler", argv, cfg.autoscaler_port, "autoscaler.log", cfg.environment()
    )


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
    local = StackPorts.local()
    path = local.run_dir / ADMIN_TOKEN_FILE
    return (
        path.read_text().strip() if url.rstrip("/") == local.control_url and path.exists() else None
    )


def control_service(cfg: StackConfig) -> Service:
    """`alertflow serve` on ``cfg.control_port``, for this stack, with the local admin token."""
    argv = [sys.executable, "-m", "control_service.cli", "serve"]
    argv += ["--host", cfg.host(Place.CONTROL), "--port", str(cfg.control_port)]
    env = {
        **cfg.environment(),
        "ALERTFLOW_CONTROL_API_KEYS": f"{local_admin_token(cfg)}:admin:admin",
    }
    return Service(
        "alertflow-control",
        argv,
        cfg.control_port,
        cfg.run_dir / "control.log",
        control_healthy(cfg.control_url),
        env,
        "",
        cfg.host(Place.CONTROL),
        cfg.node_plan(Place.CONTROL),
    )
