"""schemathesis against the replay service's own OpenAPI spec, in-process (WSGI): no 5xx, every
response per spec.

The app is ``create_app`` with the fake producer of test_replay_service.py and the real LSST
sample alerts as its initial files; the spec gives ``start``, ``stop`` and ``drain`` as examples
of the action, so they are called (in whatever order, so a start may meet a drained service: 409).
Runs as the admin, so ``PUT /api/v1/config`` gets past authentication and reaches validation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from control_service.replay_models import replay_spec, settings_from
from tests.schemathesis_support import api_matches_spec
from tests.unit.test_replay_service import LSST_BATCH, OPS, Factory, make

# 100 alerts at 1,000/s: a run ends on its own within a fraction of a second.
_APP = make(
    Path(tempfile.mkdtemp(prefix="af-replay-schemathesis-")),
    Factory(),
    settings_from({"files": [str(LSST_BATCH)], "rate": 1000, "count": 100}),
)


def test_served_spec_is_replay_spec() -> None:
    served = _APP.test_client().get("/api/v1/openapi.json").get_json()
    assert served == replay_spec(served["info"]["version"])


test_api_matches_spec = api_matches_spec(_APP, OPS)
