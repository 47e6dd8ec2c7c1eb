"""Replay throughput into the local Kafka: `alertflow replay` against a bare producer.

Needs the local stack (`alertflow stack up`). Each pass sends COUNT real LSST alerts (cycled
with fresh ids, ~110 KB each) to a fresh topic twice: once through replay's own code path
(loading, id rendering, pacing, delivery reports), once as a bare confluent-kafka producer
sending the same pre-rendered bytes with the same producer settings (the baseline). The passes
interleave; the medians and their ratio are printed as a markdown table.

    .venv/bin/python benchmarks/bench_replay.py --count 5000 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from control_service import replay_engine, replay_messages
from control_service.cli import build_parser
from control_service.commands import replay
from flink_deploy.stack.config import StackConfig
from tests.datapaths import shared_data
from transforms.kafka_clients import ensure_topic
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas


def fresh_topic(bootstrap: str, admin: AdminClient) -> str:
    topic = f"bench.replay.{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, 8, admin=admin)
    return topic


def bare_producer(bootstrap: str, topic: str, values: list[bytes]) -> float:
    producer = replay_engine.kafka_producer(bootstrap)  # replay's own producer settings
    start = time.monotonic()
    for value in values:
        while True:
            try:
                producer.produce(topic, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    return len(values) / (time.monotonic() - start)


def through_replay(bootstrap: str, topic: str, files: list[str], count: int) -> float:
    args = build_parser().parse_args(
        [
            "replay",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--count",
            str(count),
            "--no-progress",
            *files,
        ]
    )
    out = io.StringIO()
    assert replay.run(args, out=out) == 0, out.getvalue()
    match = re.search(r"([\d,]+) alerts/s", out.getvalue())
    assert match, out.getvalue()
    return float(match.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    bootstrap = StackConfig.from_env().bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    files = sorted(str(p) for p in (shared_data() / "lsst" / "alerts").glob("*.avro"))
    schemas = LsstSchemas(DEFAULT_LSST_SCHEMA_DIR)
    messages = replay_messages.load_messages([Path(f) for f in files], schemas)
    values = list(replay_messages.cycled_messages(messages, opts.count, schemas))
    mean_kb = statistics.mean(len(v) for v in values) / 1024
    base, ours = [], []
    for _ in range(opts.repeats):
        for runner, results in (
            (lambda t: bare_producer(bootstrap, t, values), base),
            (lambda t: through_replay(bootstrap, t, files, opts.count), ours),
        ):
            topic = fresh_topic(bootstrap, admin)
            results.append(runner(topic))
            admin.delete_topics([topic])[topic].result(30)
    b, o = statistics.median(base), statistics.median(ours)
    print(f"{opts.count} LSST alerts per pass (mean {mean_kb:.0f} KiB), median of {opts.repeats}")
    print("| path | alerts/s | MB/s | ratio to bare producer |")
    print("|---|---|---|---|")
    print(f"| bare confluent-kafka producer | {b:,.0f} | {b * mean_kb / 1024:,.0f} | 1.00 |")
    print(f"| alertflow replay | {o:,.0f} | {o * mean_kb / 1024:,.0f} | {o / b:.2f} |")


if __name__ == "__main__":
    main()
