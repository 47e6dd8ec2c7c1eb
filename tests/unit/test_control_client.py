"""One ControlClient speaking to the replay service, the autoscaler and the control service
over HTTP on loopback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from control_service.client import ControlClient, ControlError
from tests.control_support import Logs
from tests.control_support import make_app as make_control
from tests.metrics_text import samples
from tests.unit.test_autoscale_service import FakeDriver, FakeObserver
from tests.unit.test_autoscale_service import make as make_autoscaler
from tests.unit.test_replay_service import LSST_BATCH, Factory, finish, make


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """Serves Flask apps on loopback (port 0: the OS picks one); gives their base URLs."""
    servers = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_one_client_speaks_to_every_service(tmp_path: Path, serve: Callable[[Flask], str]) -> None:
    factory = Factory()
    (tmp_path / "a").mkdir()
    (tmp_path / "c").mkdir()
    replay_app = make(tmp_path, factory)
    urls = {
        "replay": serve(replay_app),
        "autoscaler": serve(make_autoscaler(tmp_path / "a", FakeObserver(), FakeDriver())),
        "control-service": serve(make_control(tmp_path / "c", Logs())[0]),
    }
    for kind, url in urls.items():
        client = ControlClient(url, token="ops-secret-333")
        assert client.health() == {"status": "ok"}
        assert isinstance(client.ready(), bool)
        status = client.status()
        assert status["kind"] == kind
        assert status["state"] in ("starting", "running", "stopped", "draining", "degraded")
        assert client.get_config()["config_version"] == status["config_version"]
        assert any(
            name.startswith("alertflow_http_requests_total{") for name in samples(client.metrics())
        )
        assert client.openapi()["info"]["title"].startswith("alertflow")
        with pytest.raises(ControlError) as unknown:
            client.action("rewind")
        assert (unknown.value.status, unknown.value.error) == (404, "not_found")
        with pytest.raises(ControlError) as anonymous:
            ControlClient(url).put_config({"colour": "blue"})
        assert anonymous.value.status == 401

    replay_client = ControlClient(urls["replay"], token="ops-secret-333")
    with pytest.raises(ControlError) as bad:
        replay_client.put_config({"rate": -1})
    assert (bad.value.status, bad.value.details["issues"][0]["field"]) == (422, "rate")
    changed = replay_client.put_config({"files": [str(LSST_BATCH)], "count": 30})
    assert changed["config"]["count"] == 30
    assert replay_client.action("start")["result"] == {"run": 1, "total": 30}
    finish(replay_app)
    progress = replay_client.status()["progress"]
    assert (progress["sent"], progress["delivered"], progress["done"]) == (30, 30, True)
    assert samples(replay_client.metrics())["alertflow_replay_sent_total"] == 30
    autoscaler = ControlClient(urls["autoscaler"], token="ops-secret-333")
    assert autoscaler.action("stop")["state"] == "stopped"
    assert autoscaler.action("start")["state"] == "running"
    assert autoscaler.status()["kind"] == "autoscaler"
