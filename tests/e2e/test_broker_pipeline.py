"""The broker on the real stack: the same answer as the local reference, dead letters, and a
live filter-set swap without a restart."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace

import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from control_service.snapshots import publish_snapshot
from flink_deploy.settings import REPO_ROOT
from flink_deploy.stack.config import StackConfig
from pipelines import broker
from tests.e2e.test_ingest_pipeline import bad_messages, real_messages
from tests.e2e.test_smoke_pipeline import running_job_id, wait_for
from transforms.decode import decode_message
from transforms.filters.document import load_filter_file, load_filters
from transforms.filters.model import FilterSet
from transforms.kafka_clients import COMPACTED, Topic, ensure_topics
from transforms.local import match_locally
from transforms.schemas import LsstSchemas

pytestmark = pytest.mark.e2e

DEADLINE_S = 300


def read_all(bootstrap: str, topic: str, settle_s: float = 3.0) -> list:
    """Every message of ``topic`` from the start, reading until it stays quiet ``settle_s``."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"r-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    messages, quiet_since = [], time.monotonic()
    while time.monotonic() - quiet_since < settle_s:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            messages.append(msg)
            quiet_since = time.monotonic()
    consumer.close()
    return messages


def pairs_on(bootstrap: str, filter_set: FilterSet) -> tuple[set[tuple[str, int]], int, dict]:
    """(filter, alert_id) pairs on the filters' topics, the duplicate count, one value each."""
    pairs, total, sample = set(), 0, {}
    for flt in filter_set.filters:
        for msg in read_all(bootstrap, flt.output.topic, settle_s=1.0):
            name, _, alert_id = msg.key().decode().rpartition("/")
            pairs.add((name, int(alert_id)))
            total += 1
            sample[name] = msg.value()
    return pairs, total - len(pairs), sample


def fresh_topics_and_filters(bootstrap: str, prefix: str) -> tuple[str, dict[str, str], FilterSet]:
    """A run id; topics ``<prefix>.<run id>.{ztf,lsst,dead}`` (2 partitions) and ``.config``
    (compacted), created; the example filters as filter set v1 writing to
    ``<prefix>.<run id>.out.<filter>``, published on that config topic."""
    run_id = uuid.uuid4().hex[:8]
    topics = {n: f"{prefix}.{run_id}.{n}" for n in ("ztf", "lsst", "config", "dead")}
    ensure_topics(
        bootstrap,
        [
            *(Topic(t, 2) for n, t in topics.items() if n != "config"),
            Topic(topics["config"], 1, COMPACTED),
        ],
    )
    examples = [
        f
        for p in sorted((REPO_ROOT / "examples" / "filters").glob("*.yaml"))
        for f in load_filter_file(str(p))
    ]
    v1 = FilterSet(
        1,
        tuple(
            replace(f, output=replace(f.output, topic=f"{prefix}.{run_id}.out.{f.name}"))
            for f in examples
        ),
    )
    publish_snapshot(bootstrap, v1, topics["config"])
    return run_id, topics, v1


@pytest.fixture(scope="module")
def running_broker(stack: StackConfig):
    run_id, topics, v1 = fresh_topics_and_filters(stack.bootstrap_servers, "broker")
    filters = v1.filters
    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    job_name = f"alertflow-broker-{run_id}"
    broker.run(
        [
            f"--topics={topics['ztf']},{topics['lsst']}",
            f"--config-topic={topics['config']}",
            f"--deadletter-topic={topics['dead']}",
            f"--group-id=broker-{run_id}",
            f"--job-name={job_name}",
            "--parallelism=2",
        ]
    )
    jid = wait_for(
        lambda: running_job_id(stack.flink_rest_url, job_name), 180, f"{job_name} running"
    )
    yield {
        "topics": topics,
        "v1": v1,
        "jid": jid,
        "run_id": run_id,
        "bootstrap": stack.bootstrap_servers,
        "rest": stack.flink_rest_url,
    }
    requests.patch(f"{stack.flink_rest_url}/jobs/{jid}", params={"mode": "cancel"}, timeout=10)
    admin.delete_topics([*topics.values(), *(f.output.topic for f in filters)])


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 8 * 1024 * 1024})
    for value in values:
        producer.produce(topic, value=value)
    assert producer.flush(60) == 0


