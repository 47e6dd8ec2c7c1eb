"""``alertflow replay``: the one-shot command sends through the replay service's loop, and
``--serve`` refuses bad initial settings.
"""

from __future__ import annotations

import argparse
import io

import pytest

from control_service.commands import replay
from tests.unit.test_replay_service import LSST_BATCH, Factory


def test_one_shot_command_sends_through_the_shared_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    factory = Factory()
    monkeypatch.setattr(replay, "kafka_producer", factory)
    parser = argparse.ArgumentParser()
    replay.register(parser.add_subparsers())
    args = parser.parse_args(
        ["replay", str(LSST_BATCH), "--count", "40", "--no-progress", "--topic", "t"]
    )
    out = io.StringIO()
    assert replay.run(args, out=out) == 0
    assert len(factory.producers[0].produced) == 40
    assert out.getvalue().startswith("replay: sent 40 alerts")
    err = io.StringIO()
    assert replay.run(parser.parse_args(["replay"]), err=err) == 2
    assert "FILE" in err.getvalue()


def test_serve_refuses_bad_initial_settings() -> None:
    parser = argparse.ArgumentParser()
    replay.register(parser.add_subparsers())
    for argv, problem in [
        (["--rate", "-1"], "rate: a positive number"),
        (["/nonexistent.avro"], "files[0]: /nonexistent.avro: no such file"),
    ]:
        err = io.StringIO()
        assert replay.run(parser.parse_args(["replay", "--serve", *argv]), err=err) == 2
        assert problem in err.getvalue()
