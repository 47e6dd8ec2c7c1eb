"""A preloaded backlog of real LSST alerts, for the backlog e2e tests and bench_capacity.

The sample LSST alerts are cycled with fresh ids (``alertflow replay --count N`` does the same)
onto a topic before the broker starts. The expected (filter, alert_id) pairs are computed on the
way by the local reference (:class:`transforms.local.LocalRunner`), in batches, so a
40,000-alert backlog (~4.4 GB) is never held in memory at once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from control_service.replay_engine import kafka_producer
from control_service.replay_messages import cycled_messages, load_messages
from flink_deploy.flink_rest import FlinkRest
from flink_deploy.settings import REPO_ROOT
from flink_deploy.stack.config import StackConfig
from pipelines import broker
from tests.datapaths import shared_data
from tests.e2e.test_smoke_pipeline import running_job_id, wait_for
from transforms.decode import decode_message
from transforms.filters.document import load_filter_file, load_filters
from transforms.filters.model import Filter, FilterSet
from transforms.kafka_clients import COMPACTED, Topic, ensure_topics
from transforms.local import LocalRunner
from transforms.polling import wait_until
from transforms.schemas import LsstSchemas

BATCH = 1000


@dataclass(frozen=True)
class Backlog:
    """What was preloaded: the topic, the alert count and bytes, and the expected pairs."""

    topic: str
    alerts: int
    bytes: int
    expected: frozenset[tuple[str, int]]


def run_topics(bootstrap: str, prefix: str, source: str, partitions: int) -> dict[str, str]:
    """Fresh topics ``<prefix>.<run id>.{<source>,config,dead}``, created: the alert topic with
    ``partitions`` partitions, a compacted config topic and a dead-letter topic."""
    run_id = uuid.uuid4().hex[:8]
    topics = {n: f"{prefix}.{run_id}.{n}" for n in (source, "config", "dead")}
    ensure_topics(
        bootstrap,
        [
            Topic(topics[source], partitions),
            Topic(topics["dead"]),
            Topic(topics["config"], 1, COMPACTED),
        ],
    )
    return topics


def start_broker(
    cfg: StackConfig, topics: dict[str, str], source: str, parallelism: int = 2
) -> tuple[str, str]:
    """Submit the broker on a run's topics (:func:`run_topics`) at ``parallelism`` and wait
    until it runs; returns its job name and Flink job id."""
    prefix, run_id = topics[source].split(".")[:2]
    job_name = f"alertflow-{prefix}-{run_id}"
    broker.run(
        [
            f"--topics={topics[source]}",
            f"--config-topic={topics['config']}",
            f"--deadletter-topic={topics['dead']}",
            f"--group-id={prefix}-{run_id}",
            f"--job-name={job_name}",
            f"--parallelism={parallelism}",
        ]
    )
    jid = wait_for(lambda: running_job_id(cfg.flink_rest_url, job_name), 180, f"{job_name} running")
    return job_name, jid


def backlog_filters(prefix: str) -> FilterSet:
    """The example filters plus ``every-lsst`` (a catch-all: every LSST alert, lite), each
    writing to ``<prefix>.out.<filter>``; the catch-all tells when the backlog is drained."""
    examples = [
        f
        for p in sorted((REPO_ROOT / "examples" / "filters").glob("*.yaml"))
        for f in load_filter_file(str(p))
    ]
    every = load_filters(
        "apiVersion: alertflow/v1\nkind: Filter\n"
        "metadata: {name: every-lsst, owner: bench}\n"
        "spec:\n  where: survey == 'lsst'\n  output: {topic: t}\n"
    )
    return FilterSet(
        1,
        tuple(
            replace(f, output=replace(f.output, topic=f"{prefix}.out.{f.name}"))
            for f in (*examples, *every)
        ),
    )


def catch_all(filter_set: FilterSet) -> Filter:
    return next(f for f in filter_set.filters if f.name == "every-lsst")


def preload(bootstrap: str, topic: str, count: int, filter_set: FilterSet) -> Backlog:
    """Send ``count`` real LSST alerts (cycled, fresh ids) to ``topic``; wait until all are
    delivered."""
    schemas = LsstSchemas()
    files = sorted((shared_data() / "lsst" / "alerts").glob("*.avro"))
    messages = load_messages(files, schemas)
    producer = kafka_producer(bootstrap)
    failures: list[str] = []

    def delivered(error, _msg) -> None:  # confluent-kafka's delivery callback
        if error is not None:
            failures.append(str(error))

    runner = LocalRunner(filter_set)
    expected: set[tuple[str, int]] = set()
    batch, sent_bytes = [], 0
    for value in cycled_messages(messages, count, schemas):
        while True:
            try:
                producer.produce(topic, value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        sent_bytes += len(value)
        batch.extend(decode_message(value, schemas))
        if len(batch) >= BATCH:
            expected |= {(m.filter_name, m.alert.alert_id) for m in runner.run(batch)[0]}
            batch = []
    expected |= {(m.filter_name, m.alert.alert_id) for m in runner.run(batch)[0]}
    left = producer.flush(120)
    assert not failures and not left, f"preload: {len(failures)} failed, {left} undelivered"
    return Backlog(topic, count, sent_bytes, frozenset(expected))


def job_restarts(rest: str, jid: str, deadline_s: float = 60.0) -> int:
    """Flink's ``numRestarts`` metric of the job (the REST API lists a job's metrics only once
    the JobManager has fetched them, a few seconds after the job starts)."""
    flink = FlinkRest(rest)
    try:
        metrics = wait_until(
            lambda: flink.job_metrics(jid, ["numRestarts"]),
            deadline_s,
            1.0,
            f"job {jid}'s numRestarts metric",
        )
    except TimeoutError:
        raise AssertionError(f"job {jid}: no numRestarts metric after {deadline_s:.0f} s") from None
    return int(metrics["numRestarts"])


@dataclass(frozen=True)
class Drain:
    """How a backlog came out: distinct alerts on the catch-all topic, the duplicates, and the
    Kafka timestamps (ms) of the first and the last distinct match."""

    distinct: int
    duplicates: int
    first_ms: int
    last_ms: int

    @property
    def rate(self) -> float:
        """Alerts per second between the first and the last match (start-up excluded)."""
        span = (self.last_ms - self.first_ms) / 1000.0
        return (self.distinct - 1) / span if span > 0 else float("nan")


def watch_drain(bootstrap: str, topic: str, count: int, deadline_s: float, on_first=None) -> Drain:
    """Read ``topic`` (the catch-all's) from the start until ``count`` distinct alerts came or
    ``deadline_s`` passed; ``on_first()`` is called when the first match arrives."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"d-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    end = time.monotonic() + deadline_s
    while topic not in admin.list_topics(timeout=10).topics and time.monotonic() < end:
        time.sleep(1)  # the broker creates a filter's topic when it first publishes to it
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    seen: set[bytes] = set()
    total, first, last = 0, None, 0
    while len(seen) < count and time.monotonic() < end:
        for msg in consumer.consume(1000, timeout=0.5):
            if msg.error() is not None:
                continue
            total += 1
            if msg.key() not in seen:
                seen.add(msg.key())
                stamp = msg.timestamp()[1]
                if first is None:
                    first = stamp
                    if on_first is not None:
                        on_first()
                first, last = min(first, stamp), max(last, stamp)
    consumer.close()
    return Drain(len(seen), total - len(seen), first or 0, last)
