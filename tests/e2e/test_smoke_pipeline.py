"""The smoke pipeline on the real stack: Kafka -> KafkaIO on Flink -> Python worker -> Kafka."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from flink_deploy.flink_rest import FlinkRest, FlinkRestError
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import StackConfig
from pipelines import smoke
from transforms.kafka_clients import Topic, ensure_topics
from transforms.polling import wait_until

pytestmark = pytest.mark.e2e

MESSAGES = 200
PARTITIONS = 2
DEADLINE_S = 240


def wait_for(predicate, deadline_s: float, what: str, interval_s: float = 1.0):
    """Poll ``predicate`` until it returns a truthy value; fail naming ``what`` at the deadline."""
    try:
        return wait_until(predicate, deadline_s, interval_s, what)
    except TimeoutError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="module")
def smoke_job(stack: StackConfig) -> Iterator[dict]:
    """Fresh topics, the smoke job submitted on them, and the job cancelled afterwards."""
    run_id = uuid.uuid4().hex[:8]
    topics = {"input": f"smoke.{run_id}.in", "output": f"smoke.{run_id}.out"}
    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    ensure_topics(
        stack.bootstrap_servers, [Topic(t, PARTITIONS) for t in topics.values()], admin=admin
    )
    job = {
        **topics,
        "group": f"smoke-{run_id}",
        "name": f"alertflow-smoke-{run_id}",
        "rest": stack.flink_rest_url,
        "bootstrap": stack.bootstrap_servers,
    }
    smoke.run(
        [
            f"--input={job['input']}",
            f"--output={job['output']}",
            f"--group-id={job['group']}",
            f"--job-name={job['name']}",
            f"--parallelism={PARTITIONS}",
        ]
    )
    try:
        job["jid"] = wait_for(
            lambda: running_job_id(job["rest"], job["name"]),
            120,
            f"job {job['name']} RUNNING in Flink",
        )
        yield job
    finally:
        jid = job.get("jid") or running_job_id(job["rest"], job["name"])
        if jid:
            try:
                FlinkRest(job["rest"], 10).cancel(jid)
            except FlinkRestError as error:
                if error.status is None:  # a job Flink will not cancel is left to the stack
                    raise
        admin.delete_topics(list(topics.values()))


def running_job_id(rest: str, name: str) -> str | None:
    """The id of job ``name`` once it and all its tasks run (a RUNNING job may still wait
    for slots)."""
    jobs = FlinkRest(rest).jobs()
    return next(
        (
            j["jid"]
            for j in jobs
            if j["name"] == name
            and j["state"] == "RUNNING"
            and j["tasks"]["running"] == j["tasks"]["total"]
        ),
        None,
    )


def test_every_message_arrives_transformed(smoke_job: dict) -> None:
    sent = {f"key-{i}".encode(): f"alert {i} from ztf".encode() for i in range(MESSAGES)}
    producer = Producer({"bootstrap.servers": smoke_job["bootstrap"]})
    for key, value in sent.items():
        producer.produce(smoke_job["input"], key=key, value=value)
    assert producer.flush(30) == 0

    received: dict[bytes, dict] = {}
    consumer = Consumer(
        {
            "bootstrap.servers": smoke_job["bootstrap"],
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([smoke_job["output"]])
    try:
        end = time.monotonic() + DEADLINE_S
        while len(received) < MESSAGES and time.monotonic() < end:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                received[msg.key()] = json.loads(msg.value())
    finally:
        consumer.close()

    assert set(received) == set(sent), f"missing keys: {sorted(set(sent) - set(received))[:10]}"
    for key, value in sent.items():
        assert received[key]["input"] == value.decode()
        assert received[key]["output"] == value.decode().upper()
    # The Python step ran in SDK workers that the worker pool forked, not in this process.
    pool = next(p for p in supervisor.RunState(_run_dir()).load() if p.name == "beam-workerpool")
    worker_pids = {v["worker_pid"] for v in received.values()}
    assert os.getpid() not in worker_pids
    assert all(supervisor.group_members(pool.pid).__contains__(pid) for pid in worker_pids)


def test_job_runs_on_flink_with_named_steps_and_commits_offsets(smoke_job: dict) -> None:
    flink = FlinkRest(smoke_job["rest"])
    detail = flink.job(smoke_job["jid"])
    assert detail["state"] == "RUNNING"
    names = " ".join(v["name"] for v in detail["vertices"])
    for step in ("ReadSmokeInput", "ShoutInPython", "WriteSmokeOutput"):
        assert step in names, f"{step} not among Flink vertices: {names}"

    config = flink.checkpoint_config(smoke_job["jid"])
    assert config["interval"] == 5000

    producer = Producer({"bootstrap.servers": smoke_job["bootstrap"]})
    for i in range(50):
        producer.produce(smoke_job["input"], key=f"k{i}".encode(), value=b"x")
    assert producer.flush(30) == 0

    consumer = Consumer(
        {"bootstrap.servers": smoke_job["bootstrap"], "group.id": smoke_job["group"]}
    )
    partitions = [TopicPartition(smoke_job["input"], p) for p in range(PARTITIONS)]
    ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
    assert sum(ends) >= 50  # these 50 plus whatever earlier tests sent

    def committed_at_end() -> bool:
        committed = consumer.committed(partitions, timeout=10)
        return [tp.offset for tp in committed] == ends

    try:
        wait_for(committed_at_end, DEADLINE_S, "offsets committed on checkpoint to reach the end")
    finally:
        consumer.close()
    counts = flink.checkpoints(smoke_job["jid"])
    assert counts["counts"]["completed"] >= 1


def _run_dir() -> Path:
    return StackConfig.from_env().run_dir
