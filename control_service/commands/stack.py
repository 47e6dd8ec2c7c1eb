"""``alertflow stack up|status|down``: the local stack of Kafka, Flink and the Beam services."""

from __future__ import annotations

import argparse
import json
import sys

from control_service.commands import Subparsers, add_actions, add_command
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import StackConfig, StackError, StackMode


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "stack", "start, inspect and stop the local stack", __doc__, run
    )
    actions = add_actions(parser)
    up = actions.add_parser("up", help="start Kafka, Flink and the Beam services; wait for health")
    up.add_argument(
        "--taskmanagers",
        type=int,
        default=None,
        metavar="N",
        help="number of Flink TaskManagers (default 1, or ALERTFLOW_TASKMANAGERS)",
    )
    up.add_argument(
        "--mode",
        type=StackMode,
        choices=list(StackMode),
        default=None,
        help="session: jobs are submitted to the cluster (default, or "
        "ALERTFLOW_STACK_MODE); application: the broker runs as a reactive-mode "
        "application cluster that rescales with its TaskManagers",
    )
    up.add_argument(
        "--nodes",
        action="store_true",
        help="run each service on a node of its own: a network namespace with its own address "
        "and a CPU and memory budget (needs root; flink_deploy/stack/placement.py)",
    )
    actions.add_parser("status", help="print each service, its PID, port, node and health as JSON")
    actions.add_parser("down", help="stop every process that `up` started")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        cfg = StackConfig.from_env(
            getattr(args, "taskmanagers", None),
            getattr(args, "mode", None),
            # `up` starts on nodes only when asked; the others find the stack that runs.
            args.nodes if args.action == "up" else None,
        )
        if args.action == "up":
            supervisor.up(cfg, log=lambda line: print(line, file=sys.stderr))
            print(f"stack healthy; Flink web UI: {cfg.flink_rest_url}", file=sys.stderr)
            print("stop it with: alertflow stack down", file=sys.stderr)
            return 0
        if args.action == "status":
            report = supervisor.status(cfg)
            print(json.dumps(report, indent=2))
            return 0 if report["healthy"] else 1
        left = supervisor.down(cfg, log=lambda line: print(line, file=sys.stderr))
        if left:
            print(f"still running: {', '.join(left)}", file=sys.stderr)
            return 1
        return 0
    except StackError as err:
        print(f"alertflow stack {args.action}: {err}", file=sys.stderr)
        return 2
