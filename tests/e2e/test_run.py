"""`alertflow run` (what `make run` runs) from the shell, on a stack of its own.

It holds its run folder against a second `run`, starts the control service with a local admin
token that `alertflow filters apply` then uses at once, and Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from control_service.client import ControlClient
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import StackConfig
from flink_deploy.stack.services import local_admin_token
from tests.datapaths import shared_data
from transforms.filters.document import load_filter_file
from transforms.polling import wait_until

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "filters" / "solar-system-objects.yaml"
# Beside the session stack, on ports of its own.
PORT_OFFSET = 900
MATCH_LINE = re.compile(r"^(\S+)\s+(\d+) matches on (\S+) \(computed locally: (\d+)\)$")


def cli(env: dict[str, str], *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "control_service.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_line(path: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> None:

    def written() -> bool:
        if text in path.read_text(errors="replace"):
            return True
        assert proc.poll() is None, f"alertflow run exited {proc.returncode}:\n{path.read_text()}"
        return False

    try:
        wait_until(written, timeout_s, 1.0, repr(text))
    except TimeoutError:
        raise AssertionError(f"no {text!r} after {timeout_s:.0f} s:\n{path.read_text()}") from None


def test_run_holds_its_folder_serves_filters_and_stops_what_it_started(tmp_path: Path) -> None:
    cfg = StackConfig.from_env().moved(tmp_path / "run", PORT_OFFSET)
    env = {**os.environ, **cfg.environment(), "ALERTFLOW_SHARED_DATA": str(shared_data())}
    env.pop("ALERTFLOW_TOKEN", None)
    out_path, err_path = tmp_path / "run.out", tmp_path / "run.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        first = subprocess.Popen(
            [sys.executable, "-m", "control_service.cli", "run"],
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:
        wait_for_line(err_path, "Stop with Ctrl-C", first, timeout_s=540)
        lines = out_path.read_text().splitlines()
        counts = [m for m in map(MATCH_LINE.match, lines) if m]
        names = {f.name for p in EXAMPLE.parent.glob("*.yaml") for f in load_filter_file(str(p))}
        assert {m[1] for m in counts} == names, lines
        assert all(int(m[2]) >= int(m[4]) for m in counts), out_path.read_text()
        assert sum(int(m[4]) for m in counts) > 0
        # No start-up noise (issue 13): Kafka hands out producer ids before anything produces,
        # and Beam is not told of options it does not know.
        logs = err_path.read_text() + (cfg.run_dir / "control.log").read_text()
        assert "Failed to acquire idempotence PID" not in logs
        assert "Unknown pipeline options" not in logs
        token = local_admin_token(cfg)
        assert f"Control service: {cfg.control_url}" in err_path.read_text()
        assert token in err_path.read_text()

        second = cli(env, "run", "--detach")
        assert second.returncode == 2
        assert f"is held by `alertflow run` (pid {first.pid}," in second.stderr

        assert requests.get(f"{cfg.control_url}/ready", timeout=10).status_code == 200
        renamed = tmp_path / "mine.yaml"
        renamed.write_text(
            EXAMPLE.read_text().replace("name: solar-system-objects", "name: my-solar-system")
        )
        applied = cli(env, "filters", "apply", "-f", str(renamed), "--url", cfg.control_url)
        assert applied.returncode == 0, applied.stderr
        listing = ControlClient(cfg.control_url).list_filters()
        assert "my-solar-system" in {f["name"] for f in listing["filters"]}

        recorded = supervisor.RunState(cfg.run_dir).load()
        assert {"kafka", "alertflow-control"} <= {p.name for p in recorded}
        os.killpg(first.pid, signal.SIGINT)
        assert first.wait(timeout=180) == 0, err_path.read_text()
        assert supervisor.RunState(cfg.run_dir).load() == []
        assert not any(
            supervisor.is_running(p) or supervisor.group_members(p.pid) for p in recorded
        )
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        supervisor.down(cfg, log=lambda _: None)
