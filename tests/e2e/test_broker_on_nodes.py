"""The broker on nodes (`alertflow stack up --nodes`): Kafka, the JobManager, the control
services and a TaskManager with its own worker pool, each in a network namespace of its own
with a CPU and memory budget. The stack drains a backlog of real alerts with every expected
(filter, alert_id) pair; a TaskManager node is added and removed as the autoscaler's local
driver does it; `down` leaves no namespace, link or cgroup behind. Needs root."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from control_service.snapshots import publish_snapshot
from flink_deploy.autoscaler.local import LocalDriver
from flink_deploy.autoscaler.model import Profile
from flink_deploy.nodes import CGROUP_PARENT, CGROUP_ROOT, node_problem
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import StackConfig
from flink_deploy.stack.placement import Place
from tests.backlog import backlog_filters, catch_all, preload, run_topics, start_broker, watch_drain
from tests.e2e.test_broker_pipeline import pairs_on

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(node_problem() is not None, reason=str(node_problem())),
]

ALERTS = 2_000
# Under the machine's 2 cores together, so that the nodes do not compete.
BUDGETS = {
    "kafka_cpu": 0.4,
    "jobmanager_cpu": 0.3,
    "control_cpu": 0.5,
    "taskmanager_cpu": 0.5,
}


def _ours() -> tuple[str, str, list[Path]]:
    """Every namespace, link and cgroup of a stack on nodes that exists now."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    groups = [CGROUP_ROOT / c / CGROUP_PARENT for c in ("cpu", "memory")]
    return (
        " ".join(n for n in netns.split() if n.startswith("af-")),
        " ".join(word for word in links.split() if word.startswith(("afbr0", "afv"))),
        [g for g in groups if g.exists()],
    )


@pytest.fixture(scope="module")
def node_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    assert _ours() == ("", "", []), "a stack on nodes is running already"
    run_dir = tmp_path_factory.mktemp("nodes")
    patch = pytest.MonkeyPatch()
    patch.setenv("ALERTFLOW_RUN_DIR", str(run_dir))  # what the pipelines read stack.json from
    # The expansion service stays on the host's loopback (flink_deploy/stack/services.py): a
    # port of its own, beside the loopback stack of the other e2e tests.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        expansion_port = probe.getsockname()[1]
    cfg = StackConfig.from_env(taskmanagers=1, nodes=True).model_copy(
        update={**BUDGETS, "expansion_port": expansion_port}
    )
    try:
        supervisor.up(cfg)
        yield cfg
    finally:
        left = supervisor.down(cfg)
        patch.undo()
        assert not left, f"left running after down: {left}"
        assert _ours() == ("", "", []), "down left nodes behind"


def test_each_service_runs_on_its_node_with_its_address_and_budget(
    node_stack: StackConfig,
) -> None:
    report = supervisor.status(node_stack)
    assert report["healthy"], report
    nodes = {
        s["name"]: (s["node"], s["address"], s["budget"]) for s in report["services"] if "node" in s
    }
    control = node_stack.host(Place.CONTROL)
    assert nodes["kafka"][:2] == ("kafka", node_stack.host(Place.KAFKA))
    assert nodes["kafka"][2] == {"cpu_cores": 0.4, "memory_mib": node_stack.kafka_memory_mib}
    assert nodes["flink-jobmanager"][:2] == ("jobmanager", node_stack.host(Place.JOBMANAGER))
    assert nodes["beam-job-server"][:2] == ("control", control)
    assert "beam-expansion-service" not in nodes  # on the host's loopback: no node
    # The TaskManager and its own worker pool share a node.
    assert nodes["flink-taskmanager-1"][0] == nodes["beam-workerpool-1"][0] == "tm-1"
    assert nodes["flink-taskmanager-1"][2]["cpu_cores"] == 0.5
    # The JobManager sees its TaskManager at that node's address.
    tms = requests.get(f"{node_stack.flink_rest_url}/taskmanagers", timeout=10).json()
    [tm] = tms["taskmanagers"]
    assert tm["id"] == "flink-taskmanager-1"
    assert nodes["flink-taskmanager-1"][1] in tm["path"]


def test_the_broker_on_nodes_drains_a_backlog_with_every_pair(node_stack: StackConfig) -> None:
    bootstrap = node_stack.bootstrap_servers
    topics = run_topics(bootstrap, "nodes", "in", 8)
    filter_set = backlog_filters(f"nodes.{topics['in'].split('.')[1]}")
    publish_snapshot(bootstrap, filter_set, topics["config"])
    backlog = preload(bootstrap, topics["in"], ALERTS, filter_set)
    _, jid = start_broker(node_stack, topics, "in")
    try:
        drain = watch_drain(bootstrap, catch_all(filter_set).output.topic, ALERTS, 600)
        print(f"{ALERTS} alerts drained on nodes at {drain.rate:.0f} alerts/s")
        assert drain.distinct == ALERTS
        got, _, _ = pairs_on(bootstrap, filter_set)
        assert got == backlog.expected
    finally:
        requests.patch(
            f"{node_stack.flink_rest_url}/jobs/{jid}", params={"mode": "cancel"}, timeout=10
        )


def test_the_local_driver_adds_and_removes_a_taskmanager_node(node_stack: StackConfig) -> None:
    driver = LocalDriver(node_stack)
    added = driver.add(Profile("small", 2, "3072m"))
    try:
        assert [t.name for t in driver.taskmanagers()] == ["flink-taskmanager-1", added.name]
        node = node_stack.node_set().get("tm-2")
        assert node is not None and node.budget.cpu_cores == 0.5
        running = {p.name: p for p in supervisor.RunState(node_stack.run_dir).load()}
        assert running["beam-workerpool-2"].node == running[added.name].node == "tm-2"
    finally:
        driver.remove(added.name)
    assert node_stack.node_set().get("tm-2") is None
    assert "af-tm-2" not in _ours()[0]
    names = {p.name for p in supervisor.RunState(node_stack.run_dir).load()}
    assert not names & {added.name, "beam-workerpool-2"}
