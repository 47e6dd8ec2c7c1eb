"""How big everything on the path from Kafka to the Python workers is, sized together in one
place: the TaskManager profiles and the pipeline bounds that must fit in them.

Alerts are ~110 KB (LSST, with cutouts) and we size for up to 1 MiB (:data:`MAX_ALERT_BYTES`).
Where the bytes wait, and what bounds each place:

- **KafkaIO's consumers** (TaskManager heap). One ``KafkaConsumer`` per reader, one reader per
  partition (8 on the alert topics). A consumer holds at most its fetch buffer
  (``fetch.max.bytes``) plus the batch it hands to the reader: :data:`KAFKA_CONSUMER` allows
  ``max.partition.fetch.bytes`` = 4 MiB per partition (36 LSST alerts; Kafka's 1 MiB default
  is 9 and makes a fetch round trip every 9 alerts), so 8 readers hold at most
  8 x 2 x 8 MiB = 128 MiB of heap.
- **Bundles** (Fn API data plane, both ways). Flink's runner bounds a bundle in elements and
  time only (:data:`MAX_BUNDLE_SIZE`, :data:`MAX_BUNDLE_TIME_MS`; it has no byte bound), and
  the Fn API sends a bundle's elements in messages of :data:`FN_DATA_BUFFER_BYTES`
  (``data_buffer_size_limit``; a message ends with the element that crosses it). Two limits
  follow, and :data:`MAX_BUNDLE_SIZE` x :data:`MAX_ALERT_BYTES` is sized for both:

  - *Beam's runner takes a bundle's outputs from the SDK harness into a queue of 100 messages
    that it drains only once the bundle has finished* (``BeamFnDataInboundObserver``). KafkaIO's
    own Java step (``Convert to ExternalKafkaRecord``, in the EMBEDDED harness) outputs every
    alert whole, so a bundle whose alerts fill more than 100 messages deadlocks: the harness
    waits for room, the runner for the bundle's end, with the checkpoint lock held. That
    stopped a 40,000-alert drain at 33,241 with Beam's defaults (1,000 elements, 1 MB
    messages: ~105 messages of LSST alerts), and at 554 with 256 KiB messages. Here a bundle
    is at most 128 x (1 MiB + metadata) / 2 MiB + 1 = 66 messages of the largest alerts and 8
    of LSST ones (:func:`bundle_messages`).
  - *The runner sends a bundle to the Python workers through netty's direct memory* (Beam's
    vendored gRPC) and looks at gRPC's flow control only every 100 messages, so up to one
    bundle per slot waits there: 128 x 1 MiB + one message = 130 MiB per slot
    (:func:`fn_data_plane_mib`), the profile's task off-heap. With Flink's defaults (no task
    off-heap, direct memory shared with 10% network buffers) the limit was 302 MiB on a 3 GiB
    TaskManager, and a Python worker that fell behind took the TaskManager down with
    ``OutOfMemoryError: Cannot reserve ... direct buffer memory``. When a bundle cannot be sent
    the source thread waits, and reading from Kafka waits with it: that is the backpressure.

  A Python worker holds at most one bundle per stage: 14 MB of LSST alerts, 128 MiB of 1 MiB
  ones.

Everything else of the TaskManager is fixed: no managed memory (Beam's streaming runner keeps
its state on the heap), 64 MiB of network buffers (the broker is one chained vertex: no
network exchange), 1 GiB metaspace (each Beam job loads the job-server jar's classes in a
classloader of its own, and they are not all freed when the job ends: with the 256 MiB default
a TaskManager died of Metaspace exhaustion after a few dozen job starts and restarts), and the
rest is task heap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ALERT_BYTES = 1 << 20

KAFKA_CONSUMER = {
    "max.partition.fetch.bytes": str(4 << 20),
    "fetch.max.bytes": str(8 << 20),
    "receive.buffer.bytes": str(1 << 20),
}

FN_DATA_BUFFER_BYTES = 2 << 20
# Beam's BeamFnDataInboundObserver queues this many messages of a bundle's outputs.
FN_INBOUND_QUEUE_MESSAGES = 100
# Python SDK workers per TaskManager (--sdk_worker_parallelism): one per slot of a small
# TaskManager, each on a core of its own.
SDK_WORKERS = 2

MAX_BUNDLE_SIZE = 128
MAX_BUNDLE_TIME_MS = 500
# KafkaIO's Row of an alert: the value plus topic, partition, offset, key and timestamp.
RECORD_OVERHEAD_BYTES = 1 << 10

METASPACE_MIB = 1024
NETWORK_MIB = 64
# The smallest TaskManager the fixed parts leave room in (metaspace, Flink's framework memory,
# the data plane's off-heap, JVM overhead) with a task heap of at least 512 MiB.
MIN_PROCESS_MIB = 2560
MEMORY_RE = re.compile(r"([1-9][0-9]*)\s*(m|mb|g|gb)", re.IGNORECASE)


def bundle_messages(alert_bytes: int = MAX_ALERT_BYTES) -> int:
    """Fn API data messages that one bundle of alerts of ``alert_bytes`` fills (at most)."""
    element = alert_bytes + RECORD_OVERHEAD_BYTES
    return -(-MAX_BUNDLE_SIZE * element // FN_DATA_BUFFER_BYTES) + 1


def fn_data_plane_mib(slots: int, alert_bytes: int = MAX_ALERT_BYTES) -> int:
    """Direct memory the bundles of ``slots`` slots may hold on their way to the SDK workers."""
    per_slot = MAX_BUNDLE_SIZE * (alert_bytes + RECORD_OVERHEAD_BYTES) + FN_DATA_BUFFER_BYTES
    return -(-slots * per_slot // (1 << 20))


@dataclass(frozen=True)
class TaskManagerProfile:
    """The shape of a TaskManager: its task slots and its whole process memory (``3072m``)."""

    name: str
    slots: int
    process_memory: str
    # The CPU budget of its node (flink_deploy/nodes.py, a VM's slice), in cores; None: the
    # stack's default.
    cpu_cores: float | None = None

    @property
    def memory_mib(self) -> int:
        match = MEMORY_RE.fullmatch(self.process_memory.strip())
        if match is None:
            raise ValueError(f"profile {self.name}: bad process_memory {self.process_memory!r}")
        amount, unit = int(match.group(1)), match.group(2).lower()
        return amount * 1024 if unit.startswith("g") else amount

    def memory_settings(self) -> dict[str, str]:
        """Flink's ``taskmanager.*`` options for this profile (see the module doc)."""
        return {
            "taskmanager.numberOfTaskSlots": str(self.slots),
            "taskmanager.memory.process.size": f"{self.memory_mib}m",
            "taskmanager.memory.jvm-metaspace.size": f"{METASPACE_MIB}m",
            "taskmanager.memory.managed.size": "0m",
            "taskmanager.memory.network.min": f"{NETWORK_MIB}m",
            "taskmanager.memory.network.max": f"{NETWORK_MIB}m",
            "taskmanager.memory.task.off-heap.size": f"{fn_data_plane_mib(self.slots)}m",
            # A task's OutOfMemoryError (direct memory too) ends the TaskManager. Otherwise the
            # job restarts on it with the job's cached SDK environment, whose data stream the
            # error closed, and every restart fails ("Failed to finish remote bundle").
            "taskmanager.jvm-exit-on-oom": "true",
        }

    def dynamic_properties(self) -> list[str]:
        return [
            arg for key, value in self.memory_settings().items() for arg in ("-D", f"{key}={value}")
        ]


DEFAULT_PROFILE = TaskManagerProfile("small", 2, "3072m")
