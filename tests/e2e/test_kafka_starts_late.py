"""Kafka starts after the services: each starts without it, says why at ``/ready`` (503), and
becomes ready once Kafka answers, with no restart (DESIGN.md section 4).

``alertflow serve``, ``alertflow replay --serve`` and ``alertflow autoscale`` run as processes,
pointed at a Kafka port where nothing listens yet. The control service refuses a filter apply
with 503; then a real KRaft broker starts on that port, and the control service reads its
(still empty) config topics by itself, turns ready and applies the filter, which lands on the
config topic; the replay service turns ready; the autoscaler's Kafka check turns true (its
Flink, never started here, stays down, so it stays not ready, saying why).

This module's Kafka is its own (the session ``stack`` is not used): started with
flink_deploy.stack in a temporary run folder, on free ports, and stopped in a finally, as are
the services.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from control_service.client import ControlClient, ControlError
from flink_deploy.settings import REPO_ROOT
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import HOST, StackConfig
from flink_deploy.stack.kafka import kafka_service
from tests.e2e.test_control_kafka import read_snapshots
from tests.e2e.test_smoke_pipeline import wait_for
from transforms.topics import CONFIG_TOPIC

pytestmark = pytest.mark.e2e

ALICE = "alice-secret-1"
OPS = "ops-secret-333"
KEYS = f"{ALICE}:alice:user,{OPS}:ops:admin"
FILTER = (
    "apiVersion: alertflow/v1\nkind: Filter\n"
    "metadata: {name: bright, owner: alice}\nspec:\n  where: mag < 18.5\n"
)
# No step within the test: the loop's first observation waits a whole interval.
POLICY = """\
interval_s: 3600
min_taskmanagers: 1
max_taskmanagers: 1
profiles:
  small: {slots: 2, process_memory: 3072m}
scale_up: {lag_above: 5000, profile: small}
scale_down: {lag_below: 500}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Service:
    """An ``alertflow`` subcommand as a process; ``url`` from the banner it prints once it
    listens (port 0: the OS picks)."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "control_service.cli", *argv],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.process.stdout is not None
        self.stdout = self.process.stdout
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self.stdout.readline()), daemon=True)
        reader.start()
        reader.join(90)
        banner = lines[0] if lines else ""
        assert " on http://" in banner, f"{argv[0]} did not start:\n{log.read_text()[-3000:]}"
        self.url = banner.split(" on ", 1)[1].split()[0]

    def ready(self) -> requests.Response:
        return requests.get(f"{self.url}/ready", timeout=30)

    def stop(self) -> int | None:
        """SIGTERM, as an operator stops it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.stdout.close()
        return self.process.returncode


@pytest.fixture
def kafka_cfg(tmp_path: Path, closed_port: int) -> Iterator[StackConfig]:
    """The stack's settings for a Kafka of this test's own, not started yet; Flink's REST port
    is one where nothing listens. The Kafka, if started, is stopped afterwards."""
    cfg = StackConfig.from_env().model_copy(
        update={
            "run_dir": (tmp_path / "run").resolve(),
            "kafka_port": free_port(),
            "kafka_controller_port": free_port(),
            "flink_rest_port": closed_port,
        }
    )
    try:
        yield cfg
    finally:
        left = supervisor.down(cfg, log=lambda _line: None)
        assert not left, f"left running: {left}"


def start_kafka(cfg: StackConfig) -> None:
    """The stack's KRaft broker alone, recorded in the run folder's state.json (so that
    ``alertflow stack down`` with the same settings stops it too)."""
    service = kafka_service(cfg)
    proc = supervisor.spawn(service)
    supervisor.RunState(cfg.run_dir).save([proc])
    supervisor.wait_healthy(service, proc, cfg.start_timeout_s)


def test_services_start_before_kafka_and_become_ready_when_it_answers(
    kafka_cfg: StackConfig, tmp_path: Path
) -> None:
    cfg = kafka_cfg
    bootstrap = cfg.bootstrap_servers
    env = {
        **os.environ,
        **cfg.environment(),
        "ALERTFLOW_CONTROL_API_KEYS": KEYS,
        "ALERTFLOW_REPLAY_API_KEYS": KEYS,
        "ALERTFLOW_CONTROL_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    }
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    services: dict[str, Service] = {}
    try:
        services["control"] = Service(["serve", "--port", "0"], env, tmp_path / "control.log")
        services["replay"] = Service(
            ["replay", "--serve", "--port", "0", "--bootstrap", bootstrap],
            env,
            tmp_path / "replay.log",
        )
        services["autoscaler"] = Service(
            ["autoscale", "--policy", str(policy), "--port", "0"], env, tmp_path / "autoscaler.log"
        )
        down = f"kafka at {bootstrap} does not answer within 2 s: "
        for name, check in (
            ("control", "config_topic"),
            ("replay", "kafka"),
            ("autoscaler", "kafka"),
        ):
            service = services[name]
            assert requests.get(f"{service.url}/health", timeout=10).status_code == 200
            ready = service.ready()
            assert ready.status_code == 503, name
            assert down in ready.json()["reasons"][check], (name, ready.json())
        alice = ControlClient(services["control"].url, ALICE)
        with pytest.raises(ControlError) as refused:
            alice.apply_filters(FILTER)
        assert (refused.value.status, refused.value.error) == (503, "unavailable")
        assert down in refused.value.message

        start_kafka(cfg)

        wait_for(
            lambda: services["control"].ready().status_code == 200,
            60,
            "the control service to read its topics once Kafka answers",
            interval_s=0.5,
        )
        assert alice.status()["filter_set_version"] == 0  # the topics were read: empty
        applied = alice.apply_filters(FILTER)
        assert (applied["version"], applied["created"]) == (1, ["bright"])
        snapshots = read_snapshots(bootstrap, CONFIG_TOPIC)
        assert [
            (s["version"], [f["metadata"]["name"] for f in s["filters"]]) for s in snapshots
        ] == [(1, ["bright"])]
        wait_for(
            lambda: services["replay"].ready().status_code == 200,
            30,
            "the replay service to see Kafka",
            interval_s=0.5,
        )

        def autoscaler_sees_kafka() -> dict[str, Any] | None:
            body = services["autoscaler"].ready().json()
            return body if body["checks"]["kafka"] else None

        body = wait_for(autoscaler_sees_kafka, 30, "the autoscaler to see Kafka", interval_s=0.5)
        assert (body["ready"], list(body["reasons"])) == (False, ["flink"])  # no Flink here
    finally:
        codes = {name: service.stop() for name, service in services.items()}
    assert codes == {"control": 0, "replay": 0, "autoscaler": 0}
    for name in services:
        log = (tmp_path / f"{name}.log").read_text()
        assert "Traceback" not in log and "%3|" not in log, (name, log[-3000:])
