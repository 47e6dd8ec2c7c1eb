"""schemathesis against the autoscaler's own OpenAPI spec, in-process (WSGI): no 5xx, every
response per spec.

The app is ``create_app`` with the fake observer and driver of test_autoscale_service.py, its
loop stepped a few times first so that ``GET /api/v1/scaling`` carries observations and every
kind of decision. Runs as the admin, so ``PUT /api/v1/scaling`` gets past authentication and
reaches validation.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

from flink_deploy.autoscaler.api_models import autoscaler_spec
from flink_deploy.autoscaler.observe import Observation
from tests.schemathesis_support import api_matches_spec
from tests.unit.test_autoscale_service import (
    OPS,
    POLICY,
    Clock,
    FakeDriver,
    FakeObserver,
    loop_of,
    make,
    running,
)


def _app():
    clock = Clock()
    # Three over the lag threshold (sustain 3) -> up, measured (the default policy has
    # min_gain); then a job that is not running -> hold.
    lagging = [
        replace(running(60_000), records_out_per_s=218.0, checkpointed_since_restore=True)
    ] * 3
    stalled = Observation(
        timestamp=0.0, lag_total=None, job_state="RESTARTING", errors=("flink: job restarting",)
    )
    app = make(
        Path(tempfile.mkdtemp(prefix="af-autoscale-schemathesis-")),
        FakeObserver([*lagging, stalled]),
        FakeDriver(count=1),
        clock,
    )
    loop = loop_of(app)
    for _ in range(5):
        loop.step()
        clock.now += 60
    # A driver that cannot list its TaskManagers: an "error" decision in the history too.
    loop.driver = FakeDriver(fail="list")
    loop.step()
    loop.driver = FakeDriver(count=2)
    assert {d.action for d in loop.decisions()} == {"up", "hold", "error"}
    assert loop.last_scale_up is not None and loop.last_scale_up.verdict == "measuring"
    return app


_APP = _app()


def test_served_spec_is_autoscaler_spec() -> None:
    served = _APP.test_client().get("/api/v1/openapi.json").get_json()
    assert served == autoscaler_spec(served["info"]["version"])


def test_put_examples_of_the_spec_are_accepted() -> None:
    """The spec's request examples (the shipped default policy, as YAML and as JSON) are what
    schemathesis's examples phase sends first: both must reach the 200 path."""
    client = _APP.test_client()
    content = autoscaler_spec("1")["paths"]["/api/v1/scaling"]["put"]["requestBody"]["content"]
    loop = loop_of(_APP)
    for media_type, body in [
        ("application/yaml", content["application/yaml"]["example"]),
        ("application/json", content["application/json"]["example"]),
    ]:
        data = body if isinstance(body, str) else json.dumps(body)
        before = loop.policy_version
        response = client.put(
            "/api/v1/scaling", data=data, headers={**OPS, "Content-Type": media_type}
        )
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["policy_version"] == before + 1
        assert response.get_json()["policy"] == POLICY.to_dict()


test_api_matches_spec = api_matches_spec(_APP, OPS)
