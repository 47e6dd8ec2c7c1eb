"""The VM form of a TaskManager node: cloud-init user data that installs three systemd units,
a TaskManager with its Beam worker pool inside one budget (a slice).

This is what a cloud VM driver boots for each TaskManager it adds: the same TaskManager
profile and CPU budget as a local node (flink_deploy/nodes.py), the same worker-pool sidecar
as a Kubernetes pod. The image is assumed to hold Flink under ``flink_home`` and the
repository with its venv under ``app_home`` (as flink_deploy/kubernetes/images/ build them),
and a user ``alertflow``. The units are templates beside this module; :func:`render_units`
fills them and :func:`render_user_data` wraps them with the VM's Flink configuration.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from string import Template

import yaml

from flink_deploy.sizing import TaskManagerProfile

TEMPLATES = Path(__file__).parent
UNITS = ("alertflow-node.slice", "beam-workerpool.service", "alertflow-taskmanager.service")
SYSTEMD_DIR = "/etc/systemd/system"
# Beyond the TaskManager's own process memory, what the worker pool and its SDK workers may take.
WORKER_POOL_MIB = 1024


@dataclass(frozen=True)
class TaskManagerVm:
    """One TaskManager VM: its name (the TaskManager's resource id), profile, CPU budget, and
    where its JobManager is."""

    name: str
    profile: TaskManagerProfile
    cpu_cores: float
    jobmanager_address: str
    jobmanager_rpc_port: int = 6123
    worker_pool_port: int = 50000
    flink_home: str = "/opt/flink"
    app_home: str = "/opt/alertflow"

    @property
    def memory_max_mib(self) -> int:
        return self.profile.memory_mib + WORKER_POOL_MIB

    def flink_config(self) -> dict[str, object]:
        """The VM's Flink config.yaml: where the JobManager is; the profile comes as dynamic
        properties on the command line, as on the local stack."""
        return {
            "jobmanager": {
                "rpc": {"address": self.jobmanager_address, "port": self.jobmanager_rpc_port}
            },
            "taskmanager": {"bind-host": "0.0.0.0"},
        }


def render_units(vm: TaskManagerVm) -> dict[str, str]:
    """The three units, by file name, filled in for ``vm``."""
    properties = [*vm.profile.dynamic_properties(), "-D", f"taskmanager.resource-id={vm.name}"]
    values = {
        "profile": vm.profile.name,
        "slots": str(vm.profile.slots),
        "process_memory": vm.profile.process_memory,
        "cpu_quota_percent": str(round(vm.cpu_cores * 100)),
        "memory_max_mib": str(vm.memory_max_mib),
        "worker_pool_port": str(vm.worker_pool_port),
        "flink_home": vm.flink_home,
        "app_home": vm.app_home,
        "venv": f"{vm.app_home}/.venv",
        "dynamic_properties": shlex.join(properties),
    }
    return {unit: Template((TEMPLATES / unit).read_text()).substitute(values) for unit in UNITS}


def render_user_data(vm: TaskManagerVm) -> str:
    """The VM's cloud-init user data (``#cloud-config``): its Flink configuration and its units,
    then the TaskManager started (which starts its worker pool first)."""
    files = [
        {
            "path": f"{vm.flink_home}/conf/config.yaml",
            "owner": "alertflow:alertflow",
            "permissions": "0644",
            # JSON is valid YAML, and Flink reads config.yaml as standard YAML.
            "content": json.dumps(vm.flink_config(), indent=2) + "\n",
        },
        *(
            {"path": f"{SYSTEMD_DIR}/{unit}", "permissions": "0644", "content": text}
            for unit, text in render_units(vm).items()
        ),
    ]
    config = {
        "hostname": vm.name,
        "write_files": files,
        "runcmd": [
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", "alertflow-taskmanager.service"],
        ],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)
