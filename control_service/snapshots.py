"""Filter-set snapshots on a compacted topic: the one implementation of the protocol.

DESIGN.md section 2: a compacted one-partition topic, key ``b"filters"``, each message a whole
snapshot (``transforms.filters.snapshot`` encodes and decodes it, the same code the pipeline's
workers use), versions increasing. :class:`KafkaSnapshotLog` reads and writes such a topic,
:class:`MemorySnapshotLog` stands in for it in unit tests; the filter store
(control_service/store.py) keeps its two topics through them. :func:`publish_snapshot` and
:func:`next_version` are for callers without a control service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from transforms.filters.model import FilterSet
from transforms.filters.snapshot import RejectedSnapshot, Snapshot, decode_snapshot, encode_snapshot
from transforms.kafka_clients import (
    COMPACTED,
    PROBE_TIMEOUT_S,
    ensure_topic,
    kafka_config,
    kafka_problem,
)
from transforms.topics import CONFIG_TOPIC

log = logging.getLogger(__name__)
SNAPSHOT_KEY = b"filters"


class SnapshotLog(Protocol):
    """Where whole snapshots go: a compacted topic, or memory in unit tests."""

    name: str

    def latest(self) -> Snapshot | None:
        """The highest-version snapshot (valid or not), or None if there is none."""
        ...

    def publish(self, filter_set: FilterSet) -> None: ...

    def problem(self) -> str | None:
        """Why the log cannot be read or written now; None when it can."""
        ...


def _highest(values: Iterable[bytes | None], where: str) -> Snapshot | None:
    best: Snapshot | None = None
    for value in values:
        if value is None:  # a tombstone: nothing to restore from it
            continue
        snapshot = decode_snapshot(value)
        if snapshot.version is None:
            log.warning(
                "%s: skipping a message without an integer version: %s",
                where,
                snapshot.reason if isinstance(snapshot, RejectedSnapshot) else "",
            )
            continue
        if best is None or best.version is None or snapshot.version > best.version:
            best = snapshot
    return best


class MemorySnapshotLog:
    """A snapshot log in memory (unit tests); ``messages`` survives a "restart" if shared."""

    def __init__(
        self, name: str = "memory", messages: list[tuple[bytes, bytes | None]] | None = None
    ) -> None:
        self.name = name
        self.messages = [] if messages is None else messages
        self.fail_next = False  # lets a test make the next publish fail
        self.down: str | None = None  # lets a test make the log unreadable, with this reason

    def latest(self) -> Snapshot | None:
        if self.down is not None:
            raise ConnectionError(self.down)
        return _highest((v for k, v in self.messages if k == SNAPSHOT_KEY), self.name)

    def publish(self, filter_set: FilterSet) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError(f"{self.name}: publish failed (test)")
        self.messages.append((SNAPSHOT_KEY, encode_snapshot(filter_set)))

    def problem(self) -> str | None:
        return self.down


class KafkaSnapshotLog:
    """Snapshots on a compacted one-partition topic, created (compacted) if it does not exist.

    Nothing connects before the first :meth:`latest` or :meth:`publish`, so a log can be made
    while Kafka is down; the topic is checked (and created) then. ``latest`` asks whether Kafka
    answers first (:func:`~transforms.kafka_clients.kafka_problem`), so a broker that is down
    fails it within seconds, with the reason, not after ``timeout_s`` of retries.
    """

    def __init__(
        self, bootstrap_servers: str, topic: str, timeout_s: float = 10.0, create: bool = True
    ) -> None:
        self.name = topic
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self.probe_timeout_s = min(timeout_s, PROBE_TIMEOUT_S)
        self._topic_checked = not create
        self._producer: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        """The producer, made on first use, after the topic is checked (and created)."""
        from confluent_kafka import Producer

        with self._lock:
            if not self._topic_checked:
                self._ensure_topic()
                self._topic_checked = True
            if self._producer is None:
                self._producer = Producer(
                    kafka_config(
                        self.bootstrap_servers,
                        {
                            "enable.idempotence": True,
                            "acks": "all",
                            "linger.ms": 0,
                            "message.timeout.ms": int(self.timeout_s * 1000),
                        },
                    )
                )
            return self._producer

    def _ensure_topic(self) -> None:
        # A new topic's partition has no leader for a moment; reading offsets before that fails
        # with "Unknown partition", so this waits for it.
        ensure_topic(
            self.bootstrap_servers,
            self.name,
            1,
            COMPACTED,
            timeout_s=self.timeout_s,
            wait_for_leaders=True,
        )

    def latest(self) -> Snapshot | None:
        """The highest snapshot on the topic, or None; raises ConnectionError (with the
        reason) if Kafka does not answer, or another error if the topic cannot be read."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        problem = kafka_problem(self.bootstrap_servers, timeout_s=self.probe_timeout_s)
        if problem is not None:
            raise ConnectionError(problem)
        self._connect()
        consumer = Consumer(
            kafka_config(
                self.bootstrap_servers,
                {
                    "group.id": f"alertflow-control-reader-{time.monotonic_ns()}",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                },
            )
        )
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.name, 0), timeout=self.timeout_s
            )
            if high <= low:
                return None
            consumer.assign([TopicPartition(self.name, 0, OFFSET_BEGINNING)])
            values: list[bytes | None] = []
            deadline = time.monotonic() + self.timeout_s
            position = low
            while position < high:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.name}: read only to offset {position} of {high} "
                        f"in {self.timeout_s}s"
                    )
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error():
                    raise OSError(f"{self.name}: {message.error()}")
                offset = message.offset()
                if offset is None:  # set on every consumed message
                    raise OSError(f"{self.name}: a consumed message has no offset")
                position = offset + 1
                if message.key() == SNAPSHOT_KEY:
                    values.append(message.value())
            return _highest(values, self.name)
        finally:
            consumer.close()

    def publish(self, filter_set: FilterSet) -> None:
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        producer = self._connect()
        producer.produce(
            self.name, key=SNAPSHOT_KEY, value=encode_snapshot(filter_set), on_delivery=delivered
        )
        left = producer.flush(self.timeout_s)
        if left or errors:
            raise OSError(
                f"{self.name}: snapshot not delivered: {errors[0] if errors else 'timed out'}"
            )

    def problem(self) -> str | None:
        """Why the topic cannot be read or written now (Kafka down, the topic gone); None if
        it can. Not through the producer: polling it here could serve a delivery report
        that :meth:`publish` is waiting for in another thread."""
        return kafka_problem(self.bootstrap_servers, [self.name], timeout_s=self.probe_timeout_s)


def publish_snapshot(bootstrap: str, filter_set: FilterSet, topic: str = CONFIG_TOPIC) -> None:
    """Append ``filter_set`` as a whole snapshot; raises if Kafka does not acknowledge it."""
    KafkaSnapshotLog(bootstrap, topic).publish(filter_set)


def next_version(bootstrap: str, topic: str = CONFIG_TOPIC) -> int:
    """One more than the highest version on the topic, valid or not; 1 on an empty topic."""
    newest = KafkaSnapshotLog(bootstrap, topic).latest()
    return 1 if newest is None or newest.version is None else newest.version + 1