def test_same_answer_as_the_local_reference(running_broker: dict) -> None:
    b = running_broker
    good = real_messages()
    bad = bad_messages(good["ztf"][0], good["lsst"][0])
    for survey in ("ztf", "lsst"):
        produce(b["bootstrap"], b["topics"][survey], good[survey] + bad[survey])

    schemas = LsstSchemas()
    alerts = [a for s in ("ztf", "lsst") for v in good[s] for a in decode_message(v, schemas)]
    matches, errors, rejected = match_locally(b["v1"], alerts)
    expected = {(m.filter_name, m.alert.alert_id) for m in matches}
    assert not errors and not rejected
    assert len({name for name, _ in expected}) >= 5, "the examples should select real alerts"

    def all_arrived() -> bool:
        return pairs_on(b["bootstrap"], b["v1"])[0] >= expected

    wait_for(all_arrived, DEADLINE_S, "every expected (filter, alert_id) pair", interval_s=5)
    got, duplicates, sample = pairs_on(b["bootstrap"], b["v1"])
    print(f"{len(got)} pairs, {duplicates} duplicates")
    assert got == expected
    lite = json.loads(sample["solar-system-objects"])
    assert lite["filter_set_version"] == 1 and lite["owner"] and lite["processed_at_ms"] > 0

    dead = read_all(b["bootstrap"], b["topics"]["dead"])
    assert len(dead) == len(bad["ztf"]) + len(bad["lsst"])
    assert all(json.loads(m.value())["reason"] for m in dead)
    job = requests.get(f"{b['rest']}/jobs/{b['jid']}", timeout=5).json()
    assert job["state"] == "RUNNING"


def test_filter_set_swaps_live_without_restart(running_broker: dict) -> None:
    b = running_broker
    before = requests.get(f"{b['rest']}/jobs/{b['jid']}", timeout=5).json()
    topic = f"broker.{b['run_id']}.out.every-ztf-alert"
    new_filter = load_filters(
        "apiVersion: alertflow/v1\nkind: Filter\n"
        "metadata: {name: every-ztf-alert, owner: tests}\n"
        f"spec:\n  where: survey == 'ztf'\n  output: {{topic: {topic}, format: full}}\n"
    )
    v2 = FilterSet(2, (*b["v1"].filters, *new_filter))
    publish_snapshot(b["bootstrap"], v2, b["topics"]["config"])
    switched = time.monotonic()
    packets = real_messages()["ztf"][:20]
    produce(b["bootstrap"], b["topics"]["ztf"], packets)

    first = wait_for(
        lambda: read_all(b["bootstrap"], topic, settle_s=0.5),
        120,
        "the first match of the new filter",
        interval_s=0.2,
    )
    print(f"first match under v2 {time.monotonic() - switched:.1f} s after the swap")
    sent_ids = {a.alert_id for p in packets for a in decode_message(p, LsstSchemas())}
    wait_for(
        lambda: (
            {int(m.key().decode().rpartition("/")[2]) for m in read_all(b["bootstrap"], topic)}
            >= sent_ids
        ),
        DEADLINE_S,
        "every alert sent after the swap judged by v2",
    )
    from transforms.publish import read_full_message

    full = read_full_message(first[0].value())
    assert full["filter_set_version"] == 2 and full["original"] in packets
    after = requests.get(f"{b['rest']}/jobs/{b['jid']}", timeout=5).json()
    assert after["jid"] == before["jid"] and after["start-time"] == before["start-time"]
    assert after["state"] == "RUNNING"


def test_filter_applied_through_rest_reaches_the_running_job(
    running_broker: dict, tmp_path
) -> None:
    """The control service over real HTTP publishes the snapshot the running job switches to."""
    import threading

    from werkzeug.serving import make_server

    from control_service.app import create_app
    from control_service.auth import ApiKey
    from control_service.config import ControlConfig

    b = running_broker
    config = ControlConfig(
        bootstrap_servers=b["bootstrap"],
        config_topic=b["topics"]["config"],
        inactive_topic=b["topics"]["config"] + ".inactive",
        port=0,
        api_keys=(ApiKey("token-of-carol", "carol", "user"),),
        audit_log=tmp_path / "audit.jsonl",
    )
    server = make_server("127.0.0.1", 0, create_app(config))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        topic = f"broker.{b['run_id']}.out.carol-bright"
        document = (
            "apiVersion: alertflow/v1\nkind: Filter\n"
            "metadata: {name: carol-bright, owner: carol}\n"
            f"spec:\n  where: mag < 19\n  output: {{topic: {topic}, format: lite}}\n"
        )
        response = requests.post(
            f"http://127.0.0.1:{server.server_port}/api/v1/filters",
            data=document,
            headers={"Authorization": "Bearer token-of-carol", "Content-Type": "application/yaml"},
            timeout=30,
        )
        assert response.status_code in (200, 201), response.text
        applied = time.monotonic()
        produce(b["bootstrap"], b["topics"]["ztf"], real_messages()["ztf"][:50])
        wait_for(
            lambda: read_all(b["bootstrap"], topic, settle_s=0.5),
            120,
            "the first match of the filter applied over REST",
            interval_s=0.2,
        )
        print(f"first match of the REST-applied filter {time.monotonic() - applied:.1f} s later")
    finally:
        server.shutdown()
