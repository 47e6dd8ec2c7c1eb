"""Throughput gained per node: the drain rate of one backlog of real LSST alerts with 1, 2 and 3
small TaskManager nodes (`stack up --nodes`), Kafka and the JobManager on nodes of their own.

Each step starts a stack on nodes in a run folder of its own, preloads the same number of
alerts (cycled, fresh ids, 8 partitions), submits the broker at the parallelism of all its
slots, and reads the catch-all filter's topic until every alert came: the rate is the distinct
matches over the span between the first and the last. Every run's (filter, alert_id) pairs are
checked against the local reference. The budgets keep all the nodes together under the
machine's 2 cores (0.3 core per TaskManager node by default), so that the figure measures the
design and not the machine: the goal is at least 0.8x linear per step (0.9x aimed for).

Needs root; removes its nodes when it ends.

    .venv/bin/python benchmarks/bench_nodes.py [--alerts 3000] [--steps 1 2 3] [--tm-cpu 0.3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import requests

from control_service.snapshots import publish_snapshot
from flink_deploy.nodes import node_problem
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import StackConfig
from tests.backlog import backlog_filters, catch_all, preload, run_topics, start_broker, watch_drain
from tests.e2e.test_broker_pipeline import pairs_on


def drain_on_nodes(taskmanagers: int, alerts: int, budgets: dict[str, float], root: Path) -> float:
    """The drain rate (alerts/s) with ``taskmanagers`` TaskManager nodes; asserts every pair."""
    run_dir = root / f"tm{taskmanagers}"
    os.environ["ALERTFLOW_RUN_DIR"] = str(run_dir)  # where the pipeline finds stack.json
    cfg = StackConfig.from_env(taskmanagers=taskmanagers, nodes=True).model_copy(
        update={"run_dir": run_dir, **budgets}
    )
    supervisor.up(cfg)
    try:
        bootstrap = cfg.bootstrap_servers
        topics = run_topics(bootstrap, "nodes", "in", 8)
        filter_set = backlog_filters(f"nodes.{topics['in'].split('.')[1]}")
        publish_snapshot(bootstrap, filter_set, topics["config"])
        backlog = preload(bootstrap, topics["in"], alerts, filter_set)
        slots = taskmanagers * cfg.slots_per_taskmanager
        _, jid = start_broker(cfg, topics, "in", parallelism=slots)
        drain = watch_drain(bootstrap, catch_all(filter_set).output.topic, alerts, 900)
        assert drain.distinct == alerts, f"{drain.distinct} of {alerts} drained"
        got, _, _ = pairs_on(bootstrap, filter_set)
        assert got == backlog.expected, "the pairs differ from the local reference"
        requests.patch(f"{cfg.flink_rest_url}/jobs/{jid}", params={"mode": "cancel"}, timeout=10)
        return drain.rate
    finally:
        left = supervisor.down(cfg, log=lambda _line: None)
        assert not left, f"left running: {left}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=3000)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--tm-cpu", type=float, default=0.3, help="cores per TaskManager node")
    parser.add_argument("--kafka-cpu", type=float, default=0.5)
    opts = parser.parse_args()
    problem = node_problem()
    if problem:
        raise SystemExit(f"bench_nodes: {problem}")
    budgets = {
        "taskmanager_cpu": opts.tm_cpu,
        "kafka_cpu": opts.kafka_cpu,
        "jobmanager_cpu": 0.2,
        "control_cpu": 0.2,
    }
    root = Path(tempfile.mkdtemp(prefix="alertflow-nodes-"))
    rates: dict[int, float] = {}
    try:
        for n in opts.steps:
            rates[n] = drain_on_nodes(n, opts.alerts, budgets, root)
            print(f"{n} TaskManager node(s): {rates[n]:.0f} alerts/s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = rates.get(1)
    print(f"\n{opts.alerts} real LSST alerts; TaskManager nodes of {opts.tm_cpu} core, budgets")
    print(f"{budgets}\n\n| TaskManager nodes | drain alerts/s | vs 1 node | linearity |")
    print("|---|---|---|---|")
    for n, rate in rates.items():
        ratio = rate / base if base else float("nan")
        print(f"| {n} | {rate:,.0f} | {ratio:.2f}x | {ratio / n:.2f} |")


if __name__ == "__main__":
    main()
