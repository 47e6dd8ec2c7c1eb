"""The filter store: the filter set, kept as whole snapshots on the compacted config topic.

The protocol the running pipeline reads (keep it exactly): topic ``alertflow.config``, one
partition, compacted; each message is a whole snapshot, key ``b"filters"``, value the JSON of
``FilterSet.to_snapshot()`` (``{"version": n, "filters": [document, ...]}``, encoded and decoded
by ``transforms.filters.snapshot``, the same code the pipeline's workers use) with strictly
increasing versions. It holds the *active* filters only. Deactivated filters are kept, also as
whole snapshots under the same key, on a second compacted topic (``alertflow.config.inactive``)
that the pipeline never reads.

Durability: at start the store reads both topics from the beginning to their end offsets and
keeps the highest version of each. The config topic is authoritative for which filters are
active; a filter is inactive if it is in the inactive snapshot and not in the active one. A change
that moves a filter into the inactive set writes the inactive snapshot first, any other change
writes the active one first, so a crash between the two writes leaves the filter in at least one
of them (in both: active wins) and never loses it.

Every change bumps the version by one, publishes, and only then changes memory and appends to
the audit log (who, what, when, old and new version). A failed publish changes nothing in memory
and makes the next change re-read the topics first, so versions stay strictly increasing.
One writer (one control service) per config topic is assumed.

Kafka down at start: :meth:`FilterStore.load_or_retry` tries once, then keeps trying on a
thread of its own, waiting longer after each failure. Until the topics have been read, every
read and change of the filters is refused with 503 and the reason (the version and the filters
are not known, so neither an empty list nor a version 1 would be true).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from control_service.auth import Principal
from control_service.errors import ApiError, conflict, forbidden, not_found, unavailable
from transforms.filters.document import Filter, FilterSet
from transforms.filters.snapshot import RejectedSnapshot, Snapshot, decode_snapshot, encode_snapshot
from transforms.kafka_clients import (
    COMPACTED,
    PROBE_TIMEOUT_S,
    ensure_topic,
    kafka_config,
    kafka_problem,
)

log = logging.getLogger(__name__)
SNAPSHOT_KEY = b"filters"
#: The background loading waits this long after its first failure, twice as long after each
#: further one, up to RETRY_MAX_S: Kafka back means ready within about RETRY_MAX_S.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


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


def _valid(snapshot: Snapshot | None, where: str) -> FilterSet | None:
    """``snapshot`` as a set; raises ValueError (with the reason) if it was rejected."""
    if isinstance(snapshot, RejectedSnapshot):
        raise ValueError(
            f"{where}: snapshot version {snapshot.version} is not valid: {snapshot.reason}"
        )
    return snapshot


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


def _why(error: Exception) -> str:
    """An error reading the topics as a reason: Kafka's own words when it does not answer."""
    return str(error) if isinstance(error, ConnectionError) else f"{type(error).__name__}: {error}"


