"""`alertflow stack status` from the shell, on the real stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flink_deploy.flink_rest import FlinkRest
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import StackConfig
from transforms.topics import ALERT_TOPICS, CONFIG_TOPIC, DEADLETTER_TOPIC

pytestmark = pytest.mark.e2e


def test_status_reports_every_service_healthy(stack: StackConfig) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "control_service.cli", "stack", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    names = [s["name"] for s in report["services"]]
    expected = [
        "kafka",
        "flink-jobmanager",
        *(f"flink-taskmanager-{i}" for i in range(1, stack.taskmanagers + 1)),
        "beam-workerpool",
        "beam-expansion-service",
        "beam-job-server",
    ]
    # A developer's `make run` adds its own services after those of `up`.
    assert names[: len(expected)] == expected
    assert set(names[len(expected) :]) <= {"alertflow-control", "alertflow-autoscaler"}
    for service in report["services"]:
        assert service["running"] and service["healthy"], service
        assert supervisor.is_running(
            next(p for p in supervisor.RunState(stack.run_dir).load() if p.pid == service["pid"])
        )
    # Flink agrees: as many TaskManagers registered as we started, each with its slots.
    overview = FlinkRest(stack.flink_rest_url).overview()
    assert overview["taskmanagers"] == stack.taskmanagers
    assert overview["slots-total"] == stack.taskmanagers * stack.slots_per_taskmanager


def test_topics_exist_with_their_settings(stack: StackConfig) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    topics = admin.list_topics(timeout=10).topics
    for alert_topic in ALERT_TOPICS:
        assert len(topics[alert_topic].partitions) == stack.alert_partitions
    assert len(topics[CONFIG_TOPIC].partitions) == 1
    assert DEADLETTER_TOPIC in topics
    resource = ConfigResource(ConfigResource.Type.TOPIC, CONFIG_TOPIC)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert config["cleanup.policy"].value == "compact"
