"""``alertflow autoscale``: arguments, and the ways it refuses to start (before any network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_service.cli import build_parser, main
from flink_deploy.autoscaler.policy import DEFAULT_POLICY_FILE


def test_defaults() -> None:
    args = build_parser().parse_args(["autoscale", "--policy", str(DEFAULT_POLICY_FILE)])
    assert (args.driver, args.host, args.port, args.group_id) == (
        "local",
        "127.0.0.1",
        5001,
        "alertflow-broker",
    )
    assert args.topics == "alerts.ztf,alerts.lsst"


def test_bad_policy_exits_2_with_positions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(DEFAULT_POLICY_FILE.read_text().replace("sustain: 3", "sustain: 0"))
    assert main(["autoscale", "--policy", str(policy)]) == 2
    assert f"{policy}:6:10: sustain: must be >= 1, got 0" in capsys.readouterr().err


def test_kubernetes_driver_outside_a_pod_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code = main(
        [
            "autoscale",
            "--policy",
            str(DEFAULT_POLICY_FILE),
            "--driver",
            "kubernetes",
            "--namespace",
            "alerts",
        ]
    )
    assert code == 1
    assert "cannot start the kubernetes driver: not in a Kubernetes pod" in capsys.readouterr().err
