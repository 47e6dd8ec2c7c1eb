"""End to end on the local stack: does the broker on Flink keep up, and with what latency?

Needs the stack (`alertflow stack up`). Submits the broker with the example filters plus a
catch-all filter (every LSST alert, lite) on fresh topics, then sends real LSST alerts (~110 KB,
cycled with fresh ids) at rising rates, each for STEP seconds. For each rate it reports how
many catch-all matches arrived (waiting up to GRACE seconds after the step), whether the
broker kept up (all arrived, p99 latency within 5 s), and the latency from the alert's Kafka
timestamp (set when sent) to its match's (set when published), p50 and p99.

Baseline, in the same run: a plain confluent-kafka consumer loop in one process that reads the
same input and does the same work (decode, the annotators the filters need, the compiled
filter set, produce the matches), as fast as it can. The ratio is the broker's highest
sustained rate to the baseline's rate.

    .venv/bin/python benchmarks/bench_broker.py --rates 256 512 1024 --step 8
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from control_service.replay_messages import id_template, load_messages
from control_service.snapshots import publish_snapshot
from flink_deploy.settings import REPO_ROOT
from flink_deploy.stack.config import StackConfig
from pipelines import broker
from tests.datapaths import shared_data
from transforms.decode import decode_message
from transforms.filters.document import load_filter_file, load_filters
from transforms.filters.model import FilterSet
from transforms.kafka_clients import COMPACTED, Topic, ensure_topics
from transforms.local import LocalRunner
from transforms.publish import lite_message
from transforms.schemas import LsstSchemas

GRACE_S = 30.0
P99_GOAL_S = 5.0


def running(rest: str, name: str) -> str | None:
    for job in requests.get(f"{rest}/jobs/overview", timeout=5).json()["jobs"]:
        tasks = job["tasks"]
        if job["name"] == name and job["state"] == "RUNNING" and tasks["running"] == tasks["total"]:
            return job["jid"]
    return None


def generate(count: int, step: int, templates, schemas) -> list[tuple[int, bytes]]:
    """``count`` (alert_id, message) pairs with ids unique across steps."""
    out = []
    for i in range(count):
        cycle = 1 + step * 100 + i // len(templates)  # ids stay within a 64-bit long
        value = templates[i % len(templates)].render(cycle)
        out.append((decode_message(value, schemas)[0].alert_id, value))
    return out


def send(bootstrap: str, topic: str, items: list[tuple[int, bytes]], rate: float) -> dict:
    """Send at ``rate``/s; returns alert_id -> send timestamp (ms)."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 8 * 1024 * 1024}
    )
    sent, start = {}, time.monotonic()
    for i, (alert_id, value) in enumerate(items):
        wait = i / rate - (time.monotonic() - start)
        if wait > 0:
            time.sleep(wait)
        stamp = int(time.time() * 1000)
        producer.produce(topic, value=value, timestamp=stamp)
        producer.poll(0)
        sent[alert_id] = stamp
    producer.flush(60)
    return sent


def collect(bootstrap: str, topic: str, wanted: dict, deadline: float) -> dict:
    """alert_id -> match timestamp (ms) for the wanted ids, until all came or the deadline."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"b-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    got = {}
    while len(got) < len(wanted) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            alert_id = int(msg.key().decode().rpartition("/")[2])
            if alert_id in wanted:
                got.setdefault(alert_id, msg.timestamp()[1])
    consumer.close()
    return got


def baseline(bootstrap: str, topic: str, filter_set: FilterSet, total: int, out: str) -> float:
    """A plain consumer loop doing the broker's work; alerts/s over ``total`` messages."""
    schemas = LsstSchemas()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"base-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    consumer.subscribe([topic])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    runner = LocalRunner(filter_set)
    done, start = 0, None
    while done < total:
        batch = consumer.consume(500, timeout=5.0)
        if not batch:
            break
        start = start or time.monotonic()
        alerts = [a for m in batch if m.error() is None for a in decode_message(m.value(), schemas)]
        for match in runner.run(alerts)[0]:
            key, value = lite_message(match, int(time.time() * 1000))
            producer.produce(out, key=key, value=value)
            producer.poll(0)
        done += len(batch)
    producer.flush(60)
    consumer.close()
    return done / (time.monotonic() - start)


