"""Scaling benchmark: the broker as a reactive-mode application cluster, with and without the
autoscaler, through an LSST-like night of visit bursts.

    .venv/bin/python benchmarks/bench_scaling.py [--sizes 2000,2000,8000,12000,12000,4000,2000]
        [--interval 39] [--backlog 8000] [--plot docs/scaling.png] [--out FILE.md]

Starts its own application-mode stack (own run folder, ports 500 above the defaults), applies
the example filters, and then:

1. **Throughput per TaskManager**: with 1 and then 2 TaskManagers (the local driver, fixed),
   a backlog of ``--backlog`` real LSST alerts is sent at once and the drain rate measured
   from the broker's committed offsets (they move at each 5 s checkpoint).
2. **Without the autoscaler**: one TaskManager, the visit profile (one burst of ``size``
   alerts every ``--interval`` seconds, sent as fast as the producer goes), sampled every
   second until the lag is back to zero.
3. **With the autoscaler** (the default policy, the local driver): the same profile, sampled
   the same way, until the lag is zero and the cluster is back to one TaskManager.

Reports the lag peak of both runs, the drain time, the time from the load rising (the lag first
above the policy's scale-up threshold) to the new TaskManager processing alerts (the job
running at the higher parallelism and the committed offsets moving), and the throughput
gained per TaskManager; plots lag, TaskManagers and throughput over time.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from control_service.replay_messages import cycled_messages, load_messages
from control_service.snapshots import publish_snapshot
from flink_deploy.autoscaler.local import LocalDriver
from flink_deploy.autoscaler.observe import Observer
from flink_deploy.autoscaler.policy import DEFAULT_POLICY_FILE, load_policy_file
from flink_deploy.autoscaler.service import AutoscalerConfig, create_app
from flink_deploy.settings import REPO_ROOT
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import APPLICATION_JOB_ID, StackConfig, StackMode
from tests.datapaths import shared_data
from transforms.filters.document import load_filter_file
from transforms.filters.model import FilterSet
from transforms.polling import wait_until
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas
from transforms.topics import ALERT_TOPICS

PORT_OFFSET = 500
GROUP = "alertflow-broker"


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the run started
    lag: int
    committed: int
    taskmanagers: int  # registered with the JobManager
    parallelism: int  # 0 while the job (re)starts


class Cluster:
    """What the benchmark reads and drives: Kafka offsets, the Flink job, the TaskManagers."""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.observer = Observer(cfg.bootstrap_servers, GROUP, ALERT_TOPICS, cfg.flink_rest_url)
        self.driver = LocalDriver(cfg)
        self.messages = load_messages(
            sorted((shared_data() / "lsst" / "alerts").glob("*.avro")),
            LsstSchemas(DEFAULT_LSST_SCHEMA_DIR),
        )
        self.values = cycled_messages(self.messages, 10**9, LsstSchemas(DEFAULT_LSST_SCHEMA_DIR))
        self.producer = Producer(
            {
                "bootstrap.servers": cfg.bootstrap_servers,
                "linger.ms": 20,
                "message.max.bytes": 8 * 1024 * 1024,
            }
        )

    def send(self, count: int) -> None:
        for value in itertools.islice(self.values, count):
            while True:
                try:
                    self.producer.produce(ALERT_TOPICS[1], value=value)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
        self.producer.flush(120)

    def parallelism(self) -> int:
        job = requests.get(f"{self.cfg.flink_rest_url}/jobs/{APPLICATION_JOB_ID}", timeout=5)
        body = job.json()
        vertices = body.get("vertices", [])
        if body.get("state") != "RUNNING" or any(v["status"] != "RUNNING" for v in vertices):
            return 0
        return max((v["parallelism"] for v in vertices), default=0)

    def committed_and_lag(self) -> tuple[int, int]:
        offsets = self.observer.kafka_offsets()
        return offsets.committed_total, offsets.lag_total

    def sample(self, t0: float) -> Sample:
        committed, lag = self.committed_and_lag()
        registered = self.observer.flink_cluster()["taskmanagers"]
        return Sample(time.monotonic() - t0, lag, committed, registered, self.parallelism())

    def wait(self, predicate, deadline_s: float, what: str) -> None:
        wait_until(predicate, deadline_s, 1.0, what)

    def set_taskmanagers(self, count: int, profile) -> None:
        while len(self.driver.taskmanagers()) < count:
            self.driver.add(profile)
        while len(self.driver.taskmanagers()) > count:
            self.driver.remove(self.driver.taskmanagers()[-1].name)
        self.wait(
            lambda: self.parallelism() == count * profile.slots,
            240,
            f"the job at parallelism {count * profile.slots}",
        )


def drain_rate(cluster: Cluster, backlog: int) -> float:
    """Alerts/s the broker drains a backlog at: committed offsets from the first to the last
    checkpoint that moved them while the lag was positive."""
    t0 = time.monotonic()
    sender = threading.Thread(target=cluster.send, args=(backlog,))
    sender.start()
    samples = []
    while True:
        samples.append(cluster.sample(t0))
        if not sender.is_alive() and samples[-1].lag == 0:
            break
        if samples[-1].t > 900:
            raise TimeoutError("the backlog did not drain in 900 s")
        time.sleep(0.5)
    sender.join()
    moves = [s for a, s in itertools.pairwise(samples) if s.committed > a.committed]
    first, last = moves[0], moves[-1]
    return (last.committed - first.committed) / (last.t - first.t)


def visit_profile(cluster: Cluster, sizes: list[int], interval_s: float, until) -> list[Sample]:
    """Send the visits on schedule, sampling every second, until ``until(samples)``."""
    t0 = time.monotonic()
    stop = threading.Event()

    def visits() -> None:
        for i, size in enumerate(sizes):
            if stop.wait(max(0.0, t0 + i * interval_s - time.monotonic())):
                return
            cluster.send(size)

    sender = threading.Thread(target=visits)
    sender.start()
    samples: list[Sample] = []
    try:
        while True:
            samples.append(cluster.sample(t0))
            if not sender.is_alive() and until(samples):
                return samples
            if samples[-1].t > 1800:
                raise TimeoutError("the visit profile did not settle in 1800 s")
            time.sleep(1)
    finally:
        stop.set()
        sender.join()


def rates(samples: list[Sample], window_s: float = 10.0) -> list[tuple[float, float]]:
    """(t, alerts/s processed) over a trailing window (the offsets move per checkpoint)."""
    out = []
    for s in samples:
        past = [p for p in samples if s.t - window_s <= p.t < s.t]
        if past:
            out.append((s.t, (s.committed - past[0].committed) / (s.t - past[0].t)))
    return out


def plot(runs: dict[str, list[Sample]], path: Path, interval_s: float, sizes: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for (label, samples), style in zip(runs.items(), ("-", "--"), strict=True):
        t = [s.t for s in samples]
        axes[0].plot(t, [s.lag for s in samples], style, label=label)
        axes[1].step(t, [s.taskmanagers for s in samples], style, where="post", label=label)
        rate = rates(samples)
        axes[2].plot([r[0] for r in rate], [r[1] for r in rate], style, label=label)
    for i, size in enumerate(sizes):
        axes[0].axvline(i * interval_s, color="grey", lw=0.5)
        axes[0].annotate(f"{size // 1000}k", (i * interval_s, 0), fontsize=7, color="grey")
    axes[0].set_ylabel("consumer lag (alerts)")
    axes[1].set_ylabel("TaskManagers")
    axes[2].set_ylabel("alerts/s processed\n(10 s window)")
    axes[2].set_xlabel("seconds since the first visit")
    axes[0].legend()
    fig.suptitle("alertflow broker through LSST-like visit bursts (2-core machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        default="2000,2000,8000,12000,12000,4000,2000",
        help="alerts per visit, comma-separated",
    )
    parser.add_argument("--interval", type=float, default=39.0, help="seconds between visits")
    parser.add_argument("--backlog", type=int, default=8000)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="append the report here")
    opts = parser.parse_args()
    sizes = [int(s) for s in opts.sizes.split(",")]
    policy = load_policy_file(DEFAULT_POLICY_FILE)
    small = policy.profile(policy.scale_up.profile)

    with tempfile.TemporaryDirectory(prefix="alertflow-scaling-") as run_dir:
        cfg = StackConfig.from_env(taskmanagers=1, mode=StackMode.APPLICATION)
        cfg = cfg.moved(Path(run_dir), PORT_OFFSET)
        supervisor.up(cfg, log=lambda line: print(line, file=sys.stderr))
        try:
            report = measure(cfg, sizes, opts, policy, small)
        finally:
            supervisor.down(cfg, log=lambda line: print(line, file=sys.stderr))
    print(report)
    if opts.out:
        with opts.out.open("a") as out:
            out.write(report + "\n")


def measure(cfg, sizes, opts, policy, small) -> str:
    filters = tuple(
        f
        for p in sorted((REPO_ROOT / "examples" / "filters").glob("*.yaml"))
        for f in load_filter_file(str(p))
    )
    publish_snapshot(cfg.bootstrap_servers, FilterSet(1, filters))
    cluster = Cluster(cfg)
    cluster.wait(lambda: cluster.parallelism() == small.slots, 300, "the broker running")
    cluster.send(500)  # warm the Python workers up
    cluster.wait(lambda: cluster.committed_and_lag()[1] == 0, 300, "the warm-up drained")

    per_tm = {}
    for count in (1, 2):
        cluster.set_taskmanagers(count, small)
        per_tm[count] = drain_rate(cluster, opts.backlog)
        print(f"{count} TaskManager(s): drains {per_tm[count]:.0f} alerts/s", file=sys.stderr)
    cluster.set_taskmanagers(1, small)

    runs = {}
    runs["without autoscaler (1 TaskManager)"] = visit_profile(
        cluster, sizes, opts.interval, lambda s: s[-1].lag == 0
    )
    print("run without the autoscaler done", file=sys.stderr)

    config = AutoscalerConfig(
        bootstrap_servers=cfg.bootstrap_servers,
        flink_rest_url=cfg.flink_rest_url,
        port=cfg.autoscaler_port,
    )
    app = create_app(
        policy,
        Observer(cfg.bootstrap_servers, GROUP, ALERT_TOPICS, cfg.flink_rest_url),
        cluster.driver,
        config,
        start_loop=True,
    )
    loop = app.extensions["alertflow.scaling"]
    started = time.time()
    try:
        runs["with autoscaler (default policy)"] = visit_profile(
            cluster,
            sizes,
            opts.interval,
            # Settled: drained, back to one TaskManager after scaling (or it never scaled).
            lambda s: (
                s[-1].lag == 0
                and s[-1].taskmanagers == 1
                and s[-1].parallelism > 0
                and (
                    any(x.taskmanagers > 1 for x in s) or s[-1].t > len(sizes) * opts.interval + 60
                )
            ),
        )
    finally:
        loop.stop()
    decisions = [d for d in loop.decisions() if d.action != "hold" and d.timestamp >= started]
    if opts.plot:
        plot(runs, opts.plot, opts.interval, sizes)
    return report(runs, per_tm, decisions, policy, sizes, opts, started)


def report(runs, per_tm, decisions, policy, sizes, opts, started) -> str:
    without, with_ = runs.values()
    threshold = policy.scale_up.lag_above
    rise = next((s.t for s in with_ if s.lag > threshold), None)
    first_up = next((d for d in decisions if d.action == "up"), None)
    steps = {}
    if first_up is not None:
        steps["scale-up decided"] = first_up.timestamp - started
        after = [s for s in with_ if s.t >= steps["scale-up decided"]]
        slots = policy.profile(first_up.profile).slots
        registered = next((s for s in after if s.taskmanagers > 1), None)
        raised = next((s for s in after if s.parallelism > slots), None)
        moving = (
            None
            if raised is None
            else next(
                (
                    b
                    for a, b in itertools.pairwise(after)
                    if a.t >= raised.t and b.committed > a.committed
                ),
                None,
            )
        )
        for label, sample in (
            ("new TaskManager registered", registered),
            ("job running at the higher parallelism", raised),
            ("offsets committed again (new TaskManager processing)", moving),
        ):
            if sample is not None:
                steps[label] = sample.t
    sent = sum(sizes)
    lines = [
        f"visit profile: {len(sizes)} visits of {opts.sizes} LSST alerts, one every "
        f"{opts.interval:g} s ({sent:,} alerts, {sent / (len(sizes) * opts.interval):.0f}/s "
        "on average)",
        "",
        "| run | lag peak (alerts) | lag back to 0 after (s) | max TaskManagers |",
        "|---|---|---|---|",
    ]
    for label, samples in runs.items():
        drained = next(s.t for s in reversed(samples) if s.lag > 0)
        lines.append(
            f"| {label} | {max(s.lag for s in samples):,} | {drained:.0f} | "
            f"{max(s.taskmanagers for s in samples)} |"
        )
    lines += [
        "",
        f"- drain rate with 1 TaskManager: {per_tm[1]:.0f} alerts/s; with 2: {per_tm[2]:.0f} "
        f"alerts/s: {per_tm[2] - per_tm[1]:+.0f} alerts/s for the second TaskManager "
        f"({per_tm[2] / per_tm[1]:.2f} x)",
        f"- load rising (lag > {threshold:,}) at {'-' if rise is None else round(rise)} s; then "
        + ", ".join(
            f"{label} at {t:.0f} s" + ("" if rise is None else f" (+{t - rise:.0f} s)")
            for label, t in steps.items()
        ),
        "- decisions: "
        + "; ".join(f"{d.timestamp - started:.0f} s {d.action}: {d.reason}" for d in decisions),
        f"- median alerts/s processed while the lag was positive: without "
        f"{statistics.median(r for t, r in rates(without) if r > 0):.0f}, with "
        f"{statistics.median(r for t, r in rates(with_) if r > 0):.0f}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
