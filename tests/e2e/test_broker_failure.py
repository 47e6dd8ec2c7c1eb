"""Nothing lost on failure: the TaskManager is killed in the middle of a replay; the job
recovers from its checkpoint on a new TaskManager and every expected match arrives."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import pytest
import requests
from confluent_kafka.admin import AdminClient

from control_service.snapshots import publish_snapshot
from flink_deploy.settings import REPO_ROOT
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import StackConfig
from tests.backlog import run_topics, start_broker
from tests.e2e.test_broker_pipeline import DEADLINE_S, pairs_on, produce
from tests.e2e.test_ingest_pipeline import real_messages
from tests.e2e.test_smoke_pipeline import running_job_id, wait_for
from transforms.decode import decode_message
from transforms.filters.document import load_filter_file
from transforms.filters.model import FilterSet
from transforms.local import match_locally
from transforms.schemas import LsstSchemas

pytestmark = pytest.mark.e2e


def test_killed_taskmanager_loses_nothing(stack: StackConfig) -> None:
    topics = run_topics(stack.bootstrap_servers, "failure", "ztf", 2)
    run_id = topics["ztf"].split(".")[1]
    filters = tuple(
        replace(f, output=replace(f.output, topic=f"failure.{run_id}.out.{f.name}"))
        for p in sorted((REPO_ROOT / "examples" / "filters").glob("*.yaml"))
        for f in load_filter_file(str(p))
    )
    filter_set = FilterSet(1, filters)
    publish_snapshot(stack.bootstrap_servers, filter_set, topics["config"])
    job_name, jid = start_broker(stack, topics, "ztf")
    rest = stack.flink_rest_url
    try:
        packets = real_messages()["ztf"]
        half = len(packets) // 2
        produce(stack.bootstrap_servers, topics["ztf"], packets[:half])
        # Let a checkpoint complete with part of the stream done, then kill mid-stream.
        wait_for(
            lambda: (
                requests.get(f"{rest}/jobs/{jid}/checkpoints", timeout=5).json()["counts"][
                    "completed"
                ]
                >= 1
            ),
            120,
            "a completed checkpoint",
        )
        taskmanager = next(
            p for p in supervisor.RunState(stack.run_dir).load() if p.name == "flink-taskmanager-1"
        )
        produce(stack.bootstrap_servers, topics["ztf"], packets[half:])
        os.kill(taskmanager.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        supervisor.start_taskmanager(stack, 1)

        def restored() -> bool:
            counts = requests.get(f"{rest}/jobs/{jid}/checkpoints", timeout=5).json()["counts"]
            return counts["restored"] >= 1 and running_job_id(rest, job_name) is not None

        wait_for(restored, 240, "the job restored from its checkpoint and running again")
        print(f"job restored and running {time.monotonic() - killed_at:.0f} s after the kill")

        alerts = [a for p in packets for a in decode_message(p, LsstSchemas())]
        expected = {(m.filter_name, m.alert.alert_id) for m in match_locally(filter_set, alerts)[0]}
        wait_for(
            lambda: pairs_on(stack.bootstrap_servers, filter_set)[0] >= expected,
            DEADLINE_S,
            "every expected pair after recovery",
            interval_s=5,
        )
        got, duplicates, _ = pairs_on(stack.bootstrap_servers, filter_set)
        print(f"after the kill: {len(got)} pairs expected and present, {duplicates} duplicates")
        assert got == expected
    finally:
        requests.patch(f"{rest}/jobs/{jid}", params={"mode": "cancel"}, timeout=10)
        admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
        admin.delete_topics([*topics.values(), *(f.output.topic for f in filters)])
