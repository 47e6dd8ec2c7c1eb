"""The stack's process supervision: clear errors, and stops that leave nothing behind.

These use small Python processes in place of the JVMs: what is under test is how processes
are started, watched and stopped, which does not depend on what they run.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flink_deploy.stack import supervisor
from flink_deploy.stack.config import HOST, StackConfig, StackError, find_java
from flink_deploy.stack.services import Service
from transforms.polling import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def python_service(tmp_path: Path, name: str, code: str, port: int, healthy=lambda: False):
    return Service(name, [sys.executable, "-c", code], port, tmp_path / f"{name}.log", healthy)


def test_port_in_use_names_the_service_and_port(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        service = python_service(tmp_path, "kafka", "pass", port)
        with pytest.raises(StackError, match=rf"kafka: port {port} .* already in use"):
            supervisor.spawn(service)


def test_service_that_exits_names_its_log_and_shows_its_last_lines(tmp_path: Path) -> None:
    code = "import sys; print('broker config is broken', flush=True); sys.exit(3)"
    service = python_service(tmp_path, "flink-jobmanager", code, free_port())
    started = supervisor.spawn(service)
    with pytest.raises(StackError) as err:
        supervisor.wait_healthy(service, started, timeout_s=30)
    message = str(err.value)
    assert message.startswith("flink-jobmanager: process")
    assert str(service.log) in message
    assert "broker config is broken" in message


def test_service_that_never_gets_healthy_times_out_and_is_stopped(tmp_path: Path) -> None:
    service = python_service(
        tmp_path, "beam-job-server", "import time; time.sleep(60)", free_port()
    )
    started = supervisor.spawn(service)
    with pytest.raises(StackError, match=r"beam-job-server: not healthy after 1 s"):
        supervisor.wait_healthy(service, started, timeout_s=1)
    supervisor.stop(started)
    assert not supervisor.is_running(started)


def test_stop_takes_the_whole_process_group(tmp_path: Path) -> None:
    # Like the worker pool, which forks SDK workers that outlive a plain kill of the parent.
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "time.sleep(120)\n"
    )
    started = supervisor.spawn(python_service(tmp_path, "beam-workerpool", code, free_port()))
    wait_until(
        lambda: len(supervisor.group_members(started.pid)) >= 2,
        10,
        0.05,
        "the pool's child to start",
    )
    assert len(supervisor.group_members(started.pid)) == 2
    supervisor.stop(started)
    assert supervisor.group_members(started.pid) == []


def test_a_recycled_pid_is_never_signalled(tmp_path: Path) -> None:
    started = supervisor.spawn(
        python_service(tmp_path, "kafka", "import time; time.sleep(60)", free_port())
    )
    impostor = supervisor.Started("kafka", started.pid, started.create_time + 1, 0, "")
    assert not supervisor.is_running(impostor)
    supervisor.stop(impostor)
    assert supervisor.is_running(started)
    supervisor.stop(started)
    assert not supervisor.is_running(started)


def test_missing_java_is_a_clear_error(tmp_path: Path) -> None:
    not_java = tmp_path / "java"
    not_java.write_text("#!/bin/sh\necho 'openjdk version \"25\"' >&2\n")
    not_java.chmod(0o755)
    with pytest.raises(StackError, match="Java 17 not found"):
        find_java([None, str(tmp_path / "absent"), str(not_java)])


def test_down_stops_what_up_recorded_and_forgets_it(tmp_path: Path) -> None:
    state = supervisor.RunState(tmp_path)
    procs = [
        supervisor.spawn(python_service(tmp_path, n, "import time; time.sleep(60)", free_port()))
        for n in ("kafka", "flink-jobmanager")
    ]
    state.save(procs)
    cfg = StackConfig(run_dir=tmp_path, build_dir=tmp_path, java="java")
    assert supervisor.down(cfg, log=lambda _: None) == []
    assert not any(supervisor.is_running(p) for p in procs)
    assert state.load() == []


def test_a_service_that_does_not_come_up_is_stopped_and_forgotten(tmp_path: Path) -> None:
    """A start into the running stack (an autoscaler, a TaskManager, the control service) that
    fails leaves no process and no record behind (issue 13: one was left with parent PID 1)."""
    cfg = StackConfig(run_dir=tmp_path, build_dir=tmp_path, java="java", start_timeout_s=1)
    kafka = supervisor.spawn(
        python_service(tmp_path, "kafka", "import time; time.sleep(60)", free_port())
    )
    supervisor.RunState(tmp_path).save([kafka])
    pid_file = tmp_path / "autoscaler.pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    service = python_service(tmp_path, "alertflow-autoscaler", code, free_port())
    with pytest.raises(StackError, match="alertflow-autoscaler: not healthy after 1 s"):
        supervisor.start_service(cfg, service)
    assert supervisor.RunState(tmp_path).load() == [kafka]
    assert supervisor.group_members(int(pid_file.read_text())) == []
    supervisor.stop(kafka)


def test_one_process_at_a_time_holds_a_run_folder(tmp_path: Path) -> None:
    """A second `run` or `up` on a run folder is refused, naming the holder (issue 13)."""
    cfg = StackConfig(run_dir=tmp_path, build_dir=tmp_path, java="java")
    code = (
        "import sys, time\nfrom pathlib import Path\n"
        "from flink_deploy.stack import supervisor\n"
        "from flink_deploy.stack.config import StackConfig\n"
        f"cfg = StackConfig(run_dir=Path({str(tmp_path)!r}), build_dir=Path('.'), "
        "java='java')\nwith supervisor.hold(cfg, 'alertflow run'):\n"
        "    print('held', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(StackError, match=rf"held by `alertflow run` \(pid {holder.pid},"):
            with supervisor.hold(cfg, "alertflow stack up"):
                pass
        with pytest.raises(StackError, match="held by `alertflow run`"):
            supervisor.up(cfg, log=lambda _: None)
    finally:
        holder.kill()
        holder.communicate()
    with supervisor.hold(cfg, "alertflow run"), supervisor.hold(cfg, "alertflow stack up"):
        assert "alertflow run" in (tmp_path / "lock").read_text()


def test_a_state_file_from_before_psutil_still_finds_its_processes(tmp_path: Path) -> None:
    """state.json written by the supervisor that read /proc/PID/stat recorded the start time in
    clock ticks since boot; ``down`` must still recognise (and stop) those processes."""
    started = supervisor.spawn(
        python_service(tmp_path, "kafka", "import time; time.sleep(60)", free_port())
    )
    stat = Path(f"/proc/{started.pid}/stat").read_text()
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    legacy = {
        "name": "kafka",
        "pid": started.pid,
        "start_ticks": ticks,
        "port": started.port,
        "log": started.log,
        "profile": "",
    }
    (tmp_path / "state.json").write_text(json.dumps({"services": [legacy]}))
    assert supervisor.RunState(tmp_path).load() == [started]
    impostor = {**legacy, "start_ticks": ticks + 1}
    (tmp_path / "state.json").write_text(json.dumps({"services": [impostor]}))
    assert not supervisor.is_running(supervisor.RunState(tmp_path).load()[0])
    supervisor.stop(started)
    assert not supervisor.is_running(started)
