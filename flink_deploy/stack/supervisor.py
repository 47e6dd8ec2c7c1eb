"""The supervisor: starts the stack's services as plain processes, records them in the run
folder, health-checks them and stops them by their own PID.

``up`` holds the run folder (:func:`hold`) and writes ``state.json`` (:class:`RunState`) with
each process's PID and creation time, so that a recycled PID is never signalled. ``stop`` and
``down`` take each service's whole process group (the worker pool's forked SDK workers go with
it) and check that none is left. Processes are read through psutil.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from flink_deploy.nodes import NodeError, Nodes, node_problem
from flink_deploy.sizing import DEFAULT_PROFILE, TaskManagerProfile
from flink_deploy.stack.appjar import build_application_jar
from flink_deploy.stack.config import HOST, StackConfig, StackError, StackMode, describe, tail
from flink_deploy.stack.health import (
    control_healthy,
    flink_jobmanager_healthy,
    flink_taskmanager_healthy,
    kafka_healthy,
    port_in_use,
    port_open,
    wait_for_producer_ids,
)
from flink_deploy.stack.kafka import create_topics, kafka_service
from flink_deploy.stack.runlock import hold
from flink_deploy.stack.services import (
    TASKMANAGER_PREFIX,
    Service,
    autoscaler_service,
    control_service,
    expansion_service,
    flink_service,
    job_server_service,
    worker_pool_service,
    write_flink_conf,
)
from transforms.polling import wait_until

# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """A process that ``up`` started, as recorded in state.json."""

    name: str
    pid: int
    # psutil's creation time (seconds since the epoch): with the PID, what tells the process
    # we started from a later one that was given the same PID.
    create_time: float
    port: int
    log: str
    # A TaskManager's profile name (see TaskManagerProfile); empty for other services.
    profile: str = ""
    # The node it runs on and the address it listens on ("": the host's loopback).
    node: str = ""
    address: str = ""


def _create_time(pid: int) -> float | None:
    """The creation time of process ``pid``, or None if there is none."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


# The processes this one spawned, kept until they exit so that each is reaped (no zombie, and
# no "subprocess is still running" ResourceWarning when a Popen is dropped).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _reap() -> None:
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            del _CHILDREN[pid]


