"""What every confluent_kafka client of alertflow starts from, and the one "does Kafka answer?".

- :func:`kafka_config`: a client's settings with :data:`KAFKA_LOG` as its ``logger``, so that
  librdkafka's own log goes through Python logging (logger ``librdkafka``) instead of straight
  to stderr. confluent_kafka hands a client's log lines over in that client's ``poll()`` or
  ``flush()`` only (never from librdkafka's own threads); a client that is never polled keeps
  them until it is closed.
- :data:`KAFKA_LOG` carries a :class:`RateLimit`: while a broker is down, librdkafka repeats
  the same connection error every 50 ms or so; one of them is shown per
  :data:`LOG_INTERVAL_S`, and the next one shown says how many were held back.
- :func:`kafka_problem`: why Kafka cannot serve us now, or None when it can (a metadata request
  answered within a short timeout, with the topics asked for). The services' ``/ready`` and the
  local stack's health check all ask it; :func:`wait_ready` asks it until Kafka answers.
- :func:`ensure_topics` / :func:`ensure_topic`: create the topics that do not exist yet
  (:class:`Topic`: name, partitions, topic config); one that another client created meanwhile
  is fine, told by its KafkaError code, never by the text of the error.
- :data:`DEFAULT_BOOTSTRAP`: where a local broker listens unless told otherwise.

Every service uses these (control, replay, autoscaler, the stack, the pipeline's own clients),
so this module sits at the bottom of the layers and imports nothing of alertflow.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

#: The Kafka port of a local broker (the stack's) unless ``ALERTFLOW_KAFKA_PORT`` says otherwise.
DEFAULT_KAFKA_PORT = 9092
#: Where a local Kafka broker listens unless told otherwise.
DEFAULT_BOOTSTRAP = f"127.0.0.1:{DEFAULT_KAFKA_PORT}"
#: Identical librdkafka lines are shown at most once in this many seconds.
LOG_INTERVAL_S = 30.0
#: How long a readiness probe waits for a metadata answer: a closed port never answers faster,
#: since librdkafka retries the connection until the timeout.
PROBE_TIMEOUT_S = 2.0

_DIGITS = re.compile(r"\d+")


@dataclass(slots=True)
class _Shown:
    at: float
    held_back: int = 0


class RateLimit(logging.Filter):
    """Lets one of a kind of record through per ``interval_s`` and counts the ones held back.

    Of a kind: the same logger, level and message once its digits are masked (librdkafka
    numbers its clients and writes timings and repeat counts into otherwise equal lines). The
    next record of the kind let through ends with how many were held back since the previous
    one; the count of a flood that has stopped is never told. At most ``max_kinds`` kinds are
    remembered. Thread-safe: confluent_kafka logs from whichever thread polls a client.
    """

    def __init__(
        self,
        interval_s: float = LOG_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 1000,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._max_kinds = max_kinds
        self._lock = threading.Lock()
        self._shown: dict[tuple[str, int, str], _Shown] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        kind = (record.name, record.levelno, _DIGITS.sub("#", message))
        now = self._clock()
        with self._lock:
            last = self._shown.get(kind)
            if last is not None and now - last.at < self.interval_s:
                last.held_back += 1
                return False
            if last is None and len(self._shown) >= self._max_kinds:
                self._forget(now)
            self._shown[kind] = _Shown(now)
        if last is not None and last.held_back:
            record.msg = (
                f"{message} ({last.held_back} more like it held back in the last "
                f"{now - last.at:.0f} s)"
            )
            record.args = ()
        return True

    def _forget(self, now: float) -> None:
        """Drop the kinds whose interval is over; all of them if every one is still recent."""
        self._shown = {k: v for k, v in self._shown.items() if now - v.at < self.interval_s}
        if len(self._shown) >= self._max_kinds:
            self._shown.clear()


#: The logger of every librdkafka client alertflow makes (see :func:`kafka_config`).
KAFKA_LOG = logging.getLogger("librdkafka")
if not any(isinstance(f, RateLimit) for f in KAFKA_LOG.filters):  # once, even on a reload
    KAFKA_LOG.addFilter(RateLimit())


def kafka_config(
    bootstrap_servers: str, settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A confluent_kafka client's configuration: the servers, ``settings``, and the logger."""
    return {"bootstrap.servers": bootstrap_servers, **(settings or {}), "logger": KAFKA_LOG}


class KafkaMetadata(Protocol):
    """What the probe asks of a client (any confluent_kafka client fits)."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...


def kafka_problem(
    bootstrap_servers: str,
    topics: Iterable[str] = (),
    *,
    timeout_s: float = PROBE_TIMEOUT_S,
    client: KafkaMetadata | None = None,
) -> str | None:
    """Why Kafka at ``bootstrap_servers`` cannot serve us now; None if it answers a metadata
    request within ``timeout_s`` and has every topic of ``topics``.

    ``client`` asks through a client the caller keeps (its log stays with it); without one a
    fresh AdminClient asks, and its log lines go to :data:`KAFKA_LOG` before it is dropped.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    where = f"kafka at {bootstrap_servers}"
    own = None
    try:
        if client is None:
            client = own = AdminClient(kafka_config(bootstrap_servers))
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException as error:
        return f"{where} does not answer within {timeout_s:g} s: {_reason(error)}"
    finally:
        if own is not None:
            own.poll(0)
    missing = [
        t for t in topics if (meta := metadata.topics.get(t)) is None or meta.error is not None
    ]
    if missing:
        return f"{where} answers, but has no topic {', '.join(missing)}"
    return None


