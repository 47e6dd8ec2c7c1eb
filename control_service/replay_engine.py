"""The replay engine: the loop that sends replay's messages on a schedule (:class:`Sender`).

Used by ``alertflow replay`` (control_service/commands/replay.py) and by the replay service
(control_service/replay_service.py). The messages, and their fresh ids when the files are
cycled, are control_service/replay_messages.py. The pure parts (the schedule, the count, the
summary) are tested without Kafka.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from control_service.replay_messages import ReplayError, ReplayMessage, cycled_messages
from transforms.alert_model import Survey
from transforms.kafka_clients import kafka_config
from transforms.schemas import LsstSchemas
from transforms.topics import LSST_TOPIC, ZTF_TOPIC

DEFAULT_TOPICS = {Survey.ZTF: ZTF_TOPIC, Survey.LSST: LSST_TOPIC}


# --------------------------------------------------------------------------------------------
# Pacing and reporting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    """When each alert is due, in seconds after the start.

    ``rate`` None and no visit profile: everything is due at once (as fast as possible).
    With a visit profile, alert i belongs to visit ``i // visit_size``, due at
    ``visit * visit_interval`` (plus ``(i % visit_size) / rate`` if a rate is also set).
    """

    rate: float | None = None
    visit_size: int | None = None
    visit_interval: float | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and not self.rate > 0:
            raise ReplayError(f"--rate must be positive, got {self.rate}")
        if (self.visit_size is None) != (self.visit_interval is None):
            raise ReplayError("--visit-size and --visit-interval go together")
        if self.visit_size is not None and self.visit_size <= 0:
            raise ReplayError(f"--visit-size must be positive, got {self.visit_size}")
        if self.visit_interval is not None and self.visit_interval < 0:
            raise ReplayError(f"--visit-interval must be >= 0, got {self.visit_interval}")

    def due(self, i: int) -> float:
        """Seconds after the start at which alert ``i`` (0-based) is due."""
        if self.visit_size is not None and self.visit_interval is not None:
            visit, within = divmod(i, self.visit_size)
            offset = within / self.rate if self.rate else 0.0
            return visit * self.visit_interval + offset
        return i / self.rate if self.rate else 0.0


def format_summary(sent: int, total_bytes: int, seconds: float, failed: int) -> str:
    """The closing line: alerts sent, bytes, achieved rate, delivery failures."""
    rate = sent / seconds if seconds > 0 else float("inf")
    mb_s = total_bytes / 1e6 / seconds if seconds > 0 else float("inf")
    return (
        f"replay: sent {sent} alerts, {total_bytes} bytes in {seconds:.2f} s: "
        f"{rate:,.0f} alerts/s, {mb_s:,.1f} MB/s; {failed} delivery failures"
    )


# --------------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------------


def plan_count(args: argparse.Namespace, available: int) -> int:
    """How many alerts to send: --count, else visits * visit size, else one pass."""
    if args.count is not None:
        if args.count <= 0:
            raise ReplayError(f"--count must be positive, got {args.count}")
        return int(args.count)
    if args.visit_size is not None:
        if args.visits <= 0:
            raise ReplayError(f"--visits must be positive, got {args.visits}")
        return int(args.visits * args.visit_size)
    return available


def _produce(
    producer: Any, poll: Callable[[float], Any], topic: str, value: bytes, on_delivery: Any
) -> None:
    while True:
        try:
            producer.produce(
                topic, value=value, timestamp=int(time.time() * 1000), on_delivery=on_delivery
            )
            return
        except BufferError:
            # Local queue full: let librdkafka deliver some, then try again.
            poll(0.05)


PRODUCER_CONFIG = {
    "linger.ms": 5,
    "batch.size": 4 * 1024 * 1024,
    "queue.buffering.max.kbytes": 512 * 1024,
    "message.max.bytes": 8 * 1024 * 1024,
    "acks": "all",
}


def kafka_producer(bootstrap_servers: str) -> Any:
    """A confluent-kafka producer configured for replay."""
    from confluent_kafka import Producer  # imported here: inspect and tests need no Kafka client

    return Producer(kafka_config(bootstrap_servers, PRODUCER_CONFIG))


class Sender:
    """One replay: ``count`` messages cycled from ``messages``, paced by ``schedule``, each
    produced to its survey's topic in ``topics``; then the producer is flushed.

    The one-shot command runs it in its own thread, the replay service on a background thread.
    :meth:`stop` (from any thread) ends the sending after the current message; the flush still
    happens. Counters (``sent``, ``bytes``, ``delivered``, ``failures``, ``undelivered``) are
    written by the sending thread only and may be read from any.
    """

    def __init__(
        self,
        producer: Any,
        messages: Sequence[ReplayMessage],
        count: int,
        schemas: LsstSchemas,
        schedule: Schedule,
        topics: Mapping[Survey, str],
        *,
        flush_timeout_s: float = 60.0,
    ) -> None:
        missing = {m.survey for m in messages} - set(topics)
        if missing:
            raise ReplayError(f"no topic for {sorted(s.value for s in missing)}")
        self.producer = producer
        self.messages = messages
        self.count = count
        self.schemas = schemas
        self.schedule = schedule
        self.topics = dict(topics)
        self.flush_timeout_s = flush_timeout_s
        self.sent = 0
        self.bytes = 0
        self.delivered = 0
        self.failures: list[str] = []
        self.undelivered = 0
        self.started: float | None = None
        self.finished: float | None = None
        self._stop = threading.Event()

    @property
    def failed(self) -> int:
        """Delivery failures reported by Kafka plus messages still queued after the flush."""
        return len(self.failures) + self.undelivered

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished if self.finished is not None else time.monotonic()) - self.started

    def rate(self) -> float:
        """Alerts per second achieved so far (0 before the first)."""
        elapsed = self.elapsed()
        return self.sent / elapsed if elapsed > 0 else 0.0

    def visit(self) -> int | None:
        """The visit of the last alert sent (0-based), with a visit profile; else None."""
        size = self.schedule.visit_size
        if size is None or self.sent == 0:
            return None
        return (self.sent - 1) // size

    def _on_delivery(self, error: Any, _msg: Any) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failures.append(str(error))

    def run(
        self, progress: Callable[[Sender], None] | None = None, progress_every_s: float = 0.5
    ) -> None:
        """Send, then flush; ``progress(self)`` is called every ``progress_every_s`` seconds."""
        producer = self.producer
        self.started = start = time.monotonic()
        last_progress = start
        n = len(self.messages)
        for i, value in enumerate(cycled_messages(self.messages, self.count, self.schemas)):
            wait = self.schedule.due(i) - (time.monotonic() - start)
            if wait > 0:
                producer.poll(0)
                # Paced: wait for the alert's due time, or less if stopped meanwhile.
                if self._stop.wait(wait):
                    break
            if self._stop.is_set():
                break
            topic = self.topics[self.messages[i % n].survey]
            _produce(producer, producer.poll, topic, value, self._on_delivery)
            producer.poll(0)
            self.sent += 1
            self.bytes += len(value)
            now = time.monotonic()
            if progress is not None and now - last_progress >= progress_every_s:
                progress(self)
                last_progress = now
        self.undelivered = producer.flush(self.flush_timeout_s)
        self.finished = time.monotonic()
