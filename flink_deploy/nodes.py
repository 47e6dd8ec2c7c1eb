"""Nodes on one machine: each a Linux network namespace with its own address and its own
localhost, and a CPU and memory budget, the way a pod or a VM looks to the services in it.

The nodes' addresses sit on one bridge, ``afbr0``, that only our namespaces join. A node has
no default route, only the bridge's subnet, so nothing it runs can reach past the machine; the
host keeps the bridge's first address and reaches every node. The budgets are cgroup v1
groups under ``/sys/fs/cgroup/{cpu,memory}/alertflow/<node>``: a CFS quota of ``cores`` times
the period, and a memory limit.

:class:`Nodes` records what it makes in ``<run dir>/nodes.json`` before making it, so that
:meth:`Nodes.remove_all` removes exactly those namespaces, links and groups, and nothing else,
even after a crash. It needs root and iproute2's ``ip``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# The one cgroup (per controller) under which every node's budget sits.
CGROUP_PARENT = "alertflow"
CPU_PERIOD_US = 100_000
# The prefix of every name the nodes take (bridge, namespaces, links, groups); tests use
# another so that they never touch a running stack's nodes.
PREFIX = "af"
# A private /24 that nothing on these machines uses; the host holds .1, the nodes .2 upwards.
DEFAULT_SUBNET = "10.213.77.0/24"
LEDGER = "nodes.json"


class NodeError(RuntimeError):
    """A node could not be made or removed; the message says what and why."""


@dataclass(frozen=True)
class Budget:
    """A node's share of the machine: CPU cores (a CFS quota; fractions allowed) and memory."""

    cpu_cores: float
    memory_mib: int

    def __post_init__(self) -> None:
        if not 0.01 <= self.cpu_cores <= 64:
            raise NodeError(f"cpu_cores must be within 0.01 and 64, not {self.cpu_cores}")
        if self.memory_mib < 16:
            raise NodeError(f"memory_mib must be at least 16, not {self.memory_mib}")

    @property
    def cpu_quota_us(self) -> int:
        return round(self.cpu_cores * CPU_PERIOD_US)


@dataclass(frozen=True)
class Node:
    """One node: its name, namespace, address and budget, as recorded in the ledger."""

    name: str
    index: int
    address: str
    budget: Budget
    prefix: str = PREFIX

    @property
    def netns(self) -> str:
        return f"{self.prefix}-{self.name}"

    @property
    def host_link(self) -> str:
        """The host end of the node's veth pair (interface names are at most 15 characters)."""
        return f"{self.prefix}v{self.index}"

    def cgroup(self, controller: str) -> Path:
        return cgroup_parent(controller, self.prefix) / self.name

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the node's namespace (``ip netns exec`` execs it: same PID)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def join(self) -> None:
        """Move the calling process into the node's budget; its children inherit it. Meant as a
        ``preexec_fn``, run in the child between fork and exec."""
        for controller in ("cpu", "memory"):
            (self.cgroup(controller) / "cgroup.procs").write_text(str(os.getpid()))


def cgroup_parent(controller: str, prefix: str) -> Path:
    """The group under which the nodes of ``prefix`` have theirs."""
    name = CGROUP_PARENT if prefix == PREFIX else f"{CGROUP_PARENT}-{prefix}"
    return CGROUP_ROOT / controller / name


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


def _quiet_ip(*args: str) -> None:
    """An ``ip`` command whose failure means there was nothing to remove."""
    subprocess.run(["ip", *args], capture_output=True, check=False)


def node_problem() -> str | None:
    """Why nodes cannot be made on this machine, or None if they can."""
    if os.geteuid() != 0:
        return "nodes need root (network namespaces and cgroups)"
    if shutil.which("ip") is None:
        return "nodes need iproute2's `ip` (apt-get install iproute2)"
    for controller in ("cpu", "memory"):
        if not (CGROUP_ROOT / controller / "cgroup.procs").exists():
            return f"the cgroup v1 {controller} controller is not mounted at {CGROUP_ROOT}"
    return None


