"""``/api/v1/jobs`` and ``/api/v1/components`` against a Flink REST stand-in with Flink's JSON
shapes,
plus the real Flink when the local stack is up (skipped otherwise).

The stand-in's vertex name and metric ids are copied from a broker job on Flink 1.19 / Beam 2.62
(tests/e2e/test_control_flink.py checks the same API on the real stack)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_deploy.flink_rest import FlinkRest, FlinkRestError
from flink_deploy.stack.config import HOST
from tests.control_support import ALICE, OPS, Logs, error_of, make_app

JOB = "a" * 32
VERTEX = "b" * 32


OPERATOR = "[10]{ToKafkaRecord__DecodeAlerts__AnnotateAlerts__AllDeadLetters__DeadLetterToMe"
SOURCE = "Source__ReadAlerts/KafkaIO_Read/KafkaIO_Read_ReadFromKafkaViaUnbounded/Read(Kafk"
DEAD_WRITER = "[2]PublishDeadLetters/{Kafka_ProducerRecord__KafkaIO_WriteRecords}"
VERTEX_NAME = (
    "Source: ReadAlerts/KafkaIO.Read/KafkaIO.Read.ReadFromKafkaViaUnbounded/Read(KafkaUnbounded"
    "Source) -> Flat Map -> Map -> [10]{ToKafkaRecord, DecodeAlerts, AnnotateAlerts, "
    "AllDeadLetters, DeadLetterToMessage, ApplyFilters, PublishMatches, FilterErrorToMessage} -> "
    "([2]PublishFilterErrors/{Kafka ProducerRecord, KafkaIO.WriteRecords}, "
    "[2]PublishDeadLetters/{Kafka ProducerRecord, KafkaIO.WriteRecords})"
)
#: Sums over the two subtasks, by metric name without the subtask prefix.
SUMS = {
    f"{SOURCE}.numRecordsOut": 529.0,
    f"{OPERATOR}.numRecordsIn": 529.0,
    f"{OPERATOR}.DecodeAlerts_messages": 529.0,
    f"{OPERATOR}.DecodeAlerts_alerts_decoded": 523.0,
    f"{OPERATOR}.DecodeAlerts_dead_letters_schema": 2.0,
    f"{OPERATOR}.DecodeAlerts_dead_letters_framing": 4.0,
    f"{OPERATOR}.AnnotateAlerts_alerts_in_sky": 523.0,
    f"{OPERATOR}.AnnotateAlerts_dead_letters_annotate_sky": 1.0,
    f"{OPERATOR}.AnnotateAlerts_alerts_annotated": 522.0,
    f"{OPERATOR}.ApplyFilters_alerts_in": 522.0,
    f"{OPERATOR}.ApplyFilters_matches": 30.0,
    f"{OPERATOR}.PublishMatches_matches_published": 30.0,
    f"{DEAD_WRITER}.numRecordsIn": 7.0,
    f"{OPERATOR}.ref_PCollection_PCollection_10_metric_element_count_v1": 30.0,
}


def not_found(path: str) -> FlinkRestError:
    """What the client raises when Flink answers 404."""
    return FlinkRestError(
        f"Flink answered 404 to GET {path}",
        method="GET",
        url="http://flink.invalid" + path,
        path=path,
        status=404,
    )


class FakeFlink(FlinkRest):
    """Canned answers in the Flink 1.19 REST shapes; records the calls that change state."""

    def __init__(self) -> None:
        super().__init__("http://flink.invalid")
        self.jobs_running = [
            {
                "jid": JOB,
                "name": "alertflow-broker",
                "state": "RUNNING",
                "start-time": 1,
                "duration": 5,
            }
        ]
        self.calls: list[tuple[str, str]] = []
        self.metric_queries: list[str] = []
        self.restored: dict[str, Any] = {}

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if method != "GET":
            self.calls.append((method, path))
        if path == "/overview":
            return {}
        if path == "/jobs/overview":
            return {"jobs": self.jobs_running}
        job = next((j for j in self.jobs_running if path.startswith(f"/jobs/{j['jid']}")), None)
        if job is None:
            raise not_found(path)
        base = f"/jobs/{job['jid']}"
        if path == base:
            if method == "PATCH":
                return {}
            return {
                **job,
                "vertices": [
                    {
                        "id": VERTEX,
                        "name": VERTEX_NAME,
                        "status": "RUNNING",
                        "parallelism": 2,
                        "metrics": {"read-records": 0, "write-records": 0},
                    }
                ],
            }
        if path == f"{base}/vertices/{VERTEX}/metrics":
            return [{"id": f"{subtask}.{name}"} for subtask in (0, 1) for name in SUMS]
        if path == f"{base}/vertices/{VERTEX}/subtasks/metrics":
            asked = kwargs["params"]["get"].split(",")
            assert kwargs["params"]["agg"] == "sum" and all(a in SUMS for a in asked)
            self.metric_queries.append(kwargs["params"]["get"])
            return [{"id": a, "sum": SUMS[a]} for a in asked]
        if path == f"{base}/checkpoints":
            return {"latest": {"restored": self.restored.get(job["jid"])}}
        if path == f"/jobs/{JOB}/stop":
            return {"request-id": "r1"}
        if path == f"/jobs/{JOB}/savepoints/r1":
            return {
                "status": {"id": "COMPLETED"},
                "operation": {"location": "file:/sp/savepoint-1"},
            }
        raise not_found(path)


def test_components_are_the_pipeline_stages(tmp_path: Path) -> None:
    flink = FakeFlink()
    app, _ = make_app(tmp_path, Logs(), flink=flink)
    c = app.test_client()
    components = c.get("/api/v1/components").get_json()["components"]
    figures = {x["stage"]: (x["elements_in"], x["elements_out"], x["errors"]) for x in components}
    assert figures == {
        "ingest": (None, 529, None),
        "decode": (529, 523, 6),
        "annotate.sky": (523, 522, 1),
        "annotate.crossmatch": (0, 0, 0),
        "annotate.dust": (0, 0, 0),
        "annotate.lightcurve": (0, 0, 0),
        "annotate.tags": (0, 0, 0),
        "filters": (522, 30, 0),
        "publish": (30, 30, None),
        "deadletters": (7, 7, None),
    }
    decode = next(x for x in components if x["stage"] == "decode")
    assert decode == {
        "id": f"{JOB}.decode",
        "job_id": JOB,
        "job_name": "alertflow-broker",
        "stage": "decode",
        "label": "DecodeAlerts",
        "state": "RUNNING",
        "parallelism": 2,
        "elements_in": 529,
        "elements_out": 523,
        "errors": 6,
        "metrics": {
            "DecodeAlerts_alerts_decoded": 523,
            "DecodeAlerts_dead_letters_framing": 4,
            "DecodeAlerts_dead_letters_schema": 2,
            "DecodeAlerts_messages": 529,
        },
    }
    # Only the stage counters and record counts are read, never the runner's own metrics.
    assert all("metric_element_count" not in q for q in flink.metric_queries)
    assert c.get(f"/api/v1/components/{JOB}.annotate.sky").get_json()["errors"] == 1
    assert c.get(f"/api/v1/components?job={JOB}").get_json()["components"] == components
    assert c.get("/api/v1/components?job=nope").get_json()["components"] == []
    assert error_of(c.get("/api/v1/components/nope")) == (404, "not_found")
    assert error_of(c.get(f"/api/v1/components/{JOB}.nope")) == (404, "not_found")


def test_long_metric_queries_are_batched() -> None:
    flink = FakeFlink()
    names = sorted(SUMS) * 20
    assert len(",".join(names)) > 3000
    assert flink.subtask_metrics(JOB, VERTEX, names) == SUMS
    assert len(flink.metric_queries) > 1 and all(len(q) <= 1700 for q in flink.metric_queries)


def test_jobs(tmp_path: Path) -> None:
    flink = FakeFlink()
    submitted: list[list[str]] = []

    def submit(argv: list[str]) -> None:
        submitted.append(list(argv))
        other = {"jid": "e" * 32, "name": "someone-else", "state": "RUNNING"}
        mine = {"jid": "c" * 32, "name": "mine", "state": "RUNNING"}
        flink.jobs_running = [*flink.jobs_running, other, mine]

    app, _ = make_app(tmp_path, Logs(), flink=flink, submit=submit)
    c = app.test_client()
    assert c.get("/api/v1/jobs").get_json()["jobs"][0]["id"] == JOB
    assert c.get(f"/api/v1/jobs/{JOB}").get_json()["vertices"][0]["parallelism"] == 2
    assert error_of(c.get("/api/v1/jobs/unknown")) == (404, "not_found")
    assert error_of(c.post("/api/v1/jobs", json={}, headers=ALICE)) == (403, "forbidden")
    assert error_of(c.post("/api/v1/jobs", json={"args": "x"}, headers=OPS)) == (400, "bad_request")
    job = c.post("/api/v1/jobs", json={"args": ["--job-name=mine"]}, headers=OPS)
    # Another job appearing at the same time is not taken for ours: the name decides.
    assert job.status_code == 202 and job.get_json()["id"] == "c" * 32
    assert submitted == [["--job-name=mine"]]
    stopped = c.delete(f"/api/v1/jobs/{JOB}", headers=OPS).get_json()
    assert stopped == {"id": JOB, "stopped": True, "savepoint": "file:/sp/savepoint-1"}
    assert ("POST", f"/jobs/{JOB}/stop") in flink.calls


def test_upgrade_resumes_from_the_savepoint(tmp_path: Path) -> None:
    flink = FakeFlink()
    submitted: list[list[str]] = []

    def submit(argv: list[str]) -> None:
        submitted.append(list(argv))
        flink.jobs_running = [
            *flink.jobs_running,
            {"jid": "d" * 32, "name": "alertflow-broker", "state": "RUNNING"},
        ]
        flink.restored["d" * 32] = {
            "id": 3,
            "is_savepoint": True,
            "external_path": "file:/sp/savepoint-1",
        }

    app, _ = make_app(tmp_path, Logs(), flink=flink, submit=submit)
    body = app.test_client().post(f"/api/v1/jobs/{JOB}/upgrade", json={}, headers=OPS).get_json()
    assert (body["id"], body["previous"], body["savepoint"]) == (
        "d" * 32,
        JOB,
        "file:/sp/savepoint-1",
    )
    assert body["restored"]["external_path"] == "file:/sp/savepoint-1"
    assert submitted == [["--savepoint_path=file:/sp/savepoint-1"]]


def test_upgrade_that_does_not_restore_says_where_the_savepoint_is(tmp_path: Path) -> None:
    flink = FakeFlink()

    def submit(argv: list[str]) -> None:
        flink.jobs_running = [
            *flink.jobs_running,
            {"jid": "d" * 32, "name": "alertflow-broker", "state": "FAILED"},
        ]

    app, _ = make_app(tmp_path, Logs(), flink=flink, submit=submit)
    answer = app.test_client().post(f"/api/v1/jobs/{JOB}/upgrade", json={}, headers=OPS)
    assert error_of(answer) == (503, "unavailable")
    details = answer.get_json()["details"]
    assert (details["previous"], details["savepoint"]) == (JOB, "file:/sp/savepoint-1")


def test_flink_down_is_503(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, Logs(), flink=FlinkRest("http://127.0.0.1:9", 0.5))
    c = app.test_client()
    assert error_of(c.get("/api/v1/jobs")) == (503, "unavailable")
    assert error_of(c.get("/api/v1/components")) == (503, "unavailable")


def test_missing_broker_pipeline_is_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A deployment without the pipeline package: its import fails (None in sys.modules does it).
    monkeypatch.setitem(sys.modules, "pipelines.broker", None)
    app, _ = make_app(tmp_path, Logs(), flink=FakeFlink())
    assert error_of(app.test_client().post("/api/v1/jobs", json={}, headers=OPS)) == (
        503,
        "unavailable",
    )


def _real_flink() -> str | None:
    import os

    url = f"http://{HOST}:{os.environ.get('ALERTFLOW_FLINK_REST_PORT', '8081')}"
    try:
        requests.get(url + "/overview", timeout=1).raise_for_status()
    except requests.RequestException:
        return None
    return url


def test_against_the_real_flink(tmp_path: Path) -> None:
    url = _real_flink()
    if url is None:
        pytest.skip("no Flink REST API answers (start the stack: alertflow stack up)")
    app, _ = make_app(tmp_path, Logs(), flink=FlinkRest(url))
    c = app.test_client()
    jobs = c.get("/api/v1/jobs")
    assert jobs.status_code == 200 and isinstance(jobs.get_json()["jobs"], list)
    components = c.get("/api/v1/components")
    assert components.status_code == 200
    for item in components.get_json()["components"]:
        assert c.get(f"/api/v1/components/{item['id']}").status_code == 200
