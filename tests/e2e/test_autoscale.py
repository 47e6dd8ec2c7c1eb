"""Reactive scaling on the real stack: the broker as an application cluster, the autoscaler over
real HTTP with the local driver, a burst of real alerts, and nothing lost through either rescale.

The stack of this module runs in application mode in a run folder and on ports of its own
(``PORT_OFFSET`` above the defaults), so it never meets the session stack of the other e2e
tests; it is stopped at the end of the module, and the teardown checks that nothing is left.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from confluent_kafka import Producer
from werkzeug.serving import make_server

from control_service.replay_messages import cycled_messages, load_messages
from control_service.snapshots import publish_snapshot
from flink_deploy.autoscaler.local import LocalDriver
from flink_deploy.autoscaler.observe import Observer
from flink_deploy.autoscaler.policy import load_policy
from flink_deploy.autoscaler.service import AutoscalerConfig, create_app
from flink_deploy.settings import REPO_ROOT
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import APPLICATION_JOB_ID, StackConfig, StackMode
from tests.datapaths import shared_data
from tests.e2e.test_broker_pipeline import pairs_on
from tests.e2e.test_smoke_pipeline import wait_for
from transforms.alert_model import Survey
from transforms.decode import decode_message
from transforms.filters.document import load_filter_file
from transforms.filters.model import FilterSet
from transforms.local import match_locally
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas
from transforms.topics import ALERT_TOPICS

pytestmark = pytest.mark.e2e

PORT_OFFSET = 400
BURST = 9000  # alerts: about half a minute of work for one TaskManager on this machine
TRICKLE_RATE = 40  # alerts/s sent while the cluster scales back down

# Quick to act, so the test is short: two observations 2 s apart agree before each action.
POLICY = """\
interval_s: 2
min_taskmanagers: 1
max_taskmanagers: 2
sustain: 2
cooldown_up_s: 10
cooldown_down_s: 20
profiles:
  small: {slots: 2, process_memory: 3072m}
scale_up:
  lag_above: 2000
  profile: small
scale_down:
  lag_below: 200
  remove: newest
"""


@pytest.fixture(scope="module")
def app_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    cfg = StackConfig.from_env(taskmanagers=1, mode=StackMode.APPLICATION)
    cfg = cfg.moved(tmp_path_factory.mktemp("app-stack"), PORT_OFFSET)
    started = supervisor.up(cfg)
    try:
        yield cfg
    finally:
        left = supervisor.down(cfg)
        everything = [*started, *supervisor.RunState(cfg.run_dir).load()]
        strays = [p for p in everything if supervisor.group_members(p.pid)]
        assert not left and not strays, f"left running after down: {left} {strays}"


def job_parallelism(rest: str) -> int:
    """The broker's parallelism once every task runs; 0 while it (re)starts."""
    job = requests.get(f"{rest}/jobs/{APPLICATION_JOB_ID}", timeout=5).json()
    vertices = job.get("vertices", [])
    if job.get("state") != "RUNNING" or any(v["status"] != "RUNNING" for v in vertices):
        return 0
    return max((v["parallelism"] for v in vertices), default=0)


def lsst_and_ztf_messages() -> list:
    data = shared_data()
    files = [
        *sorted((data / "ztf" / "alerts").glob("*/*.avro")),
        *sorted((data / "lsst" / "alerts").glob("*.avro")),
    ]
    return load_messages(files, LsstSchemas(DEFAULT_LSST_SCHEMA_DIR))


class Sender:
    """Sends cycled real alerts (fresh ids after the first pass) to the survey topics and keeps
    every alert it sent, for the expected matches."""

    def __init__(self, bootstrap: str) -> None:
        self.schemas = LsstSchemas(DEFAULT_LSST_SCHEMA_DIR)
        self.templates = lsst_and_ztf_messages()
        self.values = cycled_messages(self.templates, 10**9, self.schemas)
        self.index = itertools.count()
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 20, "message.max.bytes": 8 * 1024 * 1024}
        )
        self.sent: list[bytes] = []

    def send(self, count: int) -> None:
        topics = {Survey.ZTF: ALERT_TOPICS[0], Survey.LSST: ALERT_TOPICS[1]}
        for value in itertools.islice(self.values, count):
            survey = self.templates[next(self.index) % len(self.templates)].survey
            self.producer.produce(topics[survey], value=value)
            self.producer.poll(0)
            self.sent.append(value)
        assert self.producer.flush(60) == 0

    def expected_pairs(self, filter_set: FilterSet) -> set[tuple[str, int]]:
        alerts = [a for v in self.sent for a in decode_message(v, self.schemas)]
        return {(m.filter_name, m.alert.alert_id) for m in match_locally(filter_set, alerts)[0]}


