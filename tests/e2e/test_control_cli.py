"""The ``alertflow`` command against a real control service over HTTP, on the real Kafka.

``alertflow filters apply|list|get|test|delete`` end to end against a served app (the
snapshots land on a fresh config topic), and ``alertflow serve`` as a subprocess: it answers
``/health`` and ``/ready`` and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
import requests
import yaml
from werkzeug.serving import make_server

from control_service.app import create_app
from control_service.cli import main
from control_service.config import load_config
from flink_deploy.settings import REPO_ROOT
from flink_deploy.stack.config import StackConfig
from tests.e2e.test_control_kafka import read_snapshots
from transforms.polling import wait_until

pytestmark = pytest.mark.e2e

TOKEN = "alice-secret-1"
KEYS = [{"token": TOKEN, "user": "alice", "role": "user"}]


@pytest.fixture
def served(stack: StackConfig, tmp_path: Path) -> Iterator[dict]:
    """A control service on loopback over a fresh config topic pair."""
    topic = f"alertflow.config.cli-{uuid.uuid4().hex[:8]}"
    config = load_config(
        env={},
        bootstrap_servers=stack.bootstrap_servers,
        config_topic=topic,
        inactive_topic=topic + ".inactive",
        api_keys=KEYS,
        audit_log=tmp_path / "audit.jsonl",
        flink_rest_url=stack.flink_rest_url,
    )
    server = make_server("127.0.0.1", 0, create_app(config), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "url": f"http://127.0.0.1:{server.server_port}",
            "topic": topic,
            "bootstrap": stack.bootstrap_servers,
        }
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def cli(capsys: pytest.CaptureFixture, url: str, *argv: str) -> tuple[int, str, str]:
    """Run ``alertflow filters ARGV --url URL --token TOKEN`` in this process."""
    code = main(["filters", *argv, "--url", url, "--token", TOKEN])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_filters_commands_over_http(
    served: dict, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    url = served["url"]
    doc = tmp_path / "bright.yaml"
    doc.write_text(
        "apiVersion: alertflow/v1\nkind: Filter\n"
        "metadata: {name: cli-bright, owner: alice}\n"
        "spec:\n  where: mag < 18\n  output: {topic: cli.bright}\n"
    )
    code, out, err = cli(capsys, url, "apply", "-f", str(doc))
    assert code == 0, err
    assert json.loads(out)["version"] == 1

    code, out, _ = cli(capsys, url, "list")
    listing = json.loads(out)
    assert code == 0 and listing["version"] == 1
    assert [(f["name"], f["active"]) for f in listing["filters"]] == [("cli-bright", True)]

    code, out, _ = cli(capsys, url, "get", "cli-bright")
    assert code == 0 and yaml.safe_load(out)["spec"]["where"] == "mag < 18"

    code, out, _ = cli(capsys, url, "test", "cli-bright")
    result = json.loads(out)
    assert code == 0 and result["filter"] == "cli-bright"
    assert 0 < result["matched"] <= result["evaluated"] and result["errors"] == 0

    bad = tmp_path / "bad.yaml"
    bad.write_text(doc.read_text().replace("mag < 18", "reliabilty > 0.5"))
    code, out, err = cli(capsys, url, "apply", "-f", str(bad))
    assert code == 1 and out == ""
    assert err.splitlines()[0].startswith("422 ")
    assert f"{bad}:5:" in err and "did you mean 'reliability'" in err

    code, out, _ = cli(capsys, url, "delete", "cli-bright")
    assert code == 0 and json.loads(out)["version"] == 2
    code, out, err = cli(capsys, url, "get", "cli-bright")
    assert code == 1 and err.startswith("404 not_found")

    snapshots = read_snapshots(served["bootstrap"], served["topic"])
    assert [(s["version"], [f["metadata"]["name"] for f in s["filters"]]) for s in snapshots] == [
        (1, ["cli-bright"]),
        (2, []),
    ]


def test_serve_answers_and_stops_on_sigterm(stack: StackConfig, tmp_path: Path) -> None:
    topic = f"alertflow.config.serve-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "ALERTFLOW_CONTROL_BOOTSTRAP_SERVERS": stack.bootstrap_servers,
        "ALERTFLOW_CONTROL_CONFIG_TOPIC": topic,
        "ALERTFLOW_CONTROL_INACTIVE_TOPIC": topic + ".inactive",
        "ALERTFLOW_CONTROL_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "ALERTFLOW_CONTROL_FLINK_REST_URL": stack.flink_rest_url,
    }
    command = [sys.executable, "-m", "control_service.cli", "serve", "--port", "0"]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # The first stdout line names the address once it listens (port 0: the OS picks).
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.append(process.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(120)
        assert lines and lines[0].startswith("alertflow control service on http://"), lines
        url = lines[0].split(" on ", 1)[1].strip()
        health = requests.get(f"{url}/health", timeout=10)
        assert health.status_code == 200
        with suppress(TimeoutError):
            wait_until(
                lambda: requests.get(f"{url}/ready", timeout=10).status_code == 200,
                60,
                0.5,
                "/ready",
            )
        ready = requests.get(f"{url}/ready", timeout=10)
        assert ready.status_code == 200 and ready.json()["ready"] is True
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/health", timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        process.stdout.close()
        stderr = process.stderr.read()
        process.stderr.close()
    assert "Traceback" not in stderr, stderr
