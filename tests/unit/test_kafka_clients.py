"""The shared Kafka client settings: librdkafka's log through Python logging, rate-limited, and
the one readiness probe, against a port where nothing listens (a real client, no broker).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from transforms.kafka_clients import (
    KAFKA_LOG,
    RateLimit,
    kafka_config,
    kafka_problem,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(message: str, level: int = logging.ERROR, name: str = "librdkafka") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "%s [%s] %s",
                             ("FAIL", "rdkafka#producer-1", message), None)


REFUSED = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"


@pytest.mark.parametrize(("events", "shown"), [
    # One error every 50 ms for 70 s: the first, then one per 30 s telling what was held back.
    ([(i * 0.05, REFUSED + " (after 0ms in state CONNECT)") for i in range(1400)],
     [f"FAIL [rdkafka#producer-1] {REFUSED} (after 0ms in state CONNECT)",
      f"FAIL [rdkafka#producer-1] {REFUSED} (after 0ms in state CONNECT) "
      "(599 more like it held back in the last 30 s)",
      f"FAIL [rdkafka#producer-1] {REFUSED} (after 0ms in state CONNECT) "
      "(599 more like it held back in the last 30 s)"]),
    # Lines that differ in their numbers only (timings, repeat counts) are of one kind.
    ([(0.0, "x (after 0ms in state CONNECT)"), (1.0, "x (after 3ms in state CONNECT)"),
      (31.0, "x (after 1ms in state CONNECT, 12 identical error(s) suppressed)")],
     ["FAIL [rdkafka#producer-1] x (after 0ms in state CONNECT)",
      "FAIL [rdkafka#producer-1] x (after 1ms in state CONNECT, 12 identical error(s) "
      "suppressed)"]),
    # Other words are another kind, let through at once; none held back: no count.
    ([(0.0, "a"), (1.0, "b"), (2.0, "a"), (40.0, "b")],
     ["FAIL [rdkafka#producer-1] a", "FAIL [rdkafka#producer-1] b",
      "FAIL [rdkafka#producer-1] b"]),
])
def test_rate_limit(events: list[tuple[float, str]], shown: list[str]) -> None:
    clock = Clock()
    limit = RateLimit(30.0, clock=clock)
    passed = []
    for at, message in events:
        clock.now = 100.0 + at
        rec = record(message)
        if limit.filter(rec):
            passed.append(rec.getMessage())
    assert passed == shown


def test_rate_limit_tells_levels_and_loggers_apart_and_forgets_old_kinds() -> None:
    clock = Clock()
    limit = RateLimit(30.0, clock=clock, max_kinds=2)
    assert limit.filter(record("m", logging.ERROR))
    assert limit.filter(record("m", logging.WARNING))
    assert limit.filter(record("m", logging.ERROR, name="other"))  # a third kind: room made
    assert not limit.filter(record("m", logging.ERROR, name="other"))


def test_every_client_config_logs_through_the_rate_limited_logger() -> None:
    config = kafka_config("127.0.0.1:9092", {"acks": "all", "linger.ms": 5})
    assert config == {"bootstrap.servers": "127.0.0.1:9092", "acks": "all", "linger.ms": 5,
                      "logger": KAFKA_LOG}
    assert [type(f) for f in KAFKA_LOG.filters] == [RateLimit]


def test_probe_of_a_closed_port_says_why_and_logs_once_not_on_stderr(
        closed_port: int, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KAFKA_LOG, "filters", [RateLimit()])  # no state from other tests
    bootstrap = f"127.0.0.1:{closed_port}"
    with caplog.at_level(logging.INFO, logger="librdkafka"):
        for _ in range(2):
            assert kafka_problem(bootstrap, timeout_s=0.5) == (
                f"kafka at {bootstrap} does not answer within 0.5 s: "
                "Failed to get metadata: Local: Broker transport failure")
    lines = [r.getMessage() for r in caplog.records if r.name == "librdkafka"]
    # librdkafka retried ~10 times per probe; one line got through, through Python logging.
    assert len(lines) == 1 and "Connection refused" in lines[0], lines
    assert "rdkafka" not in capfd.readouterr().err


class Metadata:
    def __init__(self, topics: dict[str, Any] | None = None, fail: bool = False) -> None:
        self.topics = topics or {}
        self.fail = fail

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        if self.fail:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return SimpleNamespace(topics=self.topics)


@pytest.mark.parametrize(("client", "topics", "problem"), [
    (Metadata({"t": SimpleNamespace(error=None)}), ["t"], None),
    (Metadata({}), [], None),
    (Metadata({"t": SimpleNamespace(error=None)}), ["t", "u", "v"],
     "kafka at k:9092 answers, but has no topic u, v"),
    (Metadata({"t": SimpleNamespace(error="UNKNOWN_TOPIC_OR_PART")}), ["t"],
     "kafka at k:9092 answers, but has no topic t"),
    (Metadata(fail=True), ["t"], "kafka at k:9092 does not answer within 2 s: Local: Timed out"),
])
def test_probe_through_a_client_of_the_caller(client: Metadata, topics: list[str],
                                              problem: str | None) -> None:
    assert kafka_problem("k:9092", topics, client=client) == problem