def plot(rows: list[tuple], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rates, [r[4] for r in rows], "o-", label="p50")
    ax.plot(rates, [r[5] for r in rows], "s-", label="p99")
    ax.axhline(P99_GOAL_S, color="grey", linestyle="--", label="p99 goal (5 s)")
    ax.axvline(1026, color="red", linestyle=":", label="LSST peak visit (1,026/s)")
    ax.set_xlabel("offered alerts/s (real LSST alerts, ~110 KB)")
    ax.set_ylabel("alert append -> match append (s)")
    ax.set_title("alertflow broker on Flink, 2 cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=float, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--step", type=float, default=8.0)
    parser.add_argument("--plot", type=Path, default=None, help="write latency vs rate (PNG)")
    opts = parser.parse_args()
    cfg = StackConfig.from_env()
    bootstrap, rest = cfg.bootstrap_servers, cfg.flink_rest_url
    run = uuid.uuid4().hex[:6]
    topics = {n: f"bench.{run}.{n}" for n in ("in", "config", "dead", "base")}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    ensure_topics(
        bootstrap,
        [
            Topic(topics["in"], 8),
            Topic(topics["dead"]),
            Topic(topics["base"]),
            Topic(topics["config"], 1, COMPACTED),
        ],
        admin=admin,
    )
    catch_all = f"bench.{run}.out.every-lsst"
    examples = [
        replace(f, output=replace(f.output, topic=f"bench.{run}.out.{f.name}"))
        for p in sorted((REPO_ROOT / "examples" / "filters").glob("*.yaml"))
        for f in load_filter_file(str(p))
    ]
    every = load_filters(
        "apiVersion: alertflow/v1\nkind: Filter\n"
        "metadata: {name: every-lsst, owner: bench}\n"
        f"spec:\n  where: survey == 'lsst'\n  output: {{topic: {catch_all}}}\n"
    )
    filter_set = FilterSet(1, (*examples, *every))
    publish_snapshot(bootstrap, filter_set, topics["config"])
    name = f"alertflow-bench-{run}"
    broker.run(
        [
            f"--topics={topics['in']}",
            f"--config-topic={topics['config']}",
            f"--deadletter-topic={topics['dead']}",
            f"--group-id=bench-{run}",
            f"--job-name={name}",
            "--parallelism=2",
        ]
    )
    try:
        measure(opts, bootstrap, rest, name, topics, catch_all, filter_set)
    finally:
        for job in requests.get(f"{rest}/jobs/overview", timeout=5).json()["jobs"]:
            if job["name"] == name:
                requests.patch(f"{rest}/jobs/{job['jid']}", params={"mode": "cancel"}, timeout=10)
        admin.delete_topics([*topics.values(), catch_all, *(f.output.topic for f in examples)])


def measure(opts, bootstrap, rest, name, topics, catch_all, filter_set) -> None:
    deadline = time.monotonic() + 180
    while running(rest, name) is None and time.monotonic() < deadline:
        time.sleep(1)
    jid = running(rest, name)
    assert jid, "the broker did not start"

    schemas = LsstSchemas()
    files = sorted((shared_data() / "lsst" / "alerts").glob("*.avro"))
    templates = [id_template(m, schemas) for m in load_messages(files, schemas)]
    # Warm-up: the first alerts start the SDK workers and load the catalogues.
    warm = generate(200, 99, templates, schemas)
    send(bootstrap, topics["in"], warm, 100)
    collect(bootstrap, catch_all, dict(warm), time.monotonic() + 120)

    rows, total_sent = [], len(warm)
    for step, rate in enumerate(opts.rates):
        items = generate(int(rate * opts.step), step, templates, schemas)
        sent = send(bootstrap, topics["in"], items, rate)
        total_sent += len(items)
        got = collect(bootstrap, catch_all, sent, time.monotonic() + GRACE_S)
        lat = np.array([got[a] - sent[a] for a in got]) / 1000.0
        # Kept up: nothing missing and the latency bounded (p99 within the 5 s goal), not a
        # queue that only drains after the burst.
        kept_up = len(got) == len(sent) and len(lat) > 0 and np.percentile(lat, 99) <= P99_GOAL_S
        rows.append(
            (
                rate,
                len(sent),
                len(got),
                kept_up,
                float(np.percentile(lat, 50)) if len(lat) else float("nan"),
                float(np.percentile(lat, 99)) if len(lat) else float("nan"),
            )
        )
        print(
            f"rate {rate:.0f}/s: {len(got)}/{len(sent)} matched, "
            f"p50 {rows[-1][4]:.2f} s, p99 {rows[-1][5]:.2f} s",
            file=sys.stderr,
        )
    requests.patch(f"{rest}/jobs/{jid}", params={"mode": "cancel"}, timeout=10)
    base = baseline(bootstrap, topics["in"], filter_set, total_sent, topics["base"])
    sustained = max((r[0] for r in rows if r[3]), default=0.0)
    if opts.plot:
        plot(rows, opts.plot)
    print(
        f"{total_sent} LSST alerts (~110 KB), {opts.step:.0f} s per rate, 1 TaskManager "
        f"(2 slots), parallelism 2, 2 cores shared with Kafka and the baseline"
    )
    print("| offered alerts/s | sent | matched within step + 30 s | kept up | p50 s | p99 s |")
    print("|---|---|---|---|---|---|")
    for rate, n, m, ok, p50, p99 in rows:
        print(f"| {rate:,.0f} | {n} | {m} | {'yes' if ok else 'no'} | {p50:.2f} | {p99:.2f} |")
    print(
        f"\nbaseline (one process: consume, decode, annotate, filter, produce): "
        f"{base:,.0f} alerts/s; broker sustained {sustained:,.0f} alerts/s = "
        f"{sustained / base:.2f} x baseline"
    )


if __name__ == "__main__":
    main()
