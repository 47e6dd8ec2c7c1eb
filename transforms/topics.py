"""The Kafka topic names alertflow reads and writes, in one place.

Every layer names topics through this module: the pipelines (their defaults), the control
service (the config topics), the autoscaler (the topics whose lag it reads), the local stack
(the topics it creates) and the tests. It imports nothing, so any layer may use it.
"""

from __future__ import annotations

#: The survey alert streams of a local run (upstream brokers name their own).
ZTF_TOPIC = "alerts.ztf"
LSST_TOPIC = "alerts.lsst"
ALERT_TOPICS = (ZTF_TOPIC, LSST_TOPIC)

#: Complete filter-set snapshots for the pipeline; compacted, one partition.
CONFIG_TOPIC = "alertflow.config"
#: Deactivated filters (whole snapshots too), which the pipeline never reads.
INACTIVE_CONFIG_TOPIC = CONFIG_TOPIC + ".inactive"

#: Packets that failed a stage, with the original bytes, the stage and the reason.
DEADLETTER_TOPIC = "alertflow.deadletter"
#: Per-filter run-time error counts.
FILTER_ERRORS_TOPIC = "alertflow.filter-errors"
#: Decoded alerts written by the ingest pipeline.
DECODED_TOPIC = "alertflow.decoded"

#: A filter's matches go to this prefix plus its name, unless its spec names a topic.
FILTER_TOPIC_PREFIX = "alertflow.filter."


def filter_topic(name: str) -> str:
    """The default output topic of the filter ``name``."""
    return f"{FILTER_TOPIC_PREFIX}{name}"
