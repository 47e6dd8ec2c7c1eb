"""Filter-set snapshots on the config topic: publish one, read the newest.

The protocol the running pipeline reads (DESIGN.md section 2): topic ``alertflow.config``,
compacted, one partition; every message is a whole snapshot, key ``b"filters"``, value the JSON
of ``FilterSet.to_snapshot()``; versions strictly increase.
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from flink_deploy.stack import CONFIG_TOPIC
from transforms.filters.document import FilterSet

SNAPSHOT_KEY = b"filters"


def latest_snapshot(bootstrap: str, topic: str = CONFIG_TOPIC) -> dict[str, Any] | None:
    """The highest-version snapshot on the topic, or None if it holds none."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "alertflow-snapshot-reader",
                         "enable.auto.commit": False})  # fmt: skip
    try:
        partition = TopicPartition(topic, 0)
        low, high = consumer.get_watermark_offsets(partition, timeout=10)
        if high <= low:
            return None
        consumer.assign([TopicPartition(topic, 0, low)])
        newest: dict[str, Any] | None = None
        while True:
            msg = consumer.poll(10.0)
            if msg is None:
                raise TimeoutError(f"reading {topic} stalled before offset {high}")
            if msg.error() is None and msg.key() == SNAPSHOT_KEY and msg.value():
                snapshot = json.loads(msg.value())
                if newest is None or snapshot.get("version", -1) > newest.get("version", -1):
                    newest = snapshot
            if msg.offset() >= high - 1:
                return newest
    finally:
        consumer.close()


def publish_snapshot(bootstrap: str, filter_set: FilterSet, topic: str = CONFIG_TOPIC) -> None:
    """Append ``filter_set`` as a whole snapshot; raises if Kafka does not acknowledge it."""
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(topic, key=SNAPSHOT_KEY, value=json.dumps(filter_set.to_snapshot()).encode(),
                     on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
    if producer.flush(30) or errors:
        raise RuntimeError(f"snapshot v{filter_set.version} not written to {topic}: {errors}")


def next_version(bootstrap: str, topic: str = CONFIG_TOPIC) -> int:
    newest = latest_snapshot(bootstrap, topic)
    return 1 if newest is None else int(newest["version"]) + 1
