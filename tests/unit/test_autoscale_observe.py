"""The Observer's arithmetic and failure reporting, with Kafka and Flink answers from tables.

The Observer was also run against the real stack (Kafka + Flink + the broker job); these
tests pin what it computes from those answers.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from flink_deploy.autoscaler.observe import Observer, checkpointed_since_restore

FLINK = "http://flink:8081"
JOB = "j1"


class Consumer:
    """Two topics: a with 2 partitions, b with 1. ``committed``: {(topic, p): offset}."""

    def __init__(
        self,
        committed: dict[tuple[str, int], int],
        high: dict[tuple[str, int], int],
        fail: bool = False,
    ) -> None:
        self.committed_offsets = committed
        self.high = high
        self.fail = fail
        self.closed = False

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        if self.fail:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        meta = {"a": {0: None, 1: None}, "b": {0: None}}
        return SimpleNamespace(
            topics={t: SimpleNamespace(error=None, partitions=p) for t, p in meta.items()}
        )

    def committed(self, partitions: list[TopicPartition], timeout: float | None = None) -> list:
        return [
            TopicPartition(
                tp.topic, tp.partition, self.committed_offsets.get((tp.topic, tp.partition), -1001)
            )
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float | None = None, cached: bool = False
    ) -> tuple[int, int]:
        return 10, self.high[(tp.topic, tp.partition)]

    def close(self) -> None:
        self.closed = True


def answer(body: Any, status: int = 200) -> requests.Response:
    out = requests.Response()
    out.status_code = status
    out._content = json.dumps(body).encode()
    return out


class Session:
    def __init__(self, answers: dict[str, requests.Response | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, Any]] = []

    def request(
        self, method: str, url: str, params: Any = None, timeout: float = 0
    ) -> requests.Response:
        assert method == "GET"
        self.calls.append((url.removeprefix(FLINK), params))
        found = self.answers.get(url.removeprefix(FLINK))
        if isinstance(found, Exception):
            raise found
        if found is None:
            return answer({"errors": ["Not found"]}, 404)
        return found


def flink(state: str = "RUNNING") -> dict[str, requests.Response | Exception]:
    metrics = "/jobs/j1/vertices/{}/subtasks/metrics"
    return {
        "/jobs/overview": answer(
            {
                "jobs": [
                    {"jid": "old", "state": "CANCELED", "start-time": 5},
                    {
                        "jid": JOB,
                        "state": state,
                        "start-time": 10,
                        "tasks": {"running": 2 if state == "RUNNING" else 0, "total": 2},
                    },
                ]
            }
        ),
        "/jobs/j1": answer(
            {"vertices": [{"id": "v1", "parallelism": 2}, {"id": "v2", "parallelism": 4}]}
        ),
        metrics.format("v1"): answer(
            [
                {"id": "busyTimeMsPerSecond", "max": "NaN"},
                {"id": "backPressuredTimeMsPerSecond", "max": 12.0},
            ]
        ),
        metrics.format("v2"): answer(
            [
                {"id": "busyTimeMsPerSecond", "max": 640.5},
                {"id": "backPressuredTimeMsPerSecond", "max": 3.0},
            ]
        ),
        "/overview": answer({"taskmanagers": 2, "slots-total": 4, "slots-available": 0}),
        "/jobs/j1/checkpoints": answer(checkpoints(restored_at=1_000, completed_at=6_000)),
    }


def checkpoints(restored_at: int | None, completed_at: int | None) -> dict[str, Any]:
    """Flink's checkpoint statistics, trimmed to what the Observer reads (ms timestamps)."""
    completed = (
        None
        if completed_at is None
        else {
            "@class": "completed",
            "id": 8,
            "status": "COMPLETED",
            "is_savepoint": False,
            "trigger_timestamp": completed_at,
            "latest_ack_timestamp": completed_at + 300,
        }
    )
    restored = (
        None
        if restored_at is None
        else {
            "id": 7,
            "restore_timestamp": restored_at,
            "is_savepoint": False,
            "external_path": "file:/tmp/chk-7",
        }
    )
    return {
        "counts": {"restored": 0 if restored is None else 1, "completed": 8},
        "latest": {"completed": completed, "savepoint": None, "failed": None, "restored": restored},
    }


def observer(consumer: Consumer, session: Session, times: list[float]) -> Observer:
    return Observer(
        "kafka:9092",
        "g",
        ["a", "b"],
        FLINK,
        session=session,  # type: ignore
        consumer_factory=lambda _b, _g: consumer,
        clock=lambda: times.pop(0),
    )


def test_lag_rates_and_flink_metrics() -> None:
    consumer = Consumer({("a", 0): 50, ("a", 1): 80}, {("a", 0): 100, ("a", 1): 100, ("b", 0): 30})
    session = Session(flink())
    obs = observer(consumer, session, [100.0, 102.0])
    first = obs.observe()
    # b/0 has no committed offset: it counts from its low watermark, 10
    assert (first.lag_total, dict(first.lag_by_topic)) == (90, {"a": 70, "b": 20})
    assert first.records_in_per_s is None and first.records_out_per_s is None
    assert (first.job_id, first.job_state, first.parallelism) == (JOB, "RUNNING", 4)
    assert (first.busy_max_ms_per_s, first.backpressure_max_ms_per_s) == (640.5, 12.0)
    assert (first.taskmanagers, first.slots_total, first.slots_available) == (2, 4, 0)
    assert (first.tasks_running, first.tasks_total) == (2, 2)
    assert first.errors == () and first.job_running
    assert first.checkpointed_since_restore is True  # restored at 1 s, checkpointed at 6 s
    assert (
        "/jobs/j1/vertices/v1/subtasks/metrics",
        {"get": "busyTimeMsPerSecond,backPressuredTimeMsPerSecond", "agg": "max"},
    ) in session.calls
    consumer.high[("a", 0)] = 140  # 40 more records in
    consumer.committed_offsets[("a", 1)] = 100  # 20 more committed
    second = obs.observe()
    assert (second.records_in_per_s, second.records_out_per_s) == (20.0, 10.0)
    assert second.lag_total == 90 + 40 - 20


