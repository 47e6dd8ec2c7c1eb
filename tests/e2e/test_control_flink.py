"""Jobs and components of the control service on the real stack, over real HTTP.

One module-scoped broker job, submitted through ``POST /api/v1/jobs`` on fresh topics, then:
the jobs endpoints show it running; ``/api/v1/components`` reports each pipeline stage with the
counts of the real alerts (and malformed messages) replayed; ``upgrade`` takes a savepoint and
the new job restores from it without losing a match; ``DELETE`` stops it with a savepoint on
disk. Figures (savepoint and resume times, duplicates) are printed (``pytest -s``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from confluent_kafka.admin import AdminClient
from werkzeug.serving import make_server

from control_service.app import create_app
from control_service.client import ControlClient
from control_service.config import load_config
from flink_deploy.stack.config import StackConfig
from tests.e2e.test_broker_pipeline import fresh_topics_and_filters, pairs_on, produce
from tests.e2e.test_ingest_pipeline import bad_messages, real_messages
from tests.e2e.test_smoke_pipeline import wait_for
from transforms.decode import decode_message
from transforms.filters.model import FilterSet
from transforms.local import match_locally
from transforms.schemas import LsstSchemas

pytestmark = pytest.mark.e2e

DEADLINE_S = 300
ADMIN = {"token": "ops-secret-333", "user": "ops", "role": "admin"}


def expected_pairs(filter_set: FilterSet, messages: list[bytes]) -> set[tuple[str, int]]:
    """(filter, alert_id) pairs the filter set selects among ``messages``, computed here."""
    schemas = LsstSchemas()
    alerts = [a for m in messages for a in decode_message(m, schemas)]
    matches, errors, rejected = match_locally(filter_set, alerts)
    assert not errors and not rejected
    return {(m.filter_name, m.alert.alert_id) for m in matches}


@pytest.fixture(scope="module")
def control(stack: StackConfig, tmp_path_factory) -> Iterator[dict]:
    """Fresh topics with the example filters (v1), and the control service on loopback."""
    run_id, topics, v1 = fresh_topics_and_filters(stack.bootstrap_servers, "ctlflink")
    tmp = tmp_path_factory.mktemp("control")
    config = load_config(
        env={},
        bootstrap_servers=stack.bootstrap_servers,
        config_topic=topics["config"],
        inactive_topic=topics["config"] + ".inactive",
        flink_rest_url=stack.flink_rest_url,
        api_keys=[ADMIN],
        audit_log=tmp / "audit.jsonl",
        savepoint_dir=str(tmp / "savepoints"),
    )
    server = make_server("127.0.0.1", 0, create_app(config), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    job_name = f"ctlflink-{run_id}"
    args = [
        f"--topics={topics['ztf']},{topics['lsst']}",
        f"--config-topic={topics['config']}",
        f"--deadletter-topic={topics['dead']}",
        f"--group-id=ctlflink-{run_id}",
        f"--job-name={job_name}",
        "--parallelism=1",
    ]
    state = {
        "url": f"http://127.0.0.1:{server.server_port}",
        "topics": topics,
        "v1": v1,
        "args": args,
        "job_name": job_name,
        "bootstrap": stack.bootstrap_servers,
        "rest": stack.flink_rest_url,
        "jobs": [],
        "savepoints": tmp / "savepoints",
    }
    try:
        yield state
    finally:
        # Every job of this run, also one an upgrade started before it failed.
        overview = requests.get(f"{stack.flink_rest_url}/jobs/overview", timeout=10).json()
        ours = {j["jid"] for j in overview["jobs"] if j["name"] == job_name}
        for jid in ours | set(state["jobs"]):
            requests.patch(
                f"{stack.flink_rest_url}/jobs/{jid}", params={"mode": "cancel"}, timeout=10
            )
        server.shutdown()
        server.server_close()
        thread.join(10)
        admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
        admin.delete_topics([*topics.values(), *(f.output.topic for f in v1.filters)])


def flink_job(rest: str, jid: str) -> dict:
    return requests.get(f"{rest}/jobs/{jid}", timeout=5).json()


def all_tasks_running(rest: str, jid: str) -> bool:
    job = flink_job(rest, jid)
    return job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"])


def stage_figures(client: ControlClient, jid: str) -> dict[str, tuple]:
    items = client.request("GET", "/api/v1/components", params={"job": jid})["components"]
    return {c["stage"]: (c["elements_in"], c["elements_out"], c["errors"]) for c in items}


def test_submit_components_upgrade_and_stop(control: dict) -> None:
    c = control
    ops = ControlClient(c["url"], ADMIN["token"], timeout_s=600)

    # --- POST /api/v1/jobs, then GET /api/v1/jobs and /api/v1/jobs/<id> -----------------------
    submitted = ops.submit_job(c["args"])
    jid = submitted["id"]
    c["jobs"].append(jid)
    assert submitted["name"] == c["job_name"]
    wait_for(lambda: all_tasks_running(c["rest"], jid), 180, "the submitted job running")
    listed = {j["id"]: j for j in ops.jobs()["jobs"]}
    assert listed[jid]["state"] == "RUNNING" and listed[jid]["name"] == c["job_name"]
    job = ops.request("GET", f"/api/v1/jobs/{jid}")
    assert job["state"] == "RUNNING" and job["vertices"]
    assert all(v["status"] == "RUNNING" and v["parallelism"] == 1 for v in job["vertices"])

    # --- replay real alerts and malformed messages; components count them ---------------------
    good = real_messages()
    bad = bad_messages(good["ztf"][0], good["lsst"][0])
    first = {"ztf": good["ztf"][:200], "lsst": good["lsst"][:72]}
    for survey in ("ztf", "lsst"):
        produce(c["bootstrap"], c["topics"][survey], first[survey] + bad[survey])
    sent = len(first["ztf"]) + len(first["lsst"]) + len(bad["ztf"]) + len(bad["lsst"])
    n_bad = len(bad["ztf"]) + len(bad["lsst"])
    alerts_sent = sum(
        len(decode_message(m, LsstSchemas())) for s in ("ztf", "lsst") for m in first[s]
    )
    expected_first = expected_pairs(c["v1"], first["ztf"] + first["lsst"])

    def counted() -> dict | None:
        figures = stage_figures(ops, jid)
        # Each counter reaches Flink's REST API on its own schedule: wait for all of them.
        done = (
            figures.get("publish", (0, 0))[1] >= len(expected_first)
            and figures.get("decode", (0, 0, 0))[0] >= sent
            and figures["decode"][2] >= n_bad
            and figures.get("deadletters", (0,))[0] >= n_bad
        )
        return figures if done else None

    figures = wait_for(counted, DEADLINE_S, "the stages' counters to reach the replay", 3)
    print("components:", figures)
    assert set(figures) == {
        "ingest",
        "decode",
        "annotate.sky",
        "annotate.crossmatch",
        "annotate.dust",
        "annotate.lightcurve",
        "annotate.tags",
        "filters",
        "publish",
        "deadletters",
    }
    # At least once: after a task restart a stage may count some elements twice.
    assert figures["ingest"][1] >= sent
    assert figures["decode"][0] >= sent and figures["decode"][2] >= n_bad
    assert figures["decode"][1] >= alerts_sent
    assert figures["filters"][0] >= alerts_sent and figures["filters"][1] >= len(expected_first)
    assert figures["publish"][1] >= len(expected_first)
    assert figures["deadletters"][0] >= n_bad
    if figures["decode"][0] == sent:  # no replay inside the job: the counts are exact
        assert figures["decode"] == (sent, alerts_sent, n_bad)
        assert figures["deadletters"][0] == n_bad
    one = ops.request("GET", f"/api/v1/components/{jid}.decode")
    assert one["stage"] == "decode" and one["elements_in"] >= sent and one["state"] == "RUNNING"

    # --- upgrade: savepoint, resubmit, restore; alerts before/around/after lose nothing -------
    middle = {"ztf": good["ztf"][200:300], "lsst": good["lsst"][72:110]}
    last = {"ztf": good["ztf"][300:], "lsst": good["lsst"][110:]}
    producer_done = threading.Event()

    def produce_during() -> None:  # lands while the savepoint is taken or the job restarts
        for survey in ("ztf", "lsst"):
            produce(c["bootstrap"], c["topics"][survey], middle[survey])
        producer_done.set()

    started = time.monotonic()
    threading.Thread(target=produce_during, daemon=True).start()
    upgraded = ops.upgrade_job(jid, c["args"])
    upgrade_s = time.monotonic() - started
    new_jid = upgraded["id"]
    c["jobs"].append(new_jid)
    assert upgraded["previous"] == jid and new_jid != jid
    savepoint = upgraded["savepoint"]
    assert Path(savepoint.removeprefix("file:")).is_dir()
    restored = requests.get(f"{c['rest']}/jobs/{new_jid}/checkpoints", timeout=5).json()
    restored = restored["latest"]["restored"]
    assert restored["is_savepoint"] and restored["external_path"] == savepoint
    assert flink_job(c["rest"], jid)["state"] in ("FINISHED", "CANCELED")
    print(
        f"upgrade: savepoint {upgraded['timings']['savepoint_s']} s, restored "
        f"{upgraded['timings']['total_s']} s after the call ({upgrade_s:.1f} s round trip)"
    )
    assert producer_done.wait(120)
    for survey in ("ztf", "lsst"):
        produce(c["bootstrap"], c["topics"][survey], last[survey])
    everything = [m for part in (first, middle, last) for s in ("ztf", "lsst") for m in part[s]]
    expected = expected_pairs(c["v1"], everything)
    wait_for(
        lambda: pairs_on(c["bootstrap"], c["v1"])[0] >= expected,
        DEADLINE_S,
        "every expected (filter, alert_id) pair after the upgrade",
        interval_s=5,
    )
    got, duplicates, _ = pairs_on(c["bootstrap"], c["v1"])
    print(f"after the upgrade: {len(got)} pairs expected and found, {duplicates} duplicates")
    assert got == expected
    wait_for(lambda: all_tasks_running(c["rest"], new_jid), 120, "the upgraded job running")
    # The new job counts from 0 what it read itself; Flink's REST metrics lag by its fetcher
    # interval (10 s by default).
    new_figures = wait_for(
        lambda: (f := stage_figures(ops, new_jid)).get("decode", (0,))[0] and f,
        90,
        "the upgraded job's decode counter",
    )
    print("components of the upgraded job:", new_figures)

    # --- DELETE: stop with a savepoint ------------------------------------------------------
    stopped = ops.stop_job(new_jid)
    assert stopped["stopped"] and stopped["savepoint"]
    assert Path(stopped["savepoint"].removeprefix("file:")).is_dir()
    assert Path(stopped["savepoint"].removeprefix("file:")).parent == c["savepoints"]
    final = wait_for(
        lambda: (
            flink_job(c["rest"], new_jid)["state"] in ("FINISHED", "CANCELED")
            and flink_job(c["rest"], new_jid)["state"]
        ),
        60,
        "the job stopped",
    )
    print(f"stopped {new_jid}: {final}, savepoint {stopped['savepoint']}")
    assert ops.request("GET", "/api/v1/components", params={"job": new_jid})["components"] == []
