"""The audit log: append-only JSON lines of who changed what, when, and the old and new version.

Every service on the common control API writes one (config changes, actions); the filter store
adds each filter change.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from control_service.auth import Principal


class AuditLog:
    """Append-only JSON lines: who, what, when, and the old and new version."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(
        self,
        principal: Principal | None,
        action: str,
        target: str,
        old_version: Any,
        new_version: Any,
        **extra: Any,
    ) -> dict[str, Any]:
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "user": principal.user if principal else None,
            "role": principal.role if principal else None,
            "action": action,
            "target": target,
            "old_version": old_version,
            "new_version": new_version,
            **extra,
        }
        if self.path is not None:
            line = json.dumps(entry, default=str) + "\n"
            with self._lock, self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        return entry
