"""The live filter set, read by each worker process from the config topic (no side input).

Why not a side input: on the portable Flink runner of Beam 2.62 an operator with a streaming
side input fails every checkpoint (``ClassCastException: [B cannot be cast to WindowedValue``
while Flink copies the operator state), so the job restarts in a loop. This is the fallback of
notes/runtime-stack-research.md section 5.4 (recipe C): every SDK worker process follows the
compacted config topic with a consumer thread of its own and keeps the newest snapshots.

Freshness: the first call reads the topic to its end before returning, so a worker starts with
the newest filter set; after that the thread applies new snapshots as they arrive (well under
a second on loopback). Each message is decoded and validated once, on arrival
(:func:`~transforms.filters.snapshot.decode_snapshot`), not on every batch.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from transforms.filters.snapshot import Snapshot, decode_snapshot
from transforms.kafka_clients import kafka_config

KEEP = 5  # the newest snapshots kept, so a newest one that fails validation has fallbacks


class _Feed:
    """One process's follower of one config topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self._lock = threading.Lock()
        self._snapshots: dict[int | None, Snapshot] = {}  # by version
        self._consumer = Consumer(
            kafka_config(
                bootstrap,
                {
                    "group.id": f"alertflow-filter-feed-{uuid.uuid4().hex}",
                    "enable.auto.commit": False,
                },
            )
        )
        partition = TopicPartition(topic, 0)
        _, high = self._consumer.get_watermark_offsets(partition, timeout=30)
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        position = 0
        while position < high:
            msg = self._consumer.poll(5.0)
            if msg is None:
                raise TimeoutError(f"reading {topic} stalled at offset {position} of {high}")
            if msg.error() is None:
                self._apply(msg.value())
                offset = msg.offset()
                if offset is None:  # set on every consumed message
                    raise OSError(f"{topic}: a consumed message has no offset")
                position = offset + 1
        threading.Thread(target=self._follow, name=f"filter-feed-{topic}", daemon=True).start()

    def _apply(self, value: bytes | None) -> None:
        if not value:
            return
        snapshot = decode_snapshot(value)
        with self._lock:
            self._snapshots[snapshot.version] = snapshot
            # The oldest go first; a message without a version is older than any with one.
            by_age = sorted(self._snapshots, key=lambda v: (v is not None, v or 0))
            for old in by_age[:-KEEP]:
                del self._snapshots[old]

    def _follow(self) -> None:
        while True:
            msg = self._consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                self._apply(msg.value())

    def snapshots(self) -> list[Snapshot]:
        with self._lock:
            return list(self._snapshots.values())


_FEEDS: dict[tuple[str, str], _Feed] = {}
_FEEDS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ConfigTopicFeed:
    """Where the live filter sets are; picklable, so DoFns carry it to the workers.

    A :class:`~transforms.filters.snapshot.SnapshotFeed`: ``snapshots()`` returns the newest
    decoded snapshots (one follower per process and topic).
    """

    bootstrap_servers: str
    topic: str

    def snapshots(self) -> list[Snapshot]:
        key = (self.bootstrap_servers, self.topic)
        with _FEEDS_LOCK:
            feed = _FEEDS.get(key)
            if feed is None:
                feed = _FEEDS[key] = _Feed(self.bootstrap_servers, self.topic)
        return feed.snapshots()