class Nodes:
    """The nodes of one run folder: made, listed and removed through its ledger."""

    def __init__(self, run_dir: Path, subnet: str = DEFAULT_SUBNET, prefix: str = PREFIX):
        self.ledger = run_dir / LEDGER
        self.network = ipaddress.ip_network(subnet)
        self.host_address = str(self.network.network_address + 1)
        self.prefix = prefix
        self.bridge = f"{prefix}br0"

    def _load(self) -> list[Node]:
        if not self.ledger.exists():
            return []
        entries = json.loads(self.ledger.read_text())
        return [
            Node(e["name"], e["index"], e["address"], Budget(**e["budget"]), e["prefix"])
            for e in entries
        ]

    def _save(self, nodes: list[Node]) -> None:
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.ledger.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(n) for n in nodes], indent=2))
        tmp.replace(self.ledger)

    def all(self) -> list[Node]:
        return self._load()

    def get(self, name: str) -> Node | None:
        return next((n for n in self._load() if n.name == name), None)

    def _ensure_bridge(self) -> None:
        if Path(f"/sys/class/net/{self.bridge}").exists():
            return
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host_address}/{self.network.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def ensure(self, name: str, index: int, budget: Budget) -> Node:
        """Node ``name`` at ``index``, made if it does not exist yet (several services share
        a node)."""
        node = self.get(name)
        if node is None:
            return self.add(name, budget, index)
        if node.index != index:
            raise NodeError(f"node {name!r} exists at index {node.index}, not {index}")
        return node

    def add(self, name: str, budget: Budget, index: int | None = None) -> Node:
        """Make node ``name``: its namespace on the bridge and its budget, at ``index`` on the
        bridge (default: the lowest free one). Recorded first, so a failure half-way is still
        removed by :meth:`remove`."""
        problem = node_problem()
        if problem:
            raise NodeError(problem)
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
            raise NodeError(f"node name {name!r} must match [a-z][a-z0-9-]*, at most 31 long")
        nodes = self._load()
        if any(n.name == name for n in nodes):
            raise NodeError(f"node {name!r} exists already")
        taken = {n.index for n in nodes}
        if index is None:
            index = min(set(range(1, len(nodes) + 2)) - taken)
        elif index in taken or not 1 <= index < self.network.num_addresses - 2:
            raise NodeError(f"node {name!r}: index {index} is taken or off {self.network}")
        address = str(self.network.network_address + 1 + index)
        node = Node(name, index, address, budget, self.prefix)
        self._save([*nodes, node])
        try:
            self._ensure_bridge()
            _ip("netns", "add", node.netns)
            veth = ("type", "veth", "peer", "name", "eth0", "netns", node.netns)
            _ip("link", "add", node.host_link, *veth)
            _ip("link", "set", node.host_link, "master", self.bridge, "up")
            cidr = f"{address}/{self.network.prefixlen}"
            _ip("-n", node.netns, "addr", "add", cidr, "dev", "eth0")
            _ip("-n", node.netns, "link", "set", "eth0", "up")
            _ip("-n", node.netns, "link", "set", "lo", "up")
            for controller in ("cpu", "memory"):
                node.cgroup(controller).mkdir(parents=True, exist_ok=True)
            (node.cgroup("cpu") / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (node.cgroup("cpu") / "cpu.cfs_quota_us").write_text(str(budget.cpu_quota_us))
            limit = budget.memory_mib * 1024 * 1024
            (node.cgroup("memory") / "memory.limit_in_bytes").write_text(str(limit))
        except (NodeError, OSError) as err:
            self.remove(name)
            raise NodeError(f"node {name!r}: {err}") from err
        return node

    def remove(self, name: str) -> None:
        """Remove node ``name``: its namespace, its link and its groups. Its processes must be
        stopped first; a group that still holds one is an error, named."""
        nodes = self._load()
        node = next((n for n in nodes if n.name == name), None)
        if node is None:
            return
        _quiet_ip("link", "del", node.host_link)
        _quiet_ip("netns", "del", node.netns)
        busy = []
        for controller in ("cpu", "memory"):
            group = node.cgroup(controller)
            if not group.exists():
                continue
            try:
                group.rmdir()
            except OSError:
                busy.append(str(group))
        if busy:
            raise NodeError(f"node {name!r}: processes are still in {', '.join(busy)}")
        remaining = [n for n in nodes if n.name != name]
        self._save(remaining)
        if not remaining:
            self._remove_shared()

    def _remove_shared(self) -> None:
        """The bridge and the parent groups, once no node is left."""
        _quiet_ip("link", "del", self.bridge)
        for controller in ("cpu", "memory"):
            with suppress(OSError):
                cgroup_parent(controller, self.prefix).rmdir()
        with suppress(FileNotFoundError):
            self.ledger.unlink()

    def remove_all(self) -> list[str]:
        """Remove every recorded node; the names removed."""
        names = [n.name for n in self._load()]
        problems = []
        for name in names:
            try:
                self.remove(name)
            except NodeError as err:
                problems.append(str(err))
        if problems:
            raise NodeError("; ".join(problems))
        return names
