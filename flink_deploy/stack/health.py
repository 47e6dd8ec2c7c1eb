"""Health checks of the stack's services: each returns a ``check() -> bool`` that the supervisor
polls until a service is up (``wait_healthy``) and that ``status`` reports.

Also the one readiness wait that is not a yes/no check: a new Kafka broker must hand out
producer ids before the services' idempotent producers start (:func:`wait_for_producer_ids`).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from flink_deploy.flink_rest import FlinkRest, FlinkRestError
from flink_deploy.stack.config import HOST, StackConfig, StackError
from transforms.kafka_clients import kafka_config, kafka_problem

#: Seconds a health check waits for an answer.
HEALTH_TIMEOUT_S = 2.0


def port_in_use(port: int, host: str = HOST) -> bool:
    """True if something accepts TCP connections on ``port`` of ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_json(url: str, timeout: float = HEALTH_TIMEOUT_S) -> dict[str, Any] | list[Any] | None:
    """GET ``url`` and decode its JSON body, or None if it does not answer with 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read()) if resp.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def port_open(port: int, host: str = HOST) -> Callable[[], bool]:
    return lambda: port_in_use(port, host)


def kafka_healthy(bootstrap: str) -> Callable[[], bool]:
    """The broker listens and answers a metadata request (the services' readiness probe)."""

    def check() -> bool:
        host, _, port = bootstrap.rpartition(":")
        return port_in_use(int(port), host) and kafka_problem(bootstrap) is None

    return check


def control_healthy(url: str) -> Callable[[], bool]:
    """The common control API's liveness: ``/health`` answers."""
    return lambda: http_json(f"{url}/health") is not None


def flink_jobmanager_healthy(rest_url: str) -> Callable[[], bool]:
    return FlinkRest(rest_url, HEALTH_TIMEOUT_S).healthy


def flink_taskmanager_healthy(rest_url: str, resource_id: str) -> Callable[[], bool]:
    """The TaskManager ``resource_id`` is registered with the JobManager."""
    flink = FlinkRest(rest_url, HEALTH_TIMEOUT_S)

    def check() -> bool:
        try:
            return any(tm.get("id") == resource_id for tm in flink.taskmanagers())
        except FlinkRestError:
            return False

    return check


def wait_for_producer_ids(cfg: StackConfig, timeout_s: float = 60.0) -> None:
    """Wait until the new broker hands out producer ids. Until then every idempotent producer
    logs "Failed to acquire idempotence PID ... Coordinator load in progress" and retries, so
    this waits first: a transactional producer's ``init_transactions`` returns once the
    coordinator is loaded. It writes no message."""
    from confluent_kafka import KafkaException, Producer

    deadline = time.monotonic() + timeout_s
    while True:
        # Quiet: its retries are the very lines this wait is for.
        probe = Producer(
            kafka_config(
                cfg.bootstrap_servers, {"log_level": 0, "transactional.id": "alertflow-stack-probe"}
            )
        )
        try:
            probe.init_transactions(min(10.0, max(deadline - time.monotonic(), 1.0)))
            return
        except KafkaException as err:
            if time.monotonic() > deadline:
                raise StackError(f"kafka: no producer ids after {timeout_s:.0f} s: {err}") from err
        finally:
            probe.flush(0)