def test_restarting_job_is_reported_not_raised() -> None:
    obs = observer(
        Consumer({}, {("a", 0): 10, ("a", 1): 10, ("b", 0): 10}),
        Session(flink("RESTARTING")),
        [1.0],
    )
    seen = obs.observe()
    assert (seen.job_id, seen.job_state, seen.parallelism) == (JOB, "RESTARTING", 0)
    assert seen.busy_max_ms_per_s is None and not seen.job_running and seen.errors == ()
    assert seen.lag_total == 0


def test_failures_are_in_errors() -> None:
    consumer = Consumer({}, {}, fail=True)
    answers = flink()
    answers["/jobs/overview"] = requests.ConnectionError("refused")
    answers["/overview"] = answer({"errors": ["boom"]}, 500)
    obs = observer(consumer, Session(answers), [1.0])
    seen = obs.observe()
    assert seen.lag_total is None and seen.taskmanagers is None and seen.parallelism == 0
    assert [e.split(":")[0] for e in seen.errors] == ["kafka", "flink job", "flink cluster"]
    assert seen.errors[1] == (
        "flink job: the Flink REST API at http://flink:8081 does not "
        "answer GET /jobs/overview (ConnectionError: refused)"
    )
    assert seen.errors[2] == (
        "flink cluster: Flink at http://flink:8081 answered 500 to GET /overview"
    )
    assert consumer.closed  # a failed consumer is dropped and made again next time
    assert obs.kafka_problem() == (
        "kafka at kafka:9092 does not answer within 2 s: Local: Broker transport failure"
    )
    assert obs.flink_problem() == "Flink at http://flink:8081 answered 500 to GET /overview"


@pytest.mark.parametrize(
    ("body", "fresh"),
    [
        (checkpoints(restored_at=None, completed_at=None), True),  # never restored
        (checkpoints(restored_at=None, completed_at=5_000), True),
        (checkpoints(restored_at=10_000, completed_at=None), False),  # restored, none since
        # the checkpoint restored from is still the latest completed: triggered before it
        (checkpoints(restored_at=10_000, completed_at=4_000), False),
        (checkpoints(restored_at=10_000, completed_at=10_000), False),
        (checkpoints(restored_at=10_000, completed_at=15_000), True),  # one completed since
    ],
)
def test_checkpointed_since_restore(body: dict[str, Any], fresh: bool) -> None:
    assert checkpointed_since_restore(body) is fresh


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"counts": {}}, "no 'latest' in the checkpoint statistics"),
        (
            {"latest": {"restored": {"id": 7}, "completed": None}},
            "latest.restored has no restore_timestamp",
        ),
        (
            {"latest": {"restored": {"restore_timestamp": 10}, "completed": {"id": 8}}},
            "latest.completed has no trigger_timestamp",
        ),
    ],
)
def test_unreadable_checkpoint_statistics(body: dict[str, Any], error: str) -> None:
    with pytest.raises(LookupError, match=error):
        checkpointed_since_restore(body)


@pytest.mark.parametrize(
    ("state", "answer_", "fresh", "errors"),
    [
        ("RUNNING", answer(checkpoints(restored_at=10_000, completed_at=None)), False, ()),
        ("RUNNING", answer(checkpoints(restored_at=10_000, completed_at=15_000)), True, ()),
        (
            "RUNNING",
            answer({"errors": ["boom"]}, 500),
            None,
            (
                "flink checkpoints: Flink at http://flink:8081 answered 500 to "
                "GET /jobs/j1/checkpoints",
            ),
        ),
        (
            "RUNNING",
            requests.ConnectionError("refused"),
            None,
            (
                "flink checkpoints: the Flink REST API at http://flink:8081 does not answer "
                "GET /jobs/j1/checkpoints (ConnectionError: refused)",
            ),
        ),
        ("RESTARTING", answer(checkpoints(restored_at=10_000, completed_at=None)), None, ()),
    ],
)
def test_observation_says_whether_the_lag_is_fresh(
    state: str, answer_: requests.Response | Exception, fresh: bool | None, errors: tuple[str, ...]
) -> None:
    answers = flink(state)
    answers["/jobs/j1/checkpoints"] = answer_
    session = Session(answers)
    consumer = Consumer({}, {("a", 0): 10, ("a", 1): 10, ("b", 0): 10})
    seen = observer(consumer, session, [1.0]).observe()
    assert seen.checkpointed_since_restore is fresh
    assert seen.errors == errors
    assert seen.to_dict()["checkpointed_since_restore"] is fresh
    # only a RUNNING job's checkpoints are asked for
    assert (("/jobs/j1/checkpoints", None) in session.calls) == (state == "RUNNING")
    if state == "RUNNING":  # the job's other fields do not depend on the checkpoints
        assert (seen.job_state, seen.parallelism, seen.lag_total) == ("RUNNING", 4, 0)
