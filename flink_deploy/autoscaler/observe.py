"""One look at the load: Kafka consumer lag and rates, Flink busy time and backpressure.

:class:`Observer` reads, each time :meth:`Observer.observe` is called:

- **Kafka** (confluent_kafka): for every partition of the alert topics, the group's committed
  offset and the high watermark; lag = high - committed (a partition the group never committed
  counts from its low watermark). The broker commits on Flink checkpoints, so the lag moves in
  steps of the checkpoint interval. Records in/s is the growth of the summed high watermarks
  since the previous observation, records out/s the growth of the summed committed offsets.
- **Flink** (REST): the RUNNING job from ``/jobs/overview`` (the most recently started one, or
  the one named ``job_name``); its vertices from ``/jobs/<jid>``; per vertex the max over
  subtasks of ``busyTimeMsPerSecond`` and ``backPressuredTimeMsPerSecond``; ``/overview`` for
  the TaskManagers and slots. With no RUNNING job (restarting, none submitted) the observation
  says so: ``job_state`` is the state seen, ``parallelism`` 0, busy and backpressure None.
  ``tasks_running``/``tasks_total`` tell a RUNNING job whose tasks wait for slots (a lost
  TaskManager) from one that runs: ``Observation.job_running`` needs all of them running.
- **Flink checkpoints** (``/jobs/<jid>/checkpoints`` of the RUNNING job): whether the committed
  offsets are fresh. The broker commits its offsets when a checkpoint completes, and a rescale
  restarts the job from its latest checkpoint: from that restore until a checkpoint triggered
  after it completes, the committed offsets (and so the lag and records out/s) stand still.
  ``checkpointed_since_restore`` is True with no restore (``latest.restored`` null) or when the
  latest completed checkpoint was triggered after the latest restore
  (``trigger_timestamp > restore_timestamp``, both on the JobManager's clock), False when none
  was, None when unknown (no RUNNING job, or the answer unreadable).

Contract: ``observe()`` never raises for an unreachable Kafka or Flink, or an answer it cannot
read: each failure is a line in ``Observation.errors`` and the fields it would have filled
are None. It is not thread-safe; one loop calls it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from confluent_kafka import KafkaException

from flink_deploy.autoscaler.model import Observation
from flink_deploy.flink_rest import TERMINAL_STATES, FlinkRest, FlinkRestError
from transforms.kafka_clients import PROBE_TIMEOUT_S, kafka_config, kafka_problem

METRICS = ("busyTimeMsPerSecond", "backPressuredTimeMsPerSecond")

# Observation is defined in .model (a pure record, for the decision engine); callers may take it
# from here with the Observer.
__all__ = [
    "METRICS",
    "KafkaOffsets",
    "Observation",
    "Observer",
    "checkpointed_since_restore",
    "kafka_consumer",
]


class KafkaOffsets(Protocol):
    """The Kafka reads the observer needs (a confluent_kafka Consumer fits; tests fake it)."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...

    def get_watermark_offsets(
        self, partition: Any, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]: ...

    def committed(self, partitions: list[Any], timeout: float = -1) -> list[Any]: ...

    def close(self) -> None: ...


def kafka_consumer(bootstrap_servers: str, group_id: str) -> KafkaOffsets:
    """A consumer in ``group_id`` that never joins the group and never commits: it only reads."""
    from confluent_kafka import Consumer

    return Consumer(
        kafka_config(
            bootstrap_servers,
            {
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            },
        )
    )


@dataclass(frozen=True)
class _Offsets:
    lag_total: int
    lag_by_topic: dict[str, int]
    end_total: int
    committed_total: int


