"""The filter store: the filter set, kept as whole snapshots on the compacted config topic.

The protocol the running pipeline reads (keep it exactly; control_service/snapshots.py is its
one implementation): topic ``alertflow.config``, one partition, compacted; each message is a
whole snapshot, key ``b"filters"``, value the JSON of ``FilterSet.to_snapshot()``
(``{"version": n, "filters": [document, ...]}``, encoded and decoded by
``transforms.filters.snapshot``, the same code the pipeline's workers use) with strictly
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

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from control_service.audit import AuditLog
from control_service.auth import Principal
from control_service.errors import ApiError, conflict, forbidden, not_found, unavailable
from control_service.snapshots import SnapshotLog
from transforms.filters.model import Filter, FilterSet
from transforms.filters.snapshot import RejectedSnapshot, Snapshot

log = logging.getLogger(__name__)
#: The background loading waits this long after its first failure, twice as long after each
#: further one, up to RETRY_MAX_S: Kafka back means ready within about RETRY_MAX_S.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


def _valid(snapshot: Snapshot | None, where: str) -> FilterSet | None:
    """``snapshot`` as a set; raises ValueError (with the reason) if it was rejected."""
    if isinstance(snapshot, RejectedSnapshot):
        raise ValueError(
            f"{where}: snapshot version {snapshot.version} is not valid: {snapshot.reason}"
        )
    return snapshot


def _why(error: Exception) -> str:
    """An error reading the topics as a reason: Kafka's own words when it does not answer."""
    return str(error) if isinstance(error, ConnectionError) else f"{type(error).__name__}: {error}"


@dataclass(frozen=True, slots=True)
class StoredFilter:
    """A filter of the store, and whether it is in the active set (else it is deactivated)."""

    filter: Filter
    active: bool


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What one apply did: the filter-set version it published, and the names it created and
    the names it replaced."""

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
