"""Where the local stack's services run (flink_deploy/stack/placement.py): on the loopback by
default, on nodes with ``--nodes``. Nothing is started here; tests/unit/test_nodes.py makes
nodes for real, tests/e2e/test_broker_on_nodes.py runs the broker on them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from flink_deploy.sizing import TaskManagerProfile
from flink_deploy.stack.config import HOST, StackConfig, StackPorts
from flink_deploy.stack.kafka import kafka_properties
from flink_deploy.stack.placement import Place
from flink_deploy.stack.services import (
    autoscaler_service,
    control_service,
    expansion_service,
    job_server_service,
    worker_pool_service,
    write_flink_conf,
)

SMALL = TaskManagerProfile("small", 2, "3072m", cpu_cores=0.3)


def _cfg(tmp_path: Path, **values: object) -> StackConfig:
    return StackConfig(run_dir=tmp_path, build_dir=tmp_path, java="java", **values)


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_by_default_everything_is_on_the_loopback_and_on_no_node(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert (cfg.bootstrap_servers, cfg.flink_rest_url) == (
        f"{HOST}:9092",
        f"http://{HOST}:8081",
    )
    assert all(cfg.node_plan(place) is None for place in Place)
    assert cfg.taskmanager_plan(1, SMALL) is None
    for service in (worker_pool_service(cfg), expansion_service(cfg), control_service(cfg)):
        assert (service.host, service.node) == (HOST, None)
    assert _properties(kafka_properties(cfg, tmp_path))["listeners"] == (
        f"PLAINTEXT://{HOST}:9092,CONTROLLER://{HOST}:9093"
    )
    assert "ALERTFLOW_NODES" not in cfg.environment()


def test_on_nodes_each_place_has_its_node_address_and_budget(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, nodes=True, node_subnet="10.99.0.0/24", kafka_cpu=0.6)
    assert cfg.host(Place.KAFKA) == "10.99.0.2"
    assert cfg.host(Place.JOBMANAGER) == "10.99.0.3"
    assert cfg.host(Place.CONTROL) == "10.99.0.4"
    assert cfg.bootstrap_servers == "10.99.0.2:9092"
    assert cfg.flink_rest_url == "http://10.99.0.3:8081"
    assert cfg.control_url == "http://10.99.0.4:5000"
    kafka = cfg.node_plan(Place.KAFKA)
    assert kafka is not None
    assert (kafka.name, kafka.index, kafka.budget.cpu_cores) == ("kafka", 1, 0.6)

    props = _properties(kafka_properties(cfg, tmp_path))
    assert props["listeners"] == "PLAINTEXT://10.99.0.2:9092,CONTROLLER://10.99.0.2:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://10.99.0.2:9092"

    conf = json.loads((write_flink_conf(cfg) / "config.yaml").read_text())
    assert conf["jobmanager"]["rpc"]["address"] == "10.99.0.3"
    assert conf["rest"]["address"] == "10.99.0.3"
    assert conf["rest"]["bind-address"] == conf["jobmanager"]["bind-host"] == "0.0.0.0"


def test_the_control_services_run_on_the_control_node_and_listen_there(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, nodes=True)
    # The job server takes flink-dist's Java 17 flags: a stand-in jar with its config.yaml.
    lib = cfg.flink_home / "lib"
    lib.mkdir(parents=True)
    with zipfile.ZipFile(lib / "flink-dist-1.19.3.jar", "w") as jar:
        jar.writestr("config.yaml", "env:\n  java:\n    opts:\n      all: --add-opens=a/b=ALL\n")
    control = cfg.host(Place.CONTROL)
    jobs = job_server_service(cfg)
    assert f"--flink-master={cfg.host(Place.JOBMANAGER)}:8081" in jobs.argv
    assert f"--job-host={control}" in jobs.argv
    services = [jobs, control_service(cfg), autoscaler_service(cfg, tmp_path / "policy.yaml")]
    for service in services:
        assert service.node is not None and service.node.name == "control", service.name
        assert service.host == control
    for service in services[1:]:  # the Python services are told where to listen
        assert service.argv[service.argv.index("--host") + 1] == control
    # Only a submitter calls the expansion service, and Beam's client only on a loopback.
    expansion = expansion_service(cfg)
    assert (expansion.node, expansion.host) == (None, HOST)


def test_each_taskmanager_has_a_node_with_its_own_worker_pool(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, nodes=True, taskmanager_cpu=0.25, worker_pool_memory_mib=1024)
    plan = cfg.taskmanager_plan(2, SMALL)
    assert plan is not None
    assert (plan.name, plan.index) == ("tm-2", 12)
    # The profile's CPU, else the stack's; its memory and the pool's.
    assert (plan.budget.cpu_cores, plan.budget.memory_mib) == (0.3, 3072 + 1024)
    default_cpu = cfg.taskmanager_plan(1, TaskManagerProfile("small", 2, "3072m"))
    assert default_cpu is not None and default_cpu.budget.cpu_cores == 0.25

    pool = worker_pool_service(cfg, 2, SMALL)
    assert pool.name == "beam-workerpool-2"
    assert pool.node == plan
    assert pool.host == cfg.node_address(plan)
    assert "--service_port=50000" in pool.argv  # every pool at its own node's localhost:50000


def test_children_and_clients_find_a_stack_on_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(tmp_path, nodes=True, node_subnet="10.98.0.0/24")
    # A child process gets the layout in its environment.
    child = StackPorts.load(env=cfg.environment())
    assert child.bootstrap_servers == "10.98.0.2:9092"

    # A client with nothing set finds it in the run folder, while the stack runs.
    monkeypatch.setenv("ALERTFLOW_RUN_DIR", str(tmp_path))
    for name in ("ALERTFLOW_NODES", "ALERTFLOW_NODE_SUBNET"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "stack.json").write_text(json.dumps({"nodes": True, "node_subnet": "10.98.0.0/24"}))
    (tmp_path / "state.json").write_text(json.dumps({"services": [{"name": "kafka"}]}))
    assert StackPorts.local().bootstrap_servers == "10.98.0.2:9092"
    # Once it is down (state.json empty), the loopback again.
    (tmp_path / "state.json").write_text(json.dumps({"services": []}))
    assert StackPorts.local().bootstrap_servers == f"{HOST}:9092"


def test_a_bad_subnet_is_refused_with_its_variable() -> None:
    with pytest.raises(Exception, match="ALERTFLOW_NODE_SUBNET: must be an IPv4 network"):
        StackPorts.load(env={"ALERTFLOW_NODE_SUBNET": "10.0.0.0/30"})
