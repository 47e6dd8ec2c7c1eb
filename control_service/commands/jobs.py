"""``alertflow jobs list|cancel``: the Flink jobs of the local cluster, through its REST API."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from control_service.commands import Subparsers, add_actions, add_command
from flink_deploy.flink_rest import TERMINAL_STATES, FlinkRest, FlinkRestError
from flink_deploy.stack.config import StackConfig

#: Seconds per Flink REST call from the command line.
TIMEOUT_S = 10.0


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "jobs", "list or cancel the Flink jobs", __doc__, run)
    actions = add_actions(parser)
    listing = actions.add_parser("list", help="one JSON line per job: id, name, state, start")
    listing.add_argument("--all", action="store_true", help="finished and cancelled jobs too")
    cancel = actions.add_parser("cancel", help="cancel jobs by id or by name")
    cancel.add_argument("jobs", nargs="+", metavar="ID_OR_NAME")
    return parser


def running_jobs(flink: FlinkRest, include_ended: bool = False) -> list[dict[str, Any]]:
    return [j for j in flink.jobs() if include_ended or j["state"] not in TERMINAL_STATES]


def cancel_jobs(rest_url: str, ids_or_names: list[str]) -> list[str]:
    """Cancel the live jobs whose id or name is given; returns the ids cancelled."""
    flink = FlinkRest(rest_url, TIMEOUT_S)
    wanted = set(ids_or_names)
    cancelled = []
    for job in running_jobs(flink):
        if job["jid"] in wanted or job["name"] in wanted:
            flink.cancel(job["jid"])
            cancelled.append(job["jid"])
    return cancelled


def run(args: argparse.Namespace) -> int:
    rest = StackConfig.from_env().flink_rest_url
    try:
        if args.action == "list":
            for job in running_jobs(FlinkRest(rest, TIMEOUT_S), args.all):
                print(
                    json.dumps(
                        {
                            "id": job["jid"],
                            "name": job["name"],
                            "state": job["state"],
                            "start_time_ms": job["start-time"],
                        }
                    )
                )
            return 0
        cancelled = cancel_jobs(rest, args.jobs)
    except FlinkRestError as err:
        print(f"alertflow jobs: {err}", file=sys.stderr)
        return 2
    for jid in cancelled:
        print(f"cancelled {jid}")
    return 0 if cancelled else 1
