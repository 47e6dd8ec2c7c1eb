"""The control service on the real Kafka: filters through REST become snapshots on the config topic.

Apply, update, deactivate and delete through the HTTP API of a real server on loopback; read
``alertflow.config`` back with a plain consumer and check every snapshot; then start a second
service from the topics alone and check that the filters, their states and the version are
recovered.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from werkzeug.serving import make_server

from control_service.app import create_app
from control_service.client import ControlClient, ControlError
from control_service.config import load_config
from flink_deploy.stack.config import StackConfig

pytestmark = pytest.mark.e2e

KEYS = [
    {"token": "alice-secret-1", "user": "alice", "role": "user"},
    {"token": "ops-secret-333", "user": "ops", "role": "admin"},
]


def doc(name: str, where: str = "mag < 18.5", owner: str = "alice") -> str:
    return (
        f"apiVersion: alertflow/v1\nkind: Filter\nmetadata: {{name: {name}, owner: {owner}}}\n"
        f"spec:\n  where: {where}\n"
    )


def read_snapshots(bootstrap: str, topic: str) -> list[dict]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out, position, deadline = [], 0, time.monotonic() + 20
        while position < high and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            position = message.offset() + 1
            assert message.key() == b"filters"
            out.append(json.loads(message.value()))
        return out
    finally:
        consumer.close()


class Server:
    def __init__(self, config) -> None:
        self.app = create_app(config)
        self.http = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.http.server_port}"

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(10)


@pytest.fixture
def topics(stack: StackConfig) -> Iterator[tuple[str, str]]:
    # A fresh topic pair per run: the stack's own alertflow.config may hold a developer's filters.
    suffix = uuid.uuid4().hex[:8]
    yield f"alertflow.config.test-{suffix}", f"alertflow.config.test-{suffix}.inactive"


def test_filters_round_trip_through_kafka_and_survive_a_restart(
    stack: StackConfig, topics: tuple[str, str], tmp_path: Path
) -> None:
    config = load_config(
        env={},
        bootstrap_servers=stack.bootstrap_servers,
        config_topic=topics[0],
        inactive_topic=topics[1],
        api_keys=KEYS,
        audit_log=tmp_path / "audit.jsonl",
        flink_rest_url=stack.flink_rest_url,
    )
    first = Server(config)
    try:
        alice = ControlClient(first.url, "alice-secret-1")
        assert alice.ready()
        assert (
            alice.apply_filters(doc("bright") + "---\n" + doc("faint", "mag > 20"))["version"] == 1
        )
        assert alice.put_filter("bright", doc("bright", "mag < 17"))["version"] == 2
        assert alice.set_active("faint", False)["version"] == 3
        assert alice.apply_filters(doc("gone"))["version"] == 4
        assert alice.delete_filter("gone")["version"] == 5
        with pytest.raises(ControlError) as error:
            alice.apply_filters(doc("bad", "reliabilty > 1"))
        assert error.value.status == 422 and error.value.details["issues"][0]["line"] == 5
    finally:
        first.stop()

    snapshots = read_snapshots(stack.bootstrap_servers, topics[0])
    assert [s["version"] for s in snapshots] == [1, 2, 3, 4, 5]
    names = [[(f["metadata"]["name"], f["spec"]["where"]) for f in s["filters"]] for s in snapshots]
    assert names == [
        [("bright", "mag < 18.5"), ("faint", "mag > 20")],
        [("bright", "mag < 17"), ("faint", "mag > 20")],
        [("bright", "mag < 17")],
        [("bright", "mag < 17"), ("gone", "mag < 18.5")],
        [("bright", "mag < 17")],
    ]
    inactive = read_snapshots(stack.bootstrap_servers, topics[1])
    assert [(s["version"], [f["metadata"]["name"] for f in s["filters"]]) for s in inactive] == [
        (3, ["faint"])
    ]

    second = Server(config)  # a restart: everything comes back from the topics
    try:
        ops = ControlClient(second.url, "ops-secret-333")
        listing = ops.list_filters()
        assert listing["version"] == 5
        assert [
            (f["name"], f["active"], f["document"]["spec"]["where"]) for f in listing["filters"]
        ] == [
            ("bright", True, "mag < 17"),
            ("faint", False, "mag > 20"),
        ]
        assert ops.set_active("faint", True)["version"] == 6
    finally:
        second.stop()
    last = read_snapshots(stack.bootstrap_servers, topics[0])[-1]
    assert last["version"] == 6 and [f["metadata"]["name"] for f in last["filters"]] == [
        "bright",
        "faint",
    ]
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["user"], a["action"], a["new_version"]) for a in audit] == [
        ("alice", "filter.create", 1),
        ("alice", "filter.update", 2),
        ("alice", "filter.deactivate", 3),
        ("alice", "filter.create", 4),
        ("alice", "filter.delete", 5),
        ("ops", "filter.activate", 6),
    ]
