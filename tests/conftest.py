"""Fixtures shared by the test layers.

``stack`` is the real local stack (Kafka, Flink, the Beam services), started once per test
session with `alertflow stack up` semantics and stopped at the end, where the teardown also
checks that no process of ours is left. If a healthy stack is already running from the run
folder (a developer's `make run`), the tests use it and leave it running.

``closed_port`` is a loopback port where nothing listens, for a Kafka (or Flink) that is down.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from flink_deploy.stack import supervisor
from flink_deploy.stack.config import HOST, StackConfig


@pytest.fixture(scope="session")
def stack() -> Iterator[StackConfig]:
    cfg = StackConfig.from_env()
    if supervisor.status(cfg)["healthy"]:
        yield cfg
        return
    started = supervisor.up(cfg)
    try:
        yield cfg
    finally:
        left = supervisor.down(cfg)
        strays = [p for p in started if supervisor.group_members(p.pid)]
        assert not left and not strays, f"left running after down: {left} {strays}"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound but never listening, and held for the
    test, so nothing else can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        yield sock.getsockname()[1]