class Observer:
    """Observes the load of the pipeline reading ``topics`` as consumer group ``group_id``.

    ``consumer_factory`` and ``session`` replace the Kafka consumer and the HTTP session
    (tests); ``clock`` gives the timestamp (seconds since the epoch).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        topics: Sequence[str],
        flink_rest_url: str,
        *,
        job_name: str | None = None,
        timeout_s: float = 5.0,
        session: requests.Session | None = None,
        consumer_factory: Callable[[str, str], KafkaOffsets] = kafka_consumer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.topics = tuple(topics)
        self.flink = FlinkRest(flink_rest_url, timeout_s, session)
        self.flink_rest_url = self.flink.base_url
        self.job_name = job_name
        self.timeout_s = timeout_s
        self._consumer_factory = consumer_factory
        self._consumer: KafkaOffsets | None = None
        self._clock = clock
        self._previous: tuple[float, int, int] | None = None  # time, end total, committed total
        self._lock = threading.RLock()

    # --- Kafka --------------------------------------------------------------------------------

    def _kafka(self) -> KafkaOffsets:
        if self._consumer is None:
            self._consumer = self._consumer_factory(self.bootstrap_servers, self.group_id)
        return self._consumer

    def kafka_offsets(self) -> _Offsets:
        """Lag, end and committed totals over every partition; raises on any Kafka failure."""
        from confluent_kafka import TopicPartition

        consumer = self._kafka()
        metadata = consumer.list_topics(timeout=self.timeout_s)
        partitions: list[Any] = []
        for topic in self.topics:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None:
                why = meta.error if meta is not None else "no such topic"
                raise LookupError(f"topic {topic}: {why}")
            partitions += [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        committed = {
            (tp.topic, tp.partition): tp
            for tp in consumer.committed(partitions, timeout=self.timeout_s)
        }
        lag_by_topic = dict.fromkeys(self.topics, 0)
        end_total = committed_total = 0
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=self.timeout_s, cached=False)
            seen = committed.get((tp.topic, tp.partition))
            if seen is not None and seen.error is not None:
                raise LookupError(f"{tp.topic}[{tp.partition}]: committed offset: {seen.error}")
            position = seen.offset if seen is not None and seen.offset >= 0 else low
            lag_by_topic[tp.topic] += max(0, high - position)
            end_total += high
            committed_total += position
        return _Offsets(sum(lag_by_topic.values()), lag_by_topic, end_total, committed_total)

    # --- Flink --------------------------------------------------------------------------------

    def _running_job(self) -> tuple[str | None, str | None, dict[str, int]]:
        """(job id, state, task counts): the RUNNING job if any, else the latest unfinished
        job's state."""
        jobs = [
            j for j in self.flink.jobs() if self.job_name is None or j.get("name") == self.job_name
        ]
        jobs.sort(key=lambda j: j.get("start-time", 0), reverse=True)
        for job in jobs:
            if job.get("state") == "RUNNING":
                return job["jid"], "RUNNING", job.get("tasks", {})
        for job in jobs:
            if job.get("state") not in TERMINAL_STATES:
                return job["jid"], job.get("state"), job.get("tasks", {})
        return None, None, {}

    def flink_job(self) -> dict[str, Any]:
        """job_id, job_state, parallelism, busy and backpressure maxima; raises on failure."""
        job_id, state, tasks = self._running_job()
        out: dict[str, Any] = {
            "job_id": job_id,
            "job_state": state,
            "parallelism": 0,
            "tasks_running": int(tasks.get("running", 0)),
            "tasks_total": int(tasks.get("total", 0)),
            "busy_max_ms_per_s": None,
            "backpressure_max_ms_per_s": None,
        }
        if state != "RUNNING" or job_id is None:
            return out
        vertices = self.flink.job(job_id).get("vertices", [])
        out["parallelism"] = max((int(v.get("parallelism", 0)) for v in vertices), default=0)
        maxima: dict[str, float] = {}
        for vertex in vertices:
            rows = self.flink.subtask_metrics(job_id, vertex["id"], METRICS, agg="max")
            for name, value in rows.items():
                if math.isfinite(value) and name in METRICS:
                    maxima[name] = max(value, maxima.get(name, value))
        out["busy_max_ms_per_s"] = maxima.get("busyTimeMsPerSecond")
        out["backpressure_max_ms_per_s"] = maxima.get("backPressuredTimeMsPerSecond")
        return out

    def flink_checkpoints(self, job_id: str) -> bool:
        """``checkpointed_since_restore`` of job ``job_id``; raises on failure or an answer
        without the timestamps it needs."""
        return checkpointed_since_restore(self.flink.checkpoints(job_id))

    def flink_cluster(self) -> dict[str, int]:
        overview = self.flink.overview()
        return {
            "taskmanagers": int(overview["taskmanagers"]),
            "slots_total": int(overview["slots-total"]),
            "slots_available": int(overview["slots-available"]),
        }

    # --- together -----------------------------------------------------------------------------

    def observe(self) -> Observation:
        """One observation; failures are in ``errors``, never raised."""
        with self._lock:
            return self._observe()

    def _observe(self) -> Observation:
        now = self._clock()
        values: dict[str, Any] = {}
        errors: list[str] = []
        try:
            offsets = self.kafka_offsets()
        except (KafkaException, LookupError) as error:
            errors.append(f"kafka: {type(error).__name__}: {error}")
            self._reset_kafka()
        else:
            values["lag_total"] = offsets.lag_total
            values["lag_by_topic"] = offsets.lag_by_topic
            if self._previous is not None and now > self._previous[0]:
                elapsed = now - self._previous[0]
                values["records_in_per_s"] = (offsets.end_total - self._previous[1]) / elapsed
                values["records_out_per_s"] = (
                    offsets.committed_total - self._previous[2]
                ) / elapsed
            self._previous = (now, offsets.end_total, offsets.committed_total)
        for name, read in (("flink job", self.flink_job), ("flink cluster", self.flink_cluster)):
            try:
                values.update(read())
            except (FlinkRestError, LookupError, KeyError, TypeError, ValueError) as error:
                errors.append(f"{name}: {_why(error)}")
        if values.get("job_state") == "RUNNING" and values.get("job_id") is not None:
            try:
                values["checkpointed_since_restore"] = self.flink_checkpoints(values["job_id"])
            except (FlinkRestError, LookupError, KeyError, TypeError, ValueError) as error:
                errors.append(f"flink checkpoints: {_why(error)}")
        return Observation(timestamp=now, errors=tuple(errors), **values)

    def kafka_problem(self) -> str | None:
        """Why Kafka does not answer the observer's consumer (None if it does), asked with the
        services' probe (:func:`~transforms.kafka_clients.kafka_problem`); a consumer that
        gets no answer is dropped, and made again next time."""
        with self._lock:
            problem = kafka_problem(
                self.bootstrap_servers,
                client=self._kafka(),
                timeout_s=min(self.timeout_s, PROBE_TIMEOUT_S),
            )
            if problem is not None:
                self._reset_kafka()
            return problem

    def flink_problem(self) -> str | None:
        """Why the Flink REST API does not answer ``/overview`` (None if it does)."""
        try:
            self.flink.overview()
        except FlinkRestError as error:
            return str(error)
        return None

    def _reset_kafka(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                consumer.close()
            except (KafkaException, RuntimeError):
                pass  # a broken consumer is being dropped anyway

    def close(self) -> None:
        """Close the Kafka consumer (it never joined the group, so no rebalance follows)."""
        with self._lock:
            self._reset_kafka()


def checkpointed_since_restore(body: Any) -> bool:
    """From Flink's ``GET /jobs/<jid>/checkpoints`` answer: True if the job was not restored
    (``latest.restored`` null) or a checkpoint triggered after its latest restore completed;
    False if not. Raises LookupError when the answer lacks what that needs."""
    latest = body.get("latest") if isinstance(body, dict) else None
    if not isinstance(latest, dict):
        raise LookupError("no 'latest' in the checkpoint statistics")
    restored, completed = latest.get("restored"), latest.get("completed")
    if restored is None:
        return True
    restore_ms = _number(restored.get("restore_timestamp")) if isinstance(restored, dict) else None
    if restore_ms is None:
        raise LookupError("latest.restored has no restore_timestamp")
    if completed is None:
        return False
    trigger_ms = (
        _number(completed.get("trigger_timestamp")) if isinstance(completed, dict) else None
    )
    if trigger_ms is None:
        raise LookupError("latest.completed has no trigger_timestamp")
    return trigger_ms > restore_ms


def _why(error: Exception) -> str:
    """A failed read as an ``errors`` line: a Flink REST error says what failed and where; any
    other (an answer without the fields we read) is named by its type."""
    return str(error) if isinstance(error, FlinkRestError) else f"{type(error).__name__}: {error}"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
