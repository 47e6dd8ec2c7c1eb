"""The ingest pipeline on the real stack: every real alert decodes, every bad message is a
dead letter with its stage, reason and source; nothing is lost."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from control_service.replay_messages import load_messages
from flink_deploy.stack.config import StackConfig
from pipelines import ingest
from tests.datapaths import shared_data
from tests.e2e.test_smoke_pipeline import running_job_id, wait_for
from transforms.decode import decode_message
from transforms.kafka_clients import Topic, ensure_topics
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas

pytestmark = pytest.mark.e2e

PARTITIONS = 2
DEADLINE_S = 300


def real_messages() -> dict[str, list[bytes]]:
    """Every real alert in shared/data in its survey's wire form, by survey."""
    data = shared_data()
    ztf = [p.read_bytes() for p in sorted((data / "ztf" / "alerts").glob("*/*.avro"))]
    schemas = LsstSchemas(DEFAULT_LSST_SCHEMA_DIR)
    lsst_files = sorted((data / "lsst" / "alerts").glob("*.avro"))
    lsst = [m.value for m in load_messages(lsst_files, schemas)]
    wire = sorted((data / "lsst" / "alerts" / "wire_format").glob("*.bin"))
    lsst += [p.read_bytes() for p in wire]
    return {"ztf": ztf, "lsst": lsst}


def bad_messages(ztf_packet: bytes, lsst_message: bytes) -> dict[str, list[bytes]]:
    """Malformed messages of each kind the decoder must route, by the topic they go to."""
    return {
        "ztf": [ztf_packet[: len(ztf_packet) // 2], b"not an alert at all", b""],
        "lsst": [
            b"\x07" + lsst_message[1:],
            b"\x00" + (9999).to_bytes(4, "big") + b"\x02\x04",
            lsst_message[:40],
        ],
    }


def read_topic(bootstrap: str, topic: str, expected: int, deadline_s: float) -> dict[bytes, bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"r-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    got: dict[bytes, bytes] = {}
    end = time.monotonic() + deadline_s
    try:
        while len(got) < expected and time.monotonic() < end:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                got[msg.key()] = msg.value()
    finally:
        consumer.close()
    return got


def test_real_alerts_decode_and_bad_ones_become_dead_letters(
    stack: StackConfig,
) -> None:
    run_id = uuid.uuid4().hex[:8]
    topics = {name: f"ingest.{run_id}.{name}" for name in ("ztf", "lsst", "decoded", "dead")}
    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    ensure_topics(
        stack.bootstrap_servers, [Topic(t, PARTITIONS) for t in topics.values()], admin=admin
    )
    job_name = f"alertflow-ingest-{run_id}"
    ingest.run(
        [
            f"--topics={topics['ztf']},{topics['lsst']}",
            f"--decoded={topics['decoded']}",
            f"--deadletter={topics['dead']}",
            f"--group-id=ingest-{run_id}",
            f"--job-name={job_name}",
            f"--parallelism={PARTITIONS}",
        ]
    )
    jid = wait_for(
        lambda: running_job_id(stack.flink_rest_url, job_name), 180, f"{job_name} running"
    )
    try:
        good = real_messages()
        bad = bad_messages(good["ztf"][0], good["lsst"][0])
        producer = Producer(
            {"bootstrap.servers": stack.bootstrap_servers, "message.max.bytes": 8 * 1024 * 1024}
        )
        bad_sources: dict[str, bytes] = {}

        def remember(value: bytes):
            def on_delivery(err, msg) -> None:
                assert err is None, err
                bad_sources[f"{msg.topic()}/{msg.partition()}/{msg.offset()}"] = value

            return on_delivery

        for survey in ("ztf", "lsst"):
            for value in good[survey]:
                producer.produce(topics[survey], value=value)
            for value in bad[survey]:
                producer.produce(topics[survey], value=value, on_delivery=remember(value))
        assert producer.flush(60) == 0

        schemas = LsstSchemas(DEFAULT_LSST_SCHEMA_DIR)
        expected = {
            f"{a.survey.value}/{a.alert_id}".encode(): a
            for survey in ("ztf", "lsst")
            for value in good[survey]
            for a in decode_message(value, schemas)
        }
        decoded = read_topic(stack.bootstrap_servers, topics["decoded"], len(expected), DEADLINE_S)
        dead = read_topic(stack.bootstrap_servers, topics["dead"], len(bad_sources), 60)

        assert set(decoded) == set(expected), (
            f"{len(set(expected) - set(decoded))} alerts missing, "
            f"{len(set(decoded) - set(expected))} unexpected"
        )
        for key, value in decoded.items():
            alert = json.loads(value)
            assert alert["object_id"] == expected[key].object_id
            assert alert["ra"] == pytest.approx(expected[key].ra)
        assert {k.decode() for k in dead} == set(bad_sources)
        for key, value in dead.items():
            letter = json.loads(value)
            assert base64.b64decode(letter["original_b64"]) == bad_sources[key.decode()]
            assert letter["stage"] and len(letter["reason"]) > 10
            assert f"{letter['topic']}/{letter['partition']}/{letter['offset']}" == key.decode()

        vertices = requests.get(f"{stack.flink_rest_url}/jobs/{jid}", timeout=5).json()["vertices"]
        names = " ".join(v["name"] for v in vertices)
        for step in ("ReadAlerts", "DecodeAlerts", "PublishDecoded", "PublishDeadLetters"):
            assert step in names
    finally:
        requests.patch(f"{stack.flink_rest_url}/jobs/{jid}", params={"mode": "cancel"}, timeout=10)
        admin.delete_topics(list(topics.values()))
