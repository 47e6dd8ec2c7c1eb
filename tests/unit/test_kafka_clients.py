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
    Topic,
    ensure_topics,
    kafka_config,
    kafka_problem,
    wait_ready,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(message: str, level: int = logging.ERROR, name: str = "librdkafka") -> logging.LogRecord:
    return logging.LogRecord(
        name, level, __file__, 1, "%s [%s] %s", ("FAIL", "rdkafka#producer-1", message), None
    )


REFUSED = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"


@pytest.mark.parametrize(
    ("events", "shown"),
    [
        # One error every 50 ms for 70 s: the first, then one per 30 s telling what was held back.
        (
            [(i * 0.05, REFUSED + " (after 0ms in state CONNECT)") for i in range(1400)],
            [
                f"FAIL [rdkafka#producer-1] {REFUSED} (after 0ms in state CONNECT)",
                f"FAIL [rdkafka#producer-1] {REFUSED} (after 0ms in state CONNECT) "
                "(599 more like it held back in the last 30 s)",
                f"FAIL [rdkafka#producer-1] {REFUSED} (after 0ms in state CONNECT) "
                "(599 more like it held back in the last 30 s)",
            ],
        ),
        # Lines that differ in their numbers only (timings, repeat counts) are of one kind.
        (
            [
                (0.0, "x (after 0ms in state CONNECT)"),
                (1.0, "x (after 3ms in state CONNECT)"),
                (31.0, "x (after 1ms in state CONNECT, 12 identical error(s) suppressed)"),
            ],
            [
                "FAIL [rdkafka#producer-1] x (after 0ms in state CONNECT)",
                "FAIL [rdkafka#producer-1] x (after 1ms in state CONNECT, 12 identical error(s) "
                "suppressed)",
            ],
        ),
        # Other words are another kind, let through at once; none held back: no count.
        (
            [(0.0, "a"), (1.0, "b"), (2.0, "a"), (40.0, "b")],
            [
                "FAIL [rdkafka#producer-1] a",
                "FAIL [rdkafka#producer-1] b",
                "FAIL [rdkafka#producer-1] b",
            ],
        ),
    ],
)
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
    assert config == {
        "bootstrap.servers": "127.0.0.1:9092",
        "acks": "all",
        "linger.ms": 5,
        "logger": KAFKA_LOG,
    }
    assert [type(f) for f in KAFKA_LOG.filters] == [RateLimit]


def test_probe_of_a_closed_port_says_why_and_logs_once_not_on_stderr(
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(KAFKA_LOG, "filters", [RateLimit()])  # no state from other tests
    bootstrap = f"127.0.0.1:{closed_port}"
    with caplog.at_level(logging.INFO, logger="librdkafka"):
        for _ in range(2):
            assert kafka_problem(bootstrap, timeout_s=0.5) == (
                f"kafka at {bootstrap} does not answer within 0.5 s: "
                "Failed to get metadata: Local: Broker transport failure"
            )
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


@pytest.mark.parametrize(
    ("client", "topics", "problem"),
    [
        (Metadata({"t": SimpleNamespace(error=None)}), ["t"], None),
        (Metadata({}), [], None),
        (
            Metadata({"t": SimpleNamespace(error=None)}),
            ["t", "u", "v"],
            "kafka at k:9092 answers, but has no topic u, v",
        ),
        (
            Metadata({"t": SimpleNamespace(error="UNKNOWN_TOPIC_OR_PART")}),
            ["t"],
            "kafka at k:9092 answers, but has no topic t",
        ),
        (
            Metadata(fail=True),
            ["t"],
            "kafka at k:9092 does not answer within 2 s: Local: Timed out",
        ),
    ],
)
def test_probe_through_a_client_of_the_caller(
    client: Metadata, topics: list[str], problem: str | None
) -> None:
    assert kafka_problem("k:9092", topics, client=client) == problem


class Future:
    def __init__(self, error: KafkaError | None) -> None:
        self.error = error

    def result(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise KafkaException(self.error)


class Admin:
    """Has topic ``old``; creating a topic answers with the error ``errors`` names for it (None:
    created). A created topic's partitions have no leader in the first ``leaderless`` answers."""

    def __init__(self, errors: dict[str, KafkaError | None], leaderless: int = 0) -> None:
        self.errors = errors
        self.leaderless = leaderless
        self.topics = {"old": 1}
        self.asked: list[list[tuple[str, int, dict[str, str]]]] = []

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        leader = -1 if self.leaderless > 0 else 0
        self.leaderless -= 1
        parts = {
            n: {p: SimpleNamespace(leader=leader if n != "old" else 0) for p in range(count)}
            for n, count in self.topics.items()
        }
        return SimpleNamespace(
            topics={n: SimpleNamespace(error=None, partitions=p) for n, p in parts.items()}
        )

    def create_topics(self, new_topics: list[Any], **kwargs: Any) -> dict[str, Future]:
        self.asked.append([(t.topic, t.num_partitions, t.config) for t in new_topics])
        for t in new_topics:
            self.topics[t.topic] = t.num_partitions
        return {t.topic: Future(self.errors.get(t.topic)) for t in new_topics}


def test_ensure_topics_creates_the_missing_ones() -> None:
    # "b" was created by another client at the same time: it is there, not created here.
    admin = Admin(
        {"b": KafkaError(KafkaError.TOPIC_ALREADY_EXISTS, "Topic 'b' already exists")}, leaderless=2
    )
    created = ensure_topics(
        "k:9092",
        [Topic("old"), Topic("a", 4), Topic("b", 1, {"x": "y"})],
        admin=admin,
        timeout_s=5,
        wait_for_leaders=True,
    )
    assert created == ["a"]
    assert admin.asked == [[("a", 4, {}), ("b", 1, {"x": "y"})]]
    assert admin.leaderless < 0  # it waited for the leaders


def test_ensure_topics_raises_any_other_failure() -> None:
    # The code decides, not the text: an error that only says "already exists" is raised.
    admin = Admin({"a": KafkaError(KafkaError.POLICY_VIOLATION, "already exists")})
    with pytest.raises(KafkaException) as raised:
        ensure_topics("k:9092", [Topic("a")], admin=admin, timeout_s=5)
    assert raised.value.args[0].code() == KafkaError.POLICY_VIOLATION


def test_ensure_topics_says_when_no_leader_comes() -> None:
    admin = Admin({}, leaderless=10**6)
    with pytest.raises(TimeoutError, match="a: created, but a partition has no leader after"):
        ensure_topics("k:9092", [Topic("a")], admin=admin, timeout_s=0.3, wait_for_leaders=True)


def test_wait_ready_gives_up_with_the_reason(closed_port: int) -> None:
    with pytest.raises(
        TimeoutError, match=f"kafka at 127.0.0.1:{closed_port} does not answer: .* \\(waited 1 s\\)"
    ):
        wait_ready(f"127.0.0.1:{closed_port}", 1.0)
