"""The replay service (`alertflow replay --serve`) over real HTTP into the real Kafka.

The service runs as its own process on a port the OS picks. Through ControlClient: PUT the
config (real LSST and ZTF alerts, a fresh topic per survey, 200 alerts: the 30 of the files
cycled with fresh ids), POST start, poll the status until the run is done; then every message
is read back from Kafka and decoded, and the alert ids must be exactly those computed here from
the files with replay's fresh-id rule; /metrics must count the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from control_service.client import ControlClient
from flink_deploy.stack.config import StackConfig
from tests.datapaths import shared_data
from tests.e2e.test_replay import read_all
from tests.e2e.test_smoke_pipeline import wait_for
from tests.metrics_text import samples
from transforms.alert_model import Survey
from transforms.decode import decode_message
from transforms.kafka_clients import Topic, ensure_topics
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas

pytestmark = pytest.mark.e2e

COUNT = 200
TOKEN = "e2e-replay-admin-token"
DATA = shared_data()
FILES = [
    DATA / "lsst" / "alerts" / "lsstcam_20251231_v10_0.avro",  # 27 alerts
    *sorted((DATA / "ztf" / "alerts" / "v4.0x_2023-2025").glob("*.avro"))[:3],
]


@pytest.fixture
def replay_service(stack: StackConfig, tmp_path: Path) -> Iterator[str]:
    """`alertflow replay --serve --port 0`; yields its base URL, terminated afterwards."""
    env = {**os.environ, "ALERTFLOW_REPLAY_API_KEYS": f"{TOKEN}:ops:admin"}
    with (tmp_path / "replay-service.log").open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "control_service.cli",
                "replay",
                "--serve",
                "--port",
                "0",
                "--bootstrap",
                stack.bootstrap_servers,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the banner, or "" if it exited
            assert "http://" in line, (tmp_path / "replay-service.log").read_text()
            yield line.strip().rsplit(" ", 1)[-1]
        finally:
            proc.terminate()
            proc.communicate(timeout=30)


def expected_ids() -> list[tuple[Survey, int]]:
    """Replay's fresh-id rule, computed here: pass c over the files adds c * 2**40 to the ids."""
    schemas = LsstSchemas(DEFAULT_LSST_SCHEMA_DIR)
    alerts = [
        (a.survey, a.alert_id) for f in FILES for a in decode_message(f.read_bytes(), schemas)
    ]
    assert len(alerts) == 30
    return [(alerts[i % 30][0], alerts[i % 30][1] + (i // 30) * (1 << 40)) for i in range(COUNT)]


def test_replay_service_sends_every_alert(stack: StackConfig, replay_service: str) -> None:
    run_id = uuid.uuid4().hex[:8]
    topics = {Survey.LSST: f"replay-svc.{run_id}.lsst", Survey.ZTF: f"replay-svc.{run_id}.ztf"}
    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    ensure_topics(stack.bootstrap_servers, [Topic(t, 2) for t in topics.values()], admin=admin)
    client = ControlClient(replay_service, token=TOKEN)
    try:
        wait_for(client.ready, 30, "the replay service to see Kafka", interval_s=0.5)
        assert client.status()["state"] == "stopped"
        applied = client.put_config(
            {
                "files": [str(f) for f in FILES],
                "count": COUNT,
                "topics": {s.value: t for s, t in topics.items()},
                "bootstrap_servers": stack.bootstrap_servers,
            }
        )
        assert applied["config"]["count"] == COUNT
        assert client.action("start")["result"] == {"run": 1, "total": COUNT}

        def done() -> dict | None:
            status = client.status()
            progress = status["progress"]
            return status if progress is not None and progress["done"] else None

        status = wait_for(done, 120, f"{COUNT} alerts sent and flushed", interval_s=0.2)
        progress = status["progress"]
        assert status["state"] == "stopped"
        assert (progress["sent"], progress["delivered"], progress["failed"]) == (COUNT, COUNT, 0)
        assert progress["error"] is None and not progress["stopped_early"]

        schemas = LsstSchemas(DEFAULT_LSST_SCHEMA_DIR)
        expected = expected_ids()
        total_bytes = 0
        for survey, topic in topics.items():
            messages = read_all(stack.bootstrap_servers, topic, 2)
            total_bytes += sum(len(m.value()) for m in messages)
            got = [a.alert_id for m in messages for a in decode_message(m.value(), schemas)]
            assert len(got) == len(messages)  # one alert per message
            want = [i for s, i in expected if s is survey]
            assert Counter(got) == Counter(want), survey
            assert len(set(got)) == len(got)  # the fresh ids make every copy distinct
        assert total_bytes == progress["bytes"]

        metrics = samples(client.metrics())
        expected = {
            "alertflow_replay_sent_total": COUNT,
            "alertflow_replay_delivered_total": COUNT,
            "alertflow_replay_failed_total": 0,
            "alertflow_replay_bytes_total": total_bytes,
            "alertflow_replay_runs_total": 1,
            "alertflow_replay_running": 0,
        }
        assert {name: metrics[name] for name in expected} == expected
    finally:
        admin.delete_topics(list(topics.values()))
