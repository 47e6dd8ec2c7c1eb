"""Capacity: how fast each way of doing the broker's work drains a preloaded backlog, and the CPU
seconds every process spends per 1,000 alerts.

Starts its own stacks (temporary run folders, ports +600 and +700) beside any other. A backlog
of real LSST alerts (~110 KB, cycled with fresh ids; 8 partitions) is on the topic before each
reader starts. Measured, in one run, on the same backlog:

- ``bare consumer``: one confluent-kafka consumer that reads and discards (the I/O limit);
- ``baseline xN``: N plain processes (one consumer group) doing the broker's work: decode, the
  annotators the filters need, the compiled filter set, produce the matches;
- ``broker session``: the broker submitted to a session cluster (one TaskManager, 2 slots);
- ``broker session, 1 core``: the same with the TaskManager and its Python workers held to one
  core by a cgroup v1 CPU quota (needs root);
- ``broker application``: the broker as a reactive application cluster; its TaskManager starts
  after the backlog is loaded.

The filters are the six examples plus a catch-all (every LSST alert, lite): the drain rate is
the catch-all's distinct matches over the span between its first and last (start-up excluded),
and every run's pairs are checked against the local reference. CPU is utime + stime from /proc
over the same span, per process (the worker pool with its SDK workers).

    .venv/bin/python benchmarks/bench_capacity.py [--alerts 20000] [--skip application]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from control_service.snapshots import publish_snapshot
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import StackConfig, StackMode
from pipelines import broker
from tests.backlog import Backlog, backlog_filters, catch_all, job_restarts, preload, watch_drain
from tests.e2e.test_broker_pipeline import pairs_on
from transforms.decode import decode_message
from transforms.filters.document import filter_set_from_snapshot
from transforms.filters.model import FilterSet
from transforms.kafka_clients import ensure_topic
from transforms.local import LocalRunner
from transforms.publish import lite_message
from transforms.schemas import LsstSchemas
from transforms.topics import ALERT_TOPICS, CONFIG_TOPIC

TICK = os.sysconf("SC_CLK_TCK")
DRAIN_DEADLINE_S = 900.0
CGROUP = Path("/sys/fs/cgroup/cpu")
PARTITIONS = 8


# --------------------------------------------------------------------------------------------
# CPU from /proc
# --------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and of its waited-for children, in seconds (0 if gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / TICK


def group_cpu(pgid: int) -> float:
    return sum(cpu_seconds(p) for p in supervisor.group_members(pgid))


@dataclass
class CpuMeter:
    """CPU seconds of named process groups between :meth:`start` and :meth:`stop`."""

    groups: dict[str, int]
    began: dict[str, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.began = {name: group_cpu(pgid) for name, pgid in self.groups.items()}

    def stop(self) -> None:
        self.spent = {n: group_cpu(g) - self.began.get(n, 0.0) for n, g in self.groups.items()}


def stack_groups(cfg: StackConfig) -> dict[str, int]:
    recorded = supervisor.RunState(cfg.run_dir).load()
    return {p.name: p.pid for p in recorded if supervisor.is_running(p)}


@dataclass
class Row:
    name: str
    alerts: int
    seconds: float
    cpu: dict[str, float]
    note: str = ""

    @property
    def rate(self) -> float:
        return self.alerts / self.seconds if self.seconds > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# The readers
# --------------------------------------------------------------------------------------------


def consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 8 << 20,
        }
    )


def bare_consumer(bootstrap: str, backlog: Backlog, groups: dict[str, int]) -> Row:
    meter = CpuMeter(groups)
    own = cpu_seconds(os.getpid())
    reader = consumer(bootstrap, f"bare-{uuid.uuid4().hex}")
    reader.subscribe([backlog.topic])
    done, start = 0, None
    while done < backlog.alerts:
        batch = reader.consume(1000, timeout=10.0)
        if not batch:
            break
        if start is None:
            start = time.monotonic()
            meter.start()
        done += sum(1 for m in batch if m.error() is None)
    meter.stop()
    reader.close()
    cpu = {**meter.spent, "bare consumer": cpu_seconds(os.getpid()) - own}
    return Row("bare consumer (read, discard)", done, time.monotonic() - (start or 0), cpu)


def baseline_worker(bootstrap: str, topic: str, partitions: str, out: str, snapshot: str) -> None:
    """One baseline process: the broker's work in a plain loop over the partitions
    ``partitions`` (comma-separated) of ``topic``; prints what it did as JSON."""
    runner = LocalRunner(filter_set_from_snapshot(json.loads(snapshot)))
    schemas = LsstSchemas()
    reader = consumer(bootstrap, f"base-{uuid.uuid4().hex}")
    reader.assign([TopicPartition(topic, int(p), OFFSET_BEGINNING) for p in partitions.split(",")])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    done, first, last, idle_since = 0, None, None, time.monotonic()
    while time.monotonic() - idle_since < 10.0:
        batch = [m for m in reader.consume(500, timeout=1.0) if m.error() is None]
        if not batch:
            continue
        first = first or time.time()
        alerts = [a for m in batch for a in decode_message(m.value(), schemas)]
        for match in runner.run(alerts)[0]:
            key, value = lite_message(match, int(time.time() * 1000))
            producer.produce(out, key=key, value=value)
            producer.poll(0)
        producer.flush(60)
        done += len(batch)
        last, idle_since = time.time(), time.monotonic()
    reader.close()
    print(json.dumps({"alerts": done, "first": first, "last": last, "cpu": sum(os.times()[:2])}))


def baseline(
    bootstrap: str,
    backlog: Backlog,
    filter_set: FilterSet,
    processes: int,
    groups: dict[str, int],
    run: str,
) -> Row:
    out = f"cap.{run}.base{processes}"
    ensure_topic(bootstrap, out)
    meter = CpuMeter(groups)
    meter.start()
    snapshot = json.dumps(filter_set.to_snapshot())
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--baseline-worker",
                bootstrap,
                backlog.topic,
                ",".join(str(p) for p in range(i, PARTITIONS, processes)),
                out,
                snapshot,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    reports = [json.loads(c.communicate(timeout=DRAIN_DEADLINE_S)[0]) for c in children]
    meter.stop()
    span = max(r["last"] for r in reports) - min(r["first"] for r in reports)
    cpu = {**meter.spent, "baseline": sum(r["cpu"] for r in reports)}
    return Row(
        f"baseline x{processes} (plain processes, same work)",
        sum(r["alerts"] for r in reports),
        span,
        cpu,
    )


@contextmanager
def cpu_limit(cores: float, pids: list[int]):
    """Hold ``pids`` (and what they fork later) to ``cores`` with a cgroup v1 CPU quota; the
    cgroup is removed afterwards."""
    group = CGROUP / f"alertflow-bench-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text(str(int(cores * 100000)))
        for pid in pids:
            (group / "cgroup.procs").write_text(str(pid))
        yield
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            (CGROUP / "cgroup.procs").write_text(pid)
        group.rmdir()


def broker_drain(
    cfg: StackConfig, backlog: Backlog, filter_set: FilterSet, name: str, start_job
) -> Row:
    """Start the broker with ``start_job()``, measure the drain, check the pairs."""
    start_job()
    groups = stack_groups(cfg)
    meter = CpuMeter(groups)
    drain = watch_drain(
        cfg.bootstrap_servers,
        catch_all(filter_set).output.topic,
        backlog.alerts,
        DRAIN_DEADLINE_S,
        on_first=meter.start,
    )
    meter.stop()
    got, duplicates, _ = pairs_on(cfg.bootstrap_servers, filter_set)
    missing = len(backlog.expected - got)
    restarts = sum(
        job_restarts(cfg.flink_rest_url, j["jid"])
        for j in requests.get(f"{cfg.flink_rest_url}/jobs/overview", timeout=5).json()["jobs"]
        if j["state"] == "RUNNING"
    )
    rss = {p: round(supervisor.rss_mib(g)) for p, g in groups.items() if "taskmanager" in p}
    note = (
        f"{drain.distinct}/{backlog.alerts} drained, {missing} expected pairs missing, "
        f"{duplicates} duplicates, {restarts} restarts, TaskManager RSS {rss} MiB"
    )
    span = (drain.last_ms - drain.first_ms) / 1000.0
    return Row(name, drain.distinct, span, meter.spent, note)


def cancel_all(cfg: StackConfig) -> None:
    rest = cfg.flink_rest_url
    for job in requests.get(f"{rest}/jobs/overview", timeout=5).json()["jobs"]:
        if job["state"] == "RUNNING":
            requests.patch(f"{rest}/jobs/{job['jid']}", params={"mode": "cancel"}, timeout=10)


def fresh_filters(cfg: StackConfig, prefix: str, config_topic: str) -> FilterSet:
    filter_set = backlog_filters(prefix)
    publish_snapshot(cfg.bootstrap_servers, filter_set, config_topic)
    return filter_set


def session_runs(opts, run: str, root: Path, rows: list[Row]) -> None:
    """The session-mode rows, appended to ``rows`` as they are measured."""
    cfg = StackConfig.from_env(mode=StackMode.SESSION).moved(root / "session", 600)
    supervisor.up(cfg)
    try:
        bootstrap = cfg.bootstrap_servers
        topic = f"cap.{run}.in"
        ensure_topic(bootstrap, topic, PARTITIONS)
        print(f"preloading {opts.alerts} alerts", file=sys.stderr)
        reference = backlog_filters(f"cap.{run}.ref")
        backlog = preload(bootstrap, topic, opts.alerts, reference)
        groups = {n: g for n, g in stack_groups(cfg).items() if n == "kafka"}
        rows.append(bare_consumer(bootstrap, backlog, groups))
        for processes in (1, 2):
            rows.append(baseline(bootstrap, backlog, reference, processes, groups, run))
        limits = [None] if "one-core" in opts.skip else [None, 1.0]
        for cores in limits:
            tag = f"s{len(rows)}"
            config_topic = f"cap.{run}.{tag}.config"
            filter_set = fresh_filters(cfg, f"cap.{run}.{tag}", config_topic)
            held = [
                g
                for n, g in stack_groups(cfg).items()
                if "taskmanager" in n or n == "beam-workerpool"
            ]
            label = "broker session" + (
                f", TaskManager + Python held to {cores:g} core" if cores else ""
            )

            def submit(tag=tag, config_topic=config_topic) -> None:
                stack_env = cfg.environment()
                os.environ.update(stack_env)
                broker.run(
                    [
                        f"--topics={topic}",
                        f"--config-topic={config_topic}",
                        f"--deadletter-topic=cap.{run}.{tag}.dead",
                        f"--group-id=cap-{tag}",
                        f"--job-name=cap-{run}-{tag}",
                        "--parallelism=2",
                        *opts.beam_args,
                    ]
                )

            if cores:
                with cpu_limit(cores, [p for g in held for p in supervisor.group_members(g)]):
                    rows.append(broker_drain(cfg, backlog, filter_set, label, submit))
            else:
                rows.append(broker_drain(cfg, backlog, filter_set, label, submit))
            cancel_all(cfg)
    finally:
        supervisor.down(cfg)


def application_run(opts, run: str, root: Path) -> Row:
    """The application cluster: job first (no TaskManager), then the backlog, then a TaskManager."""
    cfg = StackConfig.from_env(taskmanagers=0, mode=StackMode.APPLICATION).moved(
        root / "application", 700
    )
    os.environ.update(cfg.environment())
    supervisor.up(cfg)
    try:
        filter_set = fresh_filters(cfg, f"cap.{run}.app", CONFIG_TOPIC)
        backlog = preload(cfg.bootstrap_servers, ALERT_TOPICS[1], opts.alerts, filter_set)
        return broker_drain(
            cfg,
            backlog,
            filter_set,
            "broker application (reactive)",
            lambda: supervisor.start_taskmanager(cfg, 1),
        )
    finally:
        supervisor.down(cfg)


def report(rows: list[Row], alerts: int) -> None:
    print(
        f"\n{alerts} real LSST alerts (~110 KB) preloaded on 8 partitions; 2 cores shared by "
        "everything\n"
    )
    print("| reader | alerts | drain alerts/s | CPU s per 1,000 alerts, by process | notes |")
    print("|---|---|---|---|---|")
    for row in rows:
        per = ", ".join(
            f"{n} {1000 * s / max(row.alerts, 1):.2f}"
            for n, s in sorted(row.cpu.items())
            if s > 0.05
        )
        total = 1000 * sum(row.cpu.values()) / max(row.alerts, 1)
        print(
            f"| {row.name} | {row.alerts} | {row.rate:,.0f} | total {total:.2f}: {per} | "
            f"{row.note} |"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-worker":
        baseline_worker(*sys.argv[2:7])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=20000)
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["session", "one-core", "application"]
    )
    parser.add_argument(
        "--beam-arg",
        dest="beam_args",
        action="append",
        default=[],
        help="an extra pipeline option for the session broker (repeatable)",
    )
    opts = parser.parse_args()
    run = uuid.uuid4().hex[:6]
    root = Path(tempfile.mkdtemp(prefix="alertflow-capacity-"))
    rows: list[Row] = []
    try:
        if "session" not in opts.skip:
            session_runs(opts, run, root, rows)
        if "application" not in opts.skip:
            rows.append(application_run(opts, run, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        report(rows, opts.alerts)


if __name__ == "__main__":
    main()
