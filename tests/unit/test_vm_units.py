"""The VM form of a TaskManager node (flink_deploy/vm/): the cloud-init user data and its
systemd units, rendered and read back as cloud-init and systemd read them."""

from __future__ import annotations

import configparser
import json
import shlex

import yaml

from flink_deploy.sizing import TaskManagerProfile
from flink_deploy.vm import UNITS, TaskManagerVm, render_units, render_user_data

LARGE = TaskManagerProfile("large", 4, "5120m")
VM = TaskManagerVm("alertflow-tm-large-3", LARGE, cpu_cores=1.0, jobmanager_address="10.0.4.7")


def _unit(text: str) -> configparser.ConfigParser:
    """A unit file as systemd reads it: sections of keys, a key given twice kept as a list."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_user_data_is_cloud_config_with_the_flink_config_and_the_three_units() -> None:
    text = render_user_data(VM)
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert data["hostname"] == "alertflow-tm-large-3"
    paths = [f["path"] for f in data["write_files"]]
    assert paths == ["/opt/flink/conf/config.yaml", *(f"/etc/systemd/system/{u}" for u in UNITS)]
    flink = yaml.safe_load(data["write_files"][0]["content"])
    assert flink["jobmanager"]["rpc"] == {"address": "10.0.4.7", "port": 6123}
    units = render_units(VM)
    for entry in data["write_files"][1:]:
        assert entry["content"] == units[entry["path"].rsplit("/", 1)[1]]
    assert data["runcmd"][-1] == ["systemctl", "enable", "--now", "alertflow-taskmanager.service"]


def test_the_taskmanager_runs_the_profile_in_the_node_budget_with_its_worker_pool() -> None:
    units = {name: _unit(text) for name, text in render_units(VM).items()}
    tm = units["alertflow-taskmanager.service"]
    command = shlex.split(tm["Service"]["ExecStart"])
    assert command[:2] == ["/opt/flink/bin/taskmanager.sh", "start-foreground"]
    assert command[2::2] == ["-D"] * len(command[3::2]), "every argument is a -D pair"
    given = dict(p.split("=", 1) for p in command[3::2])
    assert given == {**LARGE.memory_settings(), "taskmanager.resource-id": "alertflow-tm-large-3"}
    assert given["taskmanager.numberOfTaskSlots"] == "4"
    # The TaskManager needs its pool, starts after it, and stops on SIGTERM (no heartbeat wait).
    assert tm["Unit"]["Requires"] == "beam-workerpool.service"
    assert "beam-workerpool.service" in tm["Unit"]["After"].split()
    assert tm["Service"]["KillSignal"] == "SIGTERM"

    pool = units["beam-workerpool.service"]
    pool_command = shlex.split(pool["Service"]["ExecStart"])
    assert pool_command == [
        "/opt/alertflow/.venv/bin/python",
        "-m",
        "apache_beam.runners.worker.worker_pool_main",
        "--service_port=50000",
    ]
    # Both share one budget: 1 core as a quota, the profile's memory plus the pool's.
    slice_ = units["alertflow-node.slice"]["Slice"]
    assert slice_["CPUQuota"] == "100%"
    assert slice_["MemoryMax"] == f"{5120 + 1024}M"
    for name in ("alertflow-taskmanager.service", "beam-workerpool.service"):
        assert units[name]["Service"]["Slice"] == "alertflow-node.slice"


def test_a_fractional_budget_and_other_homes_are_filled_in() -> None:
    small = TaskManagerVm(
        "tm-small-1",
        TaskManagerProfile("small", 2, "3072m"),
        cpu_cores=0.5,
        jobmanager_address="jm.internal",
        jobmanager_rpc_port=6200,
        flink_home="/srv/flink",
        app_home="/srv/alertflow",
    )
    units = render_units(small)
    assert "${" not in "".join(units.values())
    assert _unit(units["alertflow-node.slice"])["Slice"]["CPUQuota"] == "50%"
    tm = _unit(units["alertflow-taskmanager.service"])["Service"]
    assert tm["ExecStart"].startswith("/srv/flink/bin/taskmanager.sh start-foreground ")
    assert tm["Environment"] == "FLINK_CONF_DIR=/srv/flink/conf"
    flink = json.loads(yaml.safe_load(render_user_data(small))["write_files"][0]["content"])
    assert flink["jobmanager"]["rpc"] == {"address": "jm.internal", "port": 6200}