class AuditLog:
    """Append-only JSON lines: who, what, when, and the old and new version."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(
        self,
        principal: Principal | None,
        action: str,
        target: str,
        old_version: Any,
        new_version: Any,
        **extra: Any,
    ) -> dict[str, Any]:
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "user": principal.user if principal else None,
            "role": principal.role if principal else None,
            "action": action,
            "target": target,
            "old_version": old_version,
            "new_version": new_version,
            **extra,
        }
        if self.path is not None:
            line = json.dumps(entry, default=str) + "\n"
            with self._lock, self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        return entry


@dataclass(frozen=True, slots=True)
class StoredFilter:
    filter: Filter
    active: bool


@dataclass(frozen=True, slots=True)
class ApplyResult:
    version: int
    created: tuple[str, ...]
    updated: tuple[str, ...]


class FilterStore:
    """The filter set and the deactivated filters; all changes are whole, ordered snapshots."""

    def __init__(self, active_log: SnapshotLog, inactive_log: SnapshotLog, audit: AuditLog) -> None:
        self._active_log = active_log
        self._inactive_log = inactive_log
        self._audit = audit
        self.audit = audit
        self._lock = threading.RLock()
        self._set = FilterSet(0, ())
        self._inactive: dict[str, Filter] = {}
        self._stale = True
        self.loaded = False
        self.changes = 0
        #: Why the last load failed (None after a load that worked).
        self.load_problem: str | None = None
        self._closed = threading.Event()
        self._loader: threading.Thread | None = None

    # --- loading ---------------------------------------------------------------------------

    def load_or_retry(
        self, first_wait_s: float = RETRY_FIRST_S, max_wait_s: float = RETRY_MAX_S
    ) -> bool:
        """Load now; if the topics cannot be read, keep trying on a daemon thread, waiting
        ``first_wait_s`` and then twice as long after each failure (at most ``max_wait_s``),
        until a load works or :meth:`close`. Returns whether the store is loaded now."""
        if self._try_load():
            return True
        if self._loader is not None and self._loader.is_alive():
            return False  # already trying
        self._loader = threading.Thread(
            target=self._keep_loading,
            args=(first_wait_s, max_wait_s),
            name="filter-store-loader",
            daemon=True,
        )
        self._loader.start()
        return False

    def _try_load(self) -> bool:
        try:
            self.load()
        except Exception as error:  # noqa: BLE001 - any broker failure: not loaded, and why
            problem = _why(error)
            if problem != self.load_problem:  # once per distinct reason, not once per retry
                log.warning(
                    "cannot read the filter topics %s and %s (retrying): %s",
                    self._active_log.name,
                    self._inactive_log.name,
                    problem,
                )
            self.load_problem = problem
            return False
        return True

    def _keep_loading(self, wait_s: float, max_wait_s: float) -> None:
        attempts = 1
        while not self.loaded and not self._closed.wait(wait_s):
            attempts += 1
            if self._try_load():
                log.info("filter topics read at attempt %d", attempts)
                return
            wait_s = min(wait_s * 2, max_wait_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the background loading, if any (after the attempt in progress)."""
        self._closed.set()
        if self._loader is not None:
            self._loader.join(timeout_s)

    def reload(self) -> int:
        """Re-read both topics now; 503 if they cannot be read (memory is then unchanged)."""
        try:
            self.load()
        except Exception as error:  # noqa: BLE001 - any broker failure is "unavailable"
            raise unavailable(f"cannot read the filter topics: {_why(error)}") from None
        return self.version

    def _require_loaded(self) -> None:
        if not self.loaded:
            why = self.load_problem or "loading"
            raise unavailable(
                f"the filters are not read from Kafka yet: {why}; the service keeps "
                "trying and serves them once it has",
                reason=why,
            )

    # --- reading ---------------------------------------------------------------------------

    def load(self) -> None:
        """(Re)read both topics; the highest snapshot of each wins.

        Raises on an unreadable topic."""
        with self._lock:
            active = _valid(self._active_log.latest(), self._active_log.name)
            inactive = _valid(self._inactive_log.latest(), self._inactive_log.name)
            filter_set = active or FilterSet(0, ())
            parked = inactive.filters if inactive else ()
            names = {f.name for f in filter_set.filters}
            self._set = filter_set
            self._inactive = {f.name: f for f in parked if f.name not in names}
            self._stale = False
            self.loaded = True
            self.load_problem = None
            log.info(
                "filters loaded: version %d, %d active, %d inactive",
                filter_set.version,
                len(names),
                len(self._inactive),
            )

    @property
    def version(self) -> int:
        return self._set.version

    @property
    def filter_set(self) -> FilterSet:
        return self._set

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self._set.filters), len(self._inactive)

    def all(self) -> tuple[int, list[StoredFilter]]:
        self._require_loaded()
        with self._lock:
            items = [StoredFilter(f, True) for f in self._set.filters]
            items += [StoredFilter(f, False) for f in self._inactive.values()]
            return self._set.version, sorted(items, key=lambda s: s.filter.name)

    def get(self, name: str) -> StoredFilter:
        self._require_loaded()
        with self._lock:
            for flt in self._set.filters:
                if flt.name == name:
                    return StoredFilter(flt, True)
            if name in self._inactive:
                return StoredFilter(self._inactive[name], False)
        raise not_found(f"no filter named {name!r}", name=name)

    def problem(self) -> str | None:
        """Why the store cannot serve reads and changes now; None when it can."""
        if not self.loaded:
            return f"the filter topics are not read yet: {self.load_problem or 'loading'}"
        return self._active_log.problem() or self._inactive_log.problem()

    # --- changing --------------------------------------------------------------------------

    @staticmethod
    def _authorize(principal: Principal, owner: str, name: str) -> None:
        if not principal.is_admin and owner != principal.user:
            raise forbidden(
                f"filter {name!r} belongs to {owner!r}; only its owner or an admin may change it",
                name=name,
                owner=owner,
                user=principal.user,
            )

    def apply(
        self,
        filters: Iterable[Filter],
        principal: Principal,
        *,
        create_only: bool = False,
        active: bool | None = None,
    ) -> ApplyResult:
        """Create or replace filters, all or none; a new filter is active unless ``active`` is
        False."""
        filters = tuple(filters)
        self._require_loaded()
        with self._lock:
            self._refresh()
            current = {f.name: f for f in self._set.filters}
            parked = dict(self._inactive)
            created: list[str] = []
            updated: list[str] = []
            for flt in filters:
                self._authorize(principal, flt.owner, flt.name)
                old = current.get(flt.name) or parked.get(flt.name)
                if old is None:
                    created.append(flt.name)
                else:
                    if create_only:
                        raise conflict(
                            f"filter {flt.name!r} already exists; "
                            f"PUT /api/v1/filters/{flt.name} replaces it",
                            name=flt.name,
                        )
                    self._authorize(principal, old.owner, flt.name)
                    updated.append(flt.name)
                want_active = (flt.name not in parked) if active is None else active
                current.pop(flt.name, None)
                parked.pop(flt.name, None)
                (current if want_active else parked)[flt.name] = flt
            order = [f.name for f in self._set.filters if f.name in current] + [
                n for n in current if n not in {f.name for f in self._set.filters}
            ]
            new_active = tuple(current[n] for n in order)
            action = "create" if not updated else "update" if not created else "apply"
            version = self._commit(
                new_active, parked, principal, action, ",".join(f.name for f in filters)
            )
            return ApplyResult(version, tuple(created), tuple(updated))

    def delete(self, name: str, principal: Principal) -> int:
        self._require_loaded()
        with self._lock:
            self._refresh()
            stored = self.get(name)
            self._authorize(principal, stored.filter.owner, name)
            new_active = tuple(f for f in self._set.filters if f.name != name)
            parked = {n: f for n, f in self._inactive.items() if n != name}
            return self._commit(new_active, parked, principal, "delete", name)

    def set_active(self, name: str, active: bool, principal: Principal) -> int:
        self._require_loaded()
        with self._lock:
            self._refresh()
            stored = self.get(name)
            self._authorize(principal, stored.filter.owner, name)
            if stored.active == active:
                return self._set.version  # already so: nothing to publish
            if active:
                new_active = (*self._set.filters, stored.filter)
                parked = {n: f for n, f in self._inactive.items() if n != name}
            else:
                new_active = tuple(f for f in self._set.filters if f.name != name)
                parked = {**self._inactive, name: stored.filter}
            return self._commit(
                new_active, parked, principal, "activate" if active else "deactivate", name
            )

    def _refresh(self) -> None:
        if self._stale:
            self.reload()

    def _commit(
        self,
        new_active: tuple[Filter, ...],
        parked: dict[str, Filter],
        principal: Principal,
        action: str,
        target: str,
    ) -> int:
        old_version = self._set.version
        new_set = FilterSet(old_version + 1, new_active)
        inactive_changed = set(parked) != set(self._inactive) or any(
            parked[n] is not self._inactive.get(n) for n in parked
        )
        parked_set = FilterSet(new_set.version, tuple(parked.values()))
        gains_inactive = bool(set(parked) - set(self._inactive)) or any(
            n in self._inactive and parked[n] is not self._inactive[n] for n in parked
        )
        writes = [(self._active_log, new_set)]
        if inactive_changed:
            inactive_write = (self._inactive_log, parked_set)
            writes = [inactive_write, *writes] if gains_inactive else [*writes, inactive_write]
        try:
            for target_log, snapshot in writes:
                target_log.publish(snapshot)
        except ApiError:
            raise
        except Exception as error:  # noqa: BLE001 - broker failures of any kind
            self._stale = True
            log.error("publishing filter-set version %d failed: %s", new_set.version, error)
            raise unavailable(
                "the filter change could not be published to Kafka; the service re-reads the "
                "topics before the next change",
                version=old_version,
            ) from None
        self._set = new_set
        self._inactive = parked
        self.changes += 1
        self._audit.write(principal, f"filter.{action}", target, old_version, new_set.version)
        return new_set.version