def test_burst_scales_up_drains_scales_down_and_loses_nothing(
    app_stack: StackConfig,
) -> None:
    cfg, rest = app_stack, app_stack.flink_rest_url
    filters = tuple(
        f
        for p in sorted((REPO_ROOT / "examples" / "filters").glob("*.yaml"))
        for f in load_filter_file(str(p))
    )
    filter_set = FilterSet(1, filters)
    publish_snapshot(cfg.bootstrap_servers, filter_set)
    assert wait_for(lambda: job_parallelism(rest), 240, "the broker running") == 2

    observer = Observer(cfg.bootstrap_servers, "alertflow-broker", ALERT_TOPICS, rest)
    config = AutoscalerConfig(bootstrap_servers=cfg.bootstrap_servers, flink_rest_url=rest)
    app = create_app(load_policy(POLICY), observer, LocalDriver(cfg), config, start_loop=True)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scaling_url = f"http://127.0.0.1:{server.server_port}/api/v1/scaling"

    def decided(action: str) -> dict | None:
        body = requests.get(scaling_url, params={"limit": 500}, timeout=5).json()
        return next((d for d in body["decisions"] if d["action"] == action), None)

    sender = Sender(cfg.bootstrap_servers)
    try:
        t0 = time.monotonic()
        sender.send(BURST)
        up = wait_for(lambda: decided("up"), 120, "a scale-up decision")
        print(f"scale up decided {time.monotonic() - t0:.0f} s after the burst: {up['reason']}")
        assert up["observation"]["lag_total"] > 2000
        wait_for(lambda: job_parallelism(rest) == 4, 180, "the job at parallelism 4")
        print(f"parallelism 4 after {time.monotonic() - t0:.0f} s")
        assert len(LocalDriver(cfg).taskmanagers()) == 2

        # While the lag drains and the cluster scales back down, alerts keep coming.
        stop_trickle = threading.Event()

        def trickle() -> None:
            while not stop_trickle.wait(1.0):
                sender.send(TRICKLE_RATE)

        trickler = threading.Thread(target=trickle)
        trickler.start()
        try:
            down = wait_for(lambda: decided("down"), 300, "a scale-down decision", 2)
            print(
                f"scale down decided {time.monotonic() - t0:.0f} s after the burst: "
                f"{down['reason']}"
            )
            wait_for(lambda: job_parallelism(rest) == 2, 180, "the job back at parallelism 2")
            # Let some alerts arrive at the scaled-down job too.
            time.sleep(5)
        finally:
            stop_trickle.set()
            trickler.join()
        assert [tm.name for tm in LocalDriver(cfg).taskmanagers()] == ["flink-taskmanager-1"]

        expected = sender.expected_pairs(filter_set)
        wait_for(
            lambda: pairs_on(cfg.bootstrap_servers, filter_set)[0] >= expected,
            300,
            "every expected (filter, alert_id) pair",
            interval_s=5,
        )
        got, duplicates, _ = pairs_on(cfg.bootstrap_servers, filter_set)
        print(
            f"{len(sender.sent)} alerts sent, {len(expected)} pairs expected, all present, "
            f"{duplicates} duplicates"
        )
        assert got == expected
        checkpoints = requests.get(f"{rest}/jobs/{APPLICATION_JOB_ID}/checkpoints", timeout=5)
        assert checkpoints.json()["counts"]["restored"] >= 2  # one per rescale
    finally:
        server.shutdown()
        app.extensions["alertflow.scaling"].stop()
