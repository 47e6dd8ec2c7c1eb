"""Fixtures of the control service's unit tests (test_control_api.py,
test_control_filters.py): ``logs``, the in-memory config topics; ``app``, the control service on
them (tests/control_support.py); ``client``, its Flask test client. A test module that
defines a fixture of the same name (the autoscaler's, the replay service's) uses its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.control_support import Logs, make_app


@pytest.fixture
def logs() -> Logs:
    return Logs()


@pytest.fixture
def app(tmp_path: Path, logs: Logs) -> Flask:
    return make_app(tmp_path, logs)[0]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