def _not_ready_codes() -> frozenset[Any]:
    """The KafkaError codes of a broker that is not there yet (down, starting, unreachable)."""
    from confluent_kafka import KafkaError

    return frozenset(
        {
            KafkaError._TRANSPORT,
            KafkaError._TIMED_OUT,
            KafkaError._ALL_BROKERS_DOWN,
            KafkaError._RESOLVE,
            KafkaError.BROKER_NOT_AVAILABLE,
            KafkaError.LEADER_NOT_AVAILABLE,
        }
    )


def wait_ready(
    bootstrap_servers: str, timeout_s: float, topics: Iterable[str] = (), *, interval_s: float = 0.5
) -> None:
    """Return once Kafka at ``bootstrap_servers`` answers a metadata request (and has every
    topic of ``topics``). While it is not there yet (a KafkaError code of a broker down or
    starting) it asks again; another failure (bad settings, refused credentials) raises its
    KafkaException at once; TimeoutError, with why, if not ready within ``timeout_s``."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    wanted = tuple(topics)
    where = f"kafka at {bootstrap_servers}"
    admin = AdminClient(kafka_config(bootstrap_servers))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            ask_s = max(0.1, min(PROBE_TIMEOUT_S, deadline - time.monotonic()))
            try:
                metadata = admin.list_topics(timeout=ask_s)
            except KafkaException as error:
                if _code(error) not in _not_ready_codes():
                    raise
                problem = f"{where} does not answer: {_reason(error)}"
            else:
                missing = [
                    t
                    for t in wanted
                    if (meta := metadata.topics.get(t)) is None or meta.error is not None
                ]
                if not missing:
                    return
                problem = f"{where} answers, but has no topic {', '.join(missing)}"
            if time.monotonic() + interval_s >= deadline:
                raise TimeoutError(f"{problem} (waited {timeout_s:g} s)")
            time.sleep(interval_s)
    finally:
        admin.poll(0)  # its log lines go to KAFKA_LOG


@dataclass(frozen=True)
class Topic:
    """A topic to create: its name, partitions and topic-level config (e.g. compaction)."""

    name: str
    partitions: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


#: The topic config of a compacted topic (the config topics: the newest record per key lives).
COMPACTED = {"cleanup.policy": "compact"}


class TopicAdmin(Protocol):
    """What :func:`ensure_topics` asks of an admin client (confluent_kafka's AdminClient)."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...

    def create_topics(self, new_topics: list[Any], **kwargs: Any) -> dict[str, Any]: ...


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[Topic],
    *,
    timeout_s: float = 30.0,
    admin: TopicAdmin | None = None,
    wait_for_leaders: bool = False,
) -> list[str]:
    """Create the ``topics`` Kafka does not have; returns the names created here. A topic
    another client creates at the same time counts as there (``TOPIC_ALREADY_EXISTS``); any
    other failure raises the KafkaException. ``wait_for_leaders``: return only once every
    partition of every topic has a leader (a new topic's partitions have none for a moment,
    and reading their offsets fails until then); TimeoutError if not within ``timeout_s``.
    ``admin`` is a client the caller keeps, else one is made for the call."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    wanted = list(topics)
    admin = admin if admin is not None else AdminClient(kafka_config(bootstrap_servers))
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [t for t in wanted if t.name not in existing]
    created: list[str] = []
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    t.name, num_partitions=t.partitions, replication_factor=1, config=dict(t.config)
                )
                for t in missing
            ]
        )
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_s)
            except KafkaException as error:
                if _code(error) != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            else:
                created.append(name)
    if wait_for_leaders:
        _wait_for_leaders(admin, [t.name for t in wanted], timeout_s)
    return created


def ensure_topic(
    bootstrap_servers: str,
    name: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    **options: Any,
) -> bool:
    """:func:`ensure_topics` for one topic; True if it was created here."""
    return bool(
        ensure_topics(bootstrap_servers, [Topic(name, partitions, dict(config or {}))], **options)
    )


def _wait_for_leaders(admin: TopicAdmin, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = list(names)
    while waiting:
        metadata = admin.list_topics(timeout=timeout_s).topics
        waiting = [
            n
            for n in waiting
            if (meta := metadata.get(n)) is None
            or meta.error is not None
            or not meta.partitions
            or any(p.leader < 0 for p in meta.partitions.values())
        ]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{', '.join(waiting)}: created, but a partition has no leader "
                f"after {timeout_s:g} s"
            )
        time.sleep(0.1)


def _code(error: Exception) -> Any:
    """The KafkaError code of a KafkaException, or None."""
    from confluent_kafka import KafkaError

    inner = error.args[0] if error.args else None
    return inner.code() if isinstance(inner, KafkaError) else None


def _reason(error: Exception) -> str:
    """The text of a KafkaException's KafkaError, without the ``KafkaError{code=...}`` wrapper."""
    from confluent_kafka import KafkaError

    inner = error.args[0] if error.args else None
    return inner.str() if isinstance(inner, KafkaError) else str(error)


__all__ = [
    "COMPACTED",
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_KAFKA_PORT",
    "KAFKA_LOG",
    "LOG_INTERVAL_S",
    "PROBE_TIMEOUT_S",
    "RateLimit",
    "Topic",
    "ensure_topic",
    "ensure_topics",
    "kafka_config",
    "kafka_problem",
    "wait_ready",
]
