"""Nodes on one machine (flink_deploy/nodes.py), made for real: namespaces on a bridge of their
own, CPU and memory budgets, and removal of exactly what was made. Needs root and iproute2.

Each test uses a prefix and a subnet of its own, so it never touches a running stack's nodes.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flink_deploy.nodes import Budget, NodeError, Nodes, cgroup_parent, node_problem

pytestmark = pytest.mark.skipif(node_problem() is not None, reason=str(node_problem()))


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    tag = os.getpid() % 10_000
    made = Nodes(tmp_path, subnet=f"10.214.{tag % 250}.0/24", prefix=f"t{tag}")
    yield made
    made.remove_all()


def _ip_names(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def _in_node(nodes: Nodes, name: str, code: str) -> subprocess.CompletedProcess[str]:
    node = nodes.get(name)
    assert node is not None
    return subprocess.run(
        node.command([sys.executable, "-c", code]),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=node.join,
        check=False,
    )


def test_a_node_has_its_address_its_localhost_and_no_route_off_the_bridge(nodes: Nodes) -> None:
    a = nodes.add("kafka", Budget(cpu_cores=0.5, memory_mib=256))
    b = nodes.add("tm-1", Budget(cpu_cores=1.0, memory_mib=512))
    assert a.address != b.address
    assert {ipaddress.ip_address(a.address), ipaddress.ip_address(b.address)} <= set(nodes.network)
    assert f"inet {a.address}/24" in _ip_names("-n", a.netns, "addr", "show", "eth0")
    # Only the bridge's subnet is routed: no default route out of the machine.
    routes = _ip_names("-n", b.netns, "route", "show")
    assert "default" not in routes
    assert str(nodes.network) in routes

    # Node a listens on its own address and on its own localhost; b reaches the first but
    # its own localhost is another one.
    server = subprocess.Popen(
        a.command(
            [
                sys.executable,
                "-c",
                "import socket, sys\n"
                f"outer = socket.create_server(({a.address!r}, 41000))\n"
                "inner = socket.create_server(('127.0.0.1', 41001))\n"
                "print('up', flush=True)\n"
                "conn, _ = outer.accept(); conn.sendall(b'from a'); conn.close()\n",
            ]
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "up"
        seen = _in_node(
            nodes,
            "tm-1",
            "import socket\n"
            f"s = socket.create_connection(({a.address!r}, 41000), timeout=10)\n"
            "print(s.recv(100).decode())\n"
            "try:\n"
            "    socket.create_connection(('127.0.0.1', 41001), timeout=2)\n"
            "    print('same localhost')\n"
            "except OSError:\n"
            "    print('own localhost')\n",
        )
        assert seen.returncode == 0, seen.stderr
        assert seen.stdout.split() == ["from", "a", "own", "localhost"]
    finally:
        server.kill()
        server.wait()
        assert server.stdout is not None
        server.stdout.close()


def test_a_node_budget_is_the_cgroup_quota_and_limit_and_it_throttles(nodes: Nodes) -> None:
    node = nodes.add("tm-1", Budget(cpu_cores=0.25, memory_mib=128))
    cpu = node.cgroup("cpu")
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "25000"
    assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
    limit = int((node.cgroup("memory") / "memory.limit_in_bytes").read_text())
    assert limit == 128 * 1024 * 1024

    def throttled() -> int:
        stat = dict(line.split() for line in (cpu / "cpu.stat").read_text().splitlines())
        return int(stat["nr_throttled"])

    before = throttled()
    # A busy loop of 0.6 s of wall time: at a quarter of a core it is throttled in most periods.
    busy = _in_node(
        nodes, "tm-1", "import time\nend = time.time() + 0.6\nwhile time.time() < end: pass\n"
    )
    assert busy.returncode == 0, busy.stderr
    assert throttled() > before
    # Beyond the memory limit the process is killed, not the machine's memory used.
    hog = _in_node(
        nodes, "tm-1", "b = bytearray(400 * 1024 * 1024)\nb[::4096] = b'x' * len(b[::4096])\n"
    )
    assert hog.returncode != 0


def test_remove_takes_exactly_what_was_made(nodes: Nodes, tmp_path: Path) -> None:
    a = nodes.add("jobmanager", Budget(cpu_cores=0.5, memory_mib=256))
    b = nodes.add("tm-1", Budget(cpu_cores=0.5, memory_mib=256))
    assert {n.name for n in nodes.all()} == {"jobmanager", "tm-1"}
    # The ledger is what a later `stack down` reads: a new Nodes over the same folder sees both.
    again = Nodes(tmp_path, subnet=str(nodes.network), prefix=nodes.prefix)
    assert [n.name for n in again.all()] == ["jobmanager", "tm-1"]

    again.remove("jobmanager")
    assert a.netns not in _ip_names("netns", "list")
    assert a.host_link not in _ip_names("link", "show")
    assert not a.cgroup("cpu").exists() and not a.cgroup("memory").exists()
    assert b.netns in _ip_names("netns", "list")
    # A freed index is taken again, so addresses stay within the first ones.
    c = again.add("tm-2", Budget(cpu_cores=0.5, memory_mib=256))
    assert c.index == a.index and c.address == a.address

    assert sorted(again.remove_all()) == ["tm-1", "tm-2"]
    assert nodes.bridge not in _ip_names("link", "show")
    for controller in ("cpu", "memory"):
        assert not cgroup_parent(controller, nodes.prefix).exists()
    assert not (tmp_path / "nodes.json").exists()


def test_a_group_with_a_process_left_is_not_removed_silently(nodes: Nodes) -> None:
    node = nodes.add("tm-1", Budget(cpu_cores=0.5, memory_mib=256))
    sleeper = subprocess.Popen(node.command(["sleep", "30"]), preexec_fn=node.join)
    try:
        with pytest.raises(NodeError, match="processes are still in"):
            nodes.remove("tm-1")
    finally:
        sleeper.kill()
        sleeper.wait()
    nodes.remove("tm-1")
    assert nodes.all() == []


def test_bad_names_and_budgets_are_refused(nodes: Nodes) -> None:
    with pytest.raises(NodeError, match="must match"):
        nodes.add("TM_1", Budget(cpu_cores=0.5, memory_mib=256))
    with pytest.raises(NodeError, match="cpu_cores"):
        Budget(cpu_cores=0, memory_mib=256)
    nodes.add("tm-1", Budget(cpu_cores=0.5, memory_mib=256))
    with pytest.raises(NodeError, match="exists already"):
        nodes.add("tm-1", Budget(cpu_cores=0.5, memory_mib=256))
