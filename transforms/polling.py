"""Waiting for a condition with a deadline: the one poll loop that the stack, the services and
the tests share (DESIGN.md: no sleeps standing in for readiness, poll with a deadline)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T], timeout_s: float, interval_s: float = 0.5, what: str = "the condition"
) -> T:
    """Call ``check`` every ``interval_s`` until it returns a truthy value, and return that value.

    ``check`` runs at least once, and once more after the deadline has passed, so a condition
    that became true during the last sleep is not missed. An exception from ``check`` ends the
    wait at once (a check may raise to say that waiting longer is pointless).

    Raises TimeoutError "timed out after N s waiting for <what>" when ``timeout_s`` has passed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(max(0.0, min(interval_s, deadline - time.monotonic())))
