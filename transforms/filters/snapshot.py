"""Filter-set snapshots as the config topic carries them, decoded once, at the edge.

The wire format (keep it: running jobs and stored topics read it): the JSON of
``{"version": n, "filters": [document, ...]}``, compact, from :func:`encode_snapshot`.
:func:`decode_snapshot` turns a message value into a validated :class:`FilterSet` or a
:class:`RejectedSnapshot` that says why not; it never raises. Everything past the edge (the
workers' config-topic feeds, the side inputs, the control service's store) holds only these two
types.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from transforms.filters.document import filter_set_from_snapshot
from transforms.filters.model import FilterSet, FilterValidationError


@dataclass(frozen=True, slots=True)
class RejectedSnapshot:
    """A config-topic message that is no valid filter set; never selected, reported once.

    ``version`` is None when the message has no integer version (not JSON, not an object).
    """

    version: int | None
    reason: str


#: A config-topic message after the edge.
Snapshot = FilterSet | RejectedSnapshot


class SnapshotFeed(Protocol):
    """Where a worker finds the live snapshots (``transforms.filters.live.ConfigTopicFeed``).

    Implementations are picklable: DoFns carry them to the workers."""

    def snapshots(self) -> Sequence[Snapshot]:
        """The newest decoded snapshots, in any order."""
        ...


def encode_snapshot(filter_set: FilterSet) -> bytes:
    """The config-topic message value of ``filter_set``."""
    return json.dumps(filter_set.to_snapshot(), separators=(",", ":"), allow_nan=False).encode()


def decode_snapshot(value: bytes) -> Snapshot:
    """A config-topic message value, validated; never raises."""
    try:
        data = json.loads(value)
    except ValueError as err:
        return RejectedSnapshot(None, f"not JSON: {err}")
    return snapshot_from_json(data)


def snapshot_from_json(data: object) -> Snapshot:
    """A snapshot already decoded from JSON, validated; never raises."""
    if not isinstance(data, dict):
        return RejectedSnapshot(None, "not an object")
    version = data.get("version")
    known = version if isinstance(version, int) and not isinstance(version, bool) else None
    try:
        return filter_set_from_snapshot(data)
    except (FilterValidationError, ValueError) as error:
        return RejectedSnapshot(known, str(error))


def _order(snapshot: Snapshot) -> tuple[bool, int]:
    """Newest first: by version, the snapshots without one last."""
    return snapshot.version is not None, snapshot.version or 0


def newest_version(snapshots: Iterable[Snapshot]) -> int | None:
    """The highest version among ``snapshots``, valid or not; None if none has one."""
    return max((s.version for s in snapshots if s.version is not None), default=None)


def select_snapshot(
    snapshots: Iterable[Snapshot],
) -> tuple[FilterSet | None, list[RejectedSnapshot]]:
    """The highest-version valid set, and each rejected snapshot ordered before it (newest
    first); (None, all rejected ones) if none is valid."""
    rejected: list[RejectedSnapshot] = []
    for snapshot in sorted(snapshots, key=_order, reverse=True):
        if isinstance(snapshot, FilterSet):
            return snapshot, rejected
        rejected.append(snapshot)
    return None, rejected
