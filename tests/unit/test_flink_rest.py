"""The Flink REST client (flink_deploy/flink_rest.py) against a stand-in JobManager on real
HTTP: what it does with Flink's answers while a job is still being set up."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask, jsonify
from werkzeug.serving import make_server

from flink_deploy.flink_rest import FlinkRest, FlinkRestError

INITIALIZING = {
    "errors": [
        "org.apache.flink.runtime.dispatcher.UnavailableDispatcherOperationException: Unable to "
        "get JobMasterGateway for initializing job."
    ]
}


def _serve(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def jobmanager() -> Iterator[tuple[str, dict[str, int]]]:
    """A job that answers 500 to /checkpoints twice (initializing), then reports its restore;
    and a job whose /checkpoints is always a 404."""
    calls = {"checkpoints": 0}
    app = Flask(__name__)

    @app.get("/jobs/<jid>")
    def job(jid: str):  # type: ignore[no-untyped-def]
        return jsonify({"jid": jid, "state": "RUNNING"})

    @app.get("/jobs/new/checkpoints")
    def restoring():  # type: ignore[no-untyped-def]
        calls["checkpoints"] += 1
        if calls["checkpoints"] <= 2:
            return jsonify(INITIALIZING), 500
        return jsonify({"latest": {"restored": {"id": 9, "external_path": "file:/sp/savepoint-1"}}})

    @app.get("/jobs/gone/checkpoints")
    def gone():  # type: ignore[no-untyped-def]
        return jsonify({"errors": ["Job not found"]}), 404

    for url in _serve(app):
        yield url, calls


def test_a_restore_is_awaited_while_the_job_initializes(
    jobmanager: tuple[str, dict[str, int]],
) -> None:
    url, calls = jobmanager
    flink = FlinkRest(url, sleep=lambda _s: None)
    restored = flink.restored_from("new", "file:/sp/savepoint-1", deadline_s=30)
    assert restored == {"id": 9, "external_path": "file:/sp/savepoint-1"}
    assert calls["checkpoints"] == 3


def test_a_client_error_is_not_waited_out(jobmanager: tuple[str, dict[str, int]]) -> None:
    url, _ = jobmanager
    flink = FlinkRest(url, sleep=lambda _s: None)
    with pytest.raises(FlinkRestError) as caught:
        flink.restored_from("gone", "file:/sp/savepoint-1", deadline_s=30)
    assert caught.value.status == 404
    assert caught.value.details["flink_errors"] == ["Job not found"]
