"""`alertflow replay` into the real Kafka: every alert arrives, in its survey's wire form."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from flink_deploy.stack.config import StackConfig
from tests.datapaths import shared_data
from transforms.alert_model import Survey
from transforms.decode import decode_message
from transforms.kafka_clients import ensure_topic
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas

pytestmark = pytest.mark.e2e

COUNT = 2000


def read_all(bootstrap: str, topic: str, partitions: int) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"r-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in range(partitions)
    }
    messages, seen = [], {p: 0 for p in range(partitions)}
    while any(seen[p] < ends[p] for p in seen):
        msg = consumer.poll(5.0)
        assert msg is not None, f"stalled reading {topic}: {seen} of {ends}"
        assert msg.error() is None, msg.error()
        messages.append(msg)
        seen[msg.partition()] = msg.offset() + 1
    consumer.close()
    return messages


def fresh_topic(stack: StackConfig, partitions: int) -> tuple[str, AdminClient]:
    """A new topic of ``partitions`` partitions, and the admin client to delete it with."""
    topic = f"replay.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    ensure_topic(stack.bootstrap_servers, topic, partitions, admin=admin)
    return topic, admin


def replay(stack: StackConfig, topic: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``alertflow replay --bootstrap ... --topic TOPIC --no-progress ARGS`` in a process of its
    own, as a user runs it; its output captured."""
    command = ["replay", "--bootstrap", stack.bootstrap_servers, "--topic", topic, "--no-progress"]
    return subprocess.run(
        [sys.executable, "-m", "control_service.cli", *command, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_lsst_replay_cycles_with_fresh_ids(stack: StackConfig) -> None:
    topic, admin = fresh_topic(stack, 4)
    files = sorted(str(p) for p in (shared_data() / "lsst" / "alerts").glob("*.avro"))
    result = replay(stack, topic, "--count", str(COUNT), *files)
    assert result.returncode == 0, result.stderr
    print(result.stdout)  # the achieved rate, for the log
    assert re.search(rf"\b{COUNT}\b", result.stdout)

    schemas = LsstSchemas(DEFAULT_LSST_SCHEMA_DIR)
    messages = read_all(stack.bootstrap_servers, topic, 4)
    assert len(messages) == COUNT
    alerts = [a for m in messages for a in decode_message(m.value(), schemas)]
    assert len(alerts) == COUNT
    assert all(a.survey is Survey.LSST for a in alerts)
    assert all(m.value()[0] == 0 for m in messages)  # Confluent wire format
    assert len({a.alert_id for a in alerts}) == COUNT
    assert all(m.timestamp()[1] > 0 for m in messages)
    admin.delete_topics([topic])


def test_ztf_replay_sends_each_packet_as_it_is(stack: StackConfig) -> None:
    topic, admin = fresh_topic(stack, 1)
    files = sorted((shared_data() / "ztf" / "alerts").glob("*/*.avro"))[:50]
    result = replay(stack, topic, *map(str, files))
    assert result.returncode == 0, result.stderr
    messages = read_all(stack.bootstrap_servers, topic, 1)
    assert sorted(m.value() for m in messages) == sorted(p.read_bytes() for p in files)
    admin.delete_topics([topic])
