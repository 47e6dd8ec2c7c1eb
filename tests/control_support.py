"""The control service as the unit tests make it: on in-memory snapshot logs, with three users'
tokens (alice and bob, users; ops, the admin), filter documents, and the one error shape.

The fixtures on top of it (``logs``, ``app``, ``client``) are in tests/unit/conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Flask

from control_service.app import create_app
from control_service.audit import AuditLog
from control_service.config import load_config
from control_service.snapshots import SNAPSHOT_KEY, MemorySnapshotLog
from control_service.store import FilterStore
from flink_deploy.flink_rest import FlinkRest
from tests.datapaths import shared_data

ALICE = {"Authorization": "Bearer alice-secret-1"}
BOB = {"Authorization": "Bearer bob-secret-22"}
OPS = {"Authorization": "Bearer ops-secret-333"}
YAML = {"Content-Type": "application/yaml"}
KEYS = [
    {"token": "alice-secret-1", "user": "alice", "role": "user"},
    {"token": "bob-secret-22", "user": "bob", "role": "user"},
    {"token": "ops-secret-333", "user": "ops", "role": "admin"},
]


def doc(
    name: str = "bright", owner: str = "alice", where: str = "mag < 18.5 and reliability > 0.8"
) -> str:
    return (
        "apiVersion: alertflow/v1\nkind: Filter\n"
        f"metadata:\n  name: {name}\n  owner: {owner}\n"
        f"spec:\n  where: {where}\n"
    )


class Logs:
    def __init__(self) -> None:
        self.active: list[tuple[bytes, bytes | None]] = []
        self.inactive: list[tuple[bytes, bytes | None]] = []

    def snapshots(self, which: str = "active") -> list[dict[str, Any]]:
        return [
            json.loads(v) for k, v in getattr(self, which) if k == SNAPSHOT_KEY and v is not None
        ]


def make_app(
    tmp_path: Path, logs: Logs, flink: FlinkRest | None = None, submit: Any = None, **overrides: Any
) -> tuple[Flask, FilterStore]:
    cfg = load_config(
        env={},
        api_keys=KEYS,
        audit_log=tmp_path / "audit.jsonl",
        reference_alerts=[shared_data() / "lsst" / "alerts"],
        savepoint_dir=str(tmp_path / "savepoints"),
        **overrides,
    )
    store = FilterStore(
        MemorySnapshotLog("config", logs.active),
        MemorySnapshotLog("inactive", logs.inactive),
        AuditLog(cfg.audit_log),
    )
    return create_app(cfg, store=store, flink=flink, submit=submit), store


def error_of(response: Any) -> tuple[int, str]:
    body = response.get_json()
    assert set(body) == {"error", "message", "details"}, body
    return response.status_code, body["error"]
