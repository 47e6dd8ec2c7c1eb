"""Catching up: a backlog of real LSST alerts is on the topic before the broker starts, and the
broker drains it all, with no restart, its TaskManager inside its profile's memory, and every
expected (filter, alert_id) pair on its topic. 20,000 alerts (~2.2 GB) is what an outage leaves;
40,000 (~4.4 GB) is the LSST peak visit."""

from __future__ import annotations

import threading

import pytest
import requests
from confluent_kafka.admin import AdminClient

from control_service.snapshots import publish_snapshot
from flink_deploy.sizing import DEFAULT_PROFILE
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import StackConfig
from tests.backlog import (
    backlog_filters,
    catch_all,
    job_restarts,
    preload,
    run_topics,
    start_broker,
    watch_drain,
)
from tests.e2e.test_broker_pipeline import pairs_on

pytestmark = pytest.mark.e2e

DRAIN_DEADLINE_S = 600


class PeakRss:
    """The highest RSS (MiB) of a process group, sampled every second on a thread of its own."""

    def __init__(self, pgid: int) -> None:
        self.pgid, self.peak = pgid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self.peak = max(self.peak, supervisor.rss_mib(self.pgid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


@pytest.mark.parametrize("count", [20_000, 40_000])
def test_broker_drains_a_preloaded_backlog(stack: StackConfig, count: int) -> None:
    topics = run_topics(stack.bootstrap_servers, "backlog", "in", 8)
    run_id = topics["in"].split(".")[1]
    filter_set = backlog_filters(f"backlog.{run_id}")
    publish_snapshot(stack.bootstrap_servers, filter_set, topics["config"])
    backlog = preload(stack.bootstrap_servers, topics["in"], count, filter_set)
    _, jid = start_broker(stack, topics, "in")
    rest = stack.flink_rest_url
    taskmanager = next(
        p for p in supervisor.RunState(stack.run_dir).load() if p.name == "flink-taskmanager-1"
    )
    rss = PeakRss(taskmanager.pid)
    try:
        drain = watch_drain(
            stack.bootstrap_servers, catch_all(filter_set).output.topic, count, DRAIN_DEADLINE_S
        )
        peak = rss.stop()
        restarts = job_restarts(rest, jid)
        print(
            f"{count} alerts drained at {drain.rate:.0f} alerts/s, {drain.duplicates} "
            f"duplicates, {restarts} restarts, TaskManager RSS peak {peak:.0f} MiB"
        )
        assert drain.distinct == count
        assert restarts == 0
        assert 0 < peak <= DEFAULT_PROFILE.memory_mib
        got, _, _ = pairs_on(stack.bootstrap_servers, filter_set)
        assert got == backlog.expected
    finally:
        rss.stop()
        requests.patch(f"{rest}/jobs/{jid}", params={"mode": "cancel"}, timeout=10)
        admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
        admin.delete_topics([*topics.values(), *(f.output.topic for f in filter_set.filters)])
