"""schemathesis against a service's own OpenAPI spec, in-process (WSGI): no 5xx, every response
per spec.

:func:`api_matches_spec` makes the one test each service's module takes as its own
``test_api_matches_spec``: 25 derandomised cases per operation of the spec the app serves at
``/api/v1/openapi.json``, each called with the given headers (the admin's token, so that mutating
calls get past authentication and reach validation) and checked for server errors, status
codes, content types and response schemas.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def api_matches_spec(
    app: Any, headers: Mapping[str, str], skip: Callable[[Any], str | None] | None = None
) -> Callable[..., None]:
    """The schemathesis test of ``app`` against its own spec; ``skip(case)``, if given, names
    why a case is not called (None: it is)."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)

    @schema.parametrize()
    @settings(
        max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    def test_api_matches_spec(case: Any) -> None:
        reason = skip(case) if skip is not None else None
        if reason is not None:
            pytest.skip(reason)
        case.call_and_validate(headers={**(case.headers or {}), **headers}, checks=CHECKS)

    return test_api_matches_spec