def is_running(proc: Started) -> bool:
    """True if the recorded process is still the one we started (same PID, same creation time)
    and has not exited (a zombie has)."""
    _reap()
    try:
        process = psutil.Process(proc.pid)
        return (
            process.create_time() == proc.create_time and process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def group_members(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) processes in process group ``pgid``."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            in_group = os.getpgid(process.pid) == pgid
        except OSError:
            continue
        if in_group and process.info["status"] not in (None, psutil.STATUS_ZOMBIE):
            members.append(process.pid)
    return members


def _group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def rss_mib(pgid: int) -> float:
    """Resident memory of the whole process group ``pgid`` (a JVM, or the pool and its workers)."""
    total = 0
    for pid in group_members(pgid):
        with suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return round(total / 2**20, 1)


class RunState:
    """state.json in the run folder: the processes started, written after each start."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "state.json"

    def load(self) -> list[Started]:
        if not self.path.exists():
            return []
        return [
            Started(**_upgrade(entry)) for entry in json.loads(self.path.read_text())["services"]
        ]

    def save(self, started: list[Started]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"services": [asdict(s) for s in started]}, indent=2))
        tmp.replace(self.path)


def _upgrade(entry: dict[str, Any]) -> dict[str, Any]:
    """A state.json entry of a stack started before the supervisor used psutil, which recorded
    the start time in clock ticks since boot: converted as psutil converts them, so that
    ``down`` still stops that stack."""
    if "start_ticks" not in entry:
        return entry
    entry = dict(entry)
    ticks = entry.pop("start_ticks")
    entry["create_time"] = float(ticks) / os.sysconf("SC_CLK_TCK") + psutil.boot_time()
    return entry


def spawn(service: Service, nodes: Nodes | None = None) -> Started:
    """Start ``service`` in a new session (its own process group) with its output in its log;
    on its node, made first if it is not there yet, when it has one (``nodes`` makes it)."""
    argv, join = service.argv, None
    if service.node is not None:
        if nodes is None:
            raise StackError(f"{service.name}: runs on node {service.node.name}, but no nodes")
        try:
            node = nodes.ensure(service.node.name, service.node.index, service.node.budget)
        except NodeError as error:
            raise StackError(f"{service.name}: {error}") from None
        argv, join = node.command(argv), node.join
    if port_in_use(service.port, service.host):
        raise StackError(
            f"{service.name}: port {service.port} on {service.host} is already in use; stop "
            f"whatever holds it (`ss -ltnp 'sport = :{service.port}'`) or choose another port "
            "with the matching ALERTFLOW_*_PORT variable"
        )
    service.log.parent.mkdir(parents=True, exist_ok=True)
    with open(service.log, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **service.env},
            start_new_session=True,
            preexec_fn=join,
        )
    _CHILDREN[proc.pid] = proc
    created = _create_time(proc.pid)
    if created is None:
        raise StackError(f"{service.name}: exited at once; see {service.log}:\n{tail(service.log)}")
    node_name = service.node.name if service.node else ""
    return Started(
        service.name,
        proc.pid,
        created,
        service.port,
        str(service.log),
        service.profile,
        node_name,
        service.host if service.node else "",
    )


def wait_healthy(service: Service, started: Started, timeout_s: float) -> None:
    """Wait until ``service`` passes its health check; StackError with the end of its log if it
    exits first or is not healthy within ``timeout_s``."""

    def healthy() -> bool:
        if not is_running(started):
            raise StackError(
                f"{service.name}: process {started.pid} exited before it was healthy; "
                f"see {service.log}:\n{tail(service.log)}"
            )
        return service.healthy()

    try:
        wait_until(healthy, timeout_s, 0.5, f"{service.name} to be healthy")
    except TimeoutError:
        raise StackError(
            f"{service.name}: not healthy after {timeout_s:.0f} s; see {service.log}:\n"
            f"{tail(service.log)}"
        ) from None


def stop(proc: Started, grace_s: float = 20.0) -> None:
    """Stop one recorded process and its process group: SIGTERM, then SIGKILL after grace_s.
    A process that is no longer the one recorded (a recycled PID) is left alone."""
    if not is_running(proc):
        return

    def gone() -> bool:
        return not is_running(proc) and not _group_alive(proc.pid)

    _signal_group(proc.pid, signal.SIGTERM)
    try:
        wait_until(gone, grace_s, 0.2, f"{proc.name} to stop")
        return
    except TimeoutError:
        _signal_group(proc.pid, signal.SIGKILL)
    with suppress(TimeoutError):
        wait_until(gone, 5.0, 0.1, f"{proc.name} to die")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


# --------------------------------------------------------------------------------------------
# up / start / stop / status / down
# --------------------------------------------------------------------------------------------


def check_installed(cfg: StackConfig) -> None:
    """StackError naming what ``make install`` has not fetched yet."""
    missing = [
        str(p)
        for p in (cfg.kafka_jars, cfg.job_server_jar, cfg.flink_home / "lib")
        if not p.exists()
    ]
    if missing:
        raise StackError(f"not installed: {', '.join(missing)}; run `make install`")


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
    (cfg.run_dir / "stack.json").write_text(json.dumps(describe(cfg), indent=2))
    started: list[Started] = []

    nodes = cfg.node_set() if cfg.nodes else None
    if nodes is not None:
        problem = node_problem()
        if problem:
            raise StackError(f"--nodes: {problem}")

    def start(service: Service) -> None:
        t0 = time.monotonic()
        proc = spawn(service, nodes)
        started.append(proc)
        state.save(started)
        wait_healthy(service, proc, cfg.start_timeout_s)
        log(f"{service.name:<24} pid {proc.pid:<8} healthy in {time.monotonic() - t0:5.1f} s")

    try:
        start(kafka_service(cfg))
        create_topics(cfg)
        wait_for_producer_ids(cfg)
        conf = write_flink_conf(cfg)
        application = cfg.mode is StackMode.APPLICATION
        if application:
            # The job's jar is built against the worker pool and the expansion service, and
            # the JobManager runs it as soon as it starts.
            if not cfg.nodes:  # on nodes each TaskManager brings its own
                start(worker_pool_service(cfg))
            start(expansion_service(cfg))
            build_application_jar(cfg, log)
        start(flink_service(cfg, conf))
        for index in range(1, cfg.taskmanagers + 1):
            if cfg.nodes:  # each TaskManager's own pool, ready before it
                start(worker_pool_service(cfg, index))
            start(flink_service(cfg, conf, taskmanager=index))
        if not application:
            if not cfg.nodes:
                start(worker_pool_service(cfg))
            start(expansion_service(cfg))
            start(job_server_service(cfg))
    except BaseException:
        for proc in reversed(started):
            stop(proc)
        state.save([])
        if nodes is not None:
            nodes.remove_all()
        raise
    return started


def start_service(cfg: StackConfig, service: Service) -> Started:
    """Start ``service`` into the running stack and wait until it is healthy. It takes the
    place of a dead record of its name (status lists keep their order). If it does not come
    up, or the wait is interrupted, it is stopped and unrecorded before the error is raised."""
    state = RunState(cfg.run_dir)
    recorded = state.load()
    if any(p.name == service.name and is_running(p) for p in recorded):
        raise StackError(f"{service.name} is already running")
    proc = spawn(service, cfg.node_set() if cfg.nodes else None)
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
    registers with the JobManager. On nodes its node is made, and its worker pool started on
    it first; if the TaskManager does not come up, both go again."""
    taskmanager = flink_service(cfg, cfg.run_dir / "flink" / "conf", index, profile)
    if not cfg.nodes:
        return start_service(cfg, taskmanager)
    pool = start_service(cfg, worker_pool_service(cfg, index, profile))
    try:
        return start_service(cfg, taskmanager)
    except BaseException:
        stop_service(cfg, pool.name)
        cfg.node_set().remove(pool.node)
        raise


def start_autoscaler(cfg: StackConfig, policy: Path) -> Started:
    """Start the autoscaler into the running stack; ``down`` stops it first."""
    return start_service(cfg, autoscaler_service(cfg, policy))


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
    if not name.startswith(TASKMANAGER_PREFIX):
        raise StackError(f"{name} is not a TaskManager")
    recorded = {p.name: p for p in RunState(cfg.run_dir).load()}
    node = recorded[name].node if name in recorded else ""
    stop_service(cfg, name)
    if node:  # its worker pool and its node go with it
        pool = f"beam-workerpool-{name.removeprefix(TASKMANAGER_PREFIX)}"
        if pool in recorded:
            stop_service(cfg, pool)
        try:
            cfg.node_set().remove(node)
        except NodeError as error:
            raise StackError(f"{name}: {error}") from None


def status(cfg: StackConfig) -> dict[str, Any]:
    """Each recorded service with its PID, port, log, whether it runs and whether it is healthy."""
    checks = {
        "kafka": kafka_healthy(cfg.bootstrap_servers),
        "flink-jobmanager": flink_jobmanager_healthy(cfg.flink_rest_url),
        "alertflow-control": control_healthy(cfg.control_url),
    }
    budgets = {n.name: n.budget for n in cfg.node_set().all()}
    services: list[dict[str, Any]] = []
    for proc in RunState(cfg.run_dir).load():
        running = is_running(proc)
        check = checks.get(proc.name)
        if check is None:
            check = (
                flink_taskmanager_healthy(cfg.flink_rest_url, proc.name)
                if proc.name.startswith(TASKMANAGER_PREFIX)
                else port_open(proc.port, proc.address or HOST)
            )
        node = budgets.get(proc.node)
        services.append(
            {
                "name": proc.name,
                "pid": proc.pid,
                "port": proc.port or None,
                "running": running,
                "healthy": running and check(),
                "rss_mib": rss_mib(proc.pid) if running else 0.0,
                **({"profile": proc.profile} if proc.profile else {}),
                **(
                    {"node": proc.node, "address": proc.address, "budget": asdict(node)}
                    if node
                    else {}
                ),
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
        removed = cfg.node_set().remove_all()
        if removed:
            log(f"removed the nodes {', '.join(removed)}")
    return left
