"""wait_until: the one poll-with-a-deadline loop (transforms/polling.py)."""

from __future__ import annotations

import pytest

from transforms.polling import wait_until


def test_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "", "ready", "later"])
    assert wait_until(lambda: next(answers), 5, 0) == "ready"


def test_times_out_naming_what_it_waited_for() -> None:
    calls = []
    with pytest.raises(TimeoutError, match=r"^timed out after 0.2 s waiting for the broker$"):
        wait_until(lambda: calls.append(1), 0.2, 0.05, "the broker")
    # At least once at the start and once after the deadline.
    assert len(calls) >= 2


def test_an_error_from_the_check_ends_the_wait() -> None:
    def check() -> bool:
        raise RuntimeError("the process exited")

    with pytest.raises(RuntimeError, match="the process exited"):
        wait_until(check, 60, 1)
