"""Filter-set snapshots on the config topic, for callers without a control service: publish one,
or find the next version. Both go through the control service's own ``KafkaSnapshotLog``, so
there is one implementation of the protocol (DESIGN.md section 2: compacted one-partition
topic, key ``b"filters"``, whole snapshots, increasing versions).
"""

from __future__ import annotations

from control_service.store import KafkaSnapshotLog
from transforms.filters.document import FilterSet
from transforms.topics import CONFIG_TOPIC


def publish_snapshot(bootstrap: str, filter_set: FilterSet, topic: str = CONFIG_TOPIC) -> None:
    """Append ``filter_set`` as a whole snapshot; raises if Kafka does not acknowledge it."""
    KafkaSnapshotLog(bootstrap, topic).publish(filter_set)


def next_version(bootstrap: str, topic: str = CONFIG_TOPIC) -> int:
    """One more than the highest version on the topic, valid or not; 1 on an empty topic."""
    newest = KafkaSnapshotLog(bootstrap, topic).latest()
    return 1 if newest is None or newest.version is None else newest.version + 1
