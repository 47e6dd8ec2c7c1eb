"""schemathesis against our own OpenAPI spec, in-process (WSGI): no 5xx, every response per spec.

Runs as the admin, so mutating calls get past authentication and reach validation; Flink and the
pipeline submitter are the stand-ins of test_control_jobs.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tests.control_support import OPS, Logs, make_app
from tests.schemathesis_support import api_matches_spec
from tests.unit.test_control_jobs import FakeFlink

_APP, _ = make_app(
    Path(tempfile.mkdtemp(prefix="af-schemathesis-")),
    Logs(),
    flink=FakeFlink(),
    submit=lambda argv: None,
)


def _submits_a_pipeline(case: Any) -> str | None:
    if case.operation.method.upper() == "POST" and case.operation.path in (
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}/upgrade",
    ):
        return "submits a pipeline; covered by test_control_jobs"
    return None


test_api_matches_spec = api_matches_spec(_APP, OPS, skip=_submits_a_pipeline)
