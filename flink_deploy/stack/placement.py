"""Where each service of the local stack runs: on the host's loopback (the default), or, with
``alertflow stack up --nodes``, on nodes of its own (flink_deploy/nodes.py).

The nodes and their places on the bridge are fixed, so that every process can tell an address
from the stack's settings alone, before the node exists:

| node | services | index (address ``.index + 1``) |
|---|---|---|
| ``kafka`` | Kafka | 1 |
| ``jobmanager`` | the JobManager (and its web UI) | 2 |
| ``control`` | the Beam job server, the control service, the autoscaler | 3 |
| ``tm-<n>`` | TaskManager ``n`` and its own Beam worker pool, at its own ``localhost`` | 10 + n |

The KafkaIO expansion service stays on the host's loopback: only a pipeline's submitter calls
it, and Beam's Python client reaches it only at a loopback address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from flink_deploy.nodes import Budget

TASKMANAGER_INDEX_BASE = 10


class Place(StrEnum):
    """The nodes every stack on nodes has; TaskManagers have one each besides."""

    KAFKA = "kafka"
    JOBMANAGER = "jobmanager"
    CONTROL = "control"


FIXED_INDEX = {Place.KAFKA: 1, Place.JOBMANAGER: 2, Place.CONTROL: 3}


@dataclass(frozen=True)
class NodePlan:
    """A node a service runs on: its name, its index on the bridge, its budget."""

    name: str
    index: int
    budget: Budget


def node_address(subnet: str, index: int) -> str:
    """The address of node ``index`` on ``subnet`` (the host holds the first address)."""
    return str(ipaddress.ip_network(subnet).network_address + 1 + index)


def taskmanager_node(index: int, budget: Budget) -> NodePlan:
    """The node of TaskManager ``index`` (1, 2, ...)."""
    return NodePlan(f"tm-{index}", TASKMANAGER_INDEX_BASE + index, budget)
