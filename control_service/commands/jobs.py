"""``alertflow jobs list|cancel``: the Flink jobs of the local cluster, through its REST API."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import requests

from flink_deploy.stack.config import StackConfig


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("jobs", help="list or cancel the Flink jobs")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="one JSON line per job: id, name, state, start")
    listing.add_argument("--all", action="store_true", help="finished and cancelled jobs too")
    cancel = actions.add_parser("cancel", help="cancel jobs by id or by name")
    cancel.add_argument("jobs", nargs="+", metavar="ID_OR_NAME")
    parser.set_defaults(func=run)
    return parser


def running_jobs(rest_url: str, include_ended: bool = False) -> list[dict[str, Any]]:
    jobs = requests.get(f"{rest_url}/jobs/overview", timeout=10).json()["jobs"]
    ended = ("CANCELED", "FAILED", "FINISHED")
    return [j for j in jobs if include_ended or j["state"] not in ended]


def cancel_jobs(rest_url: str, ids_or_names: list[str]) -> list[str]:
    """Cancel the live jobs whose id or name is given; returns the ids cancelled."""
    wanted = set(ids_or_names)
    cancelled = []
    for job in running_jobs(rest_url):
        if job["jid"] in wanted or job["name"] in wanted:
            requests.patch(f"{rest_url}/jobs/{job['jid']}", params={"mode": "cancel"},
                           timeout=10).raise_for_status()
            cancelled.append(job["jid"])
    return cancelled


def run(args: argparse.Namespace) -> int:
    rest = StackConfig.from_env().flink_rest_url
    try:
        if args.action == "list":
            for job in running_jobs(rest, args.all):
                print(json.dumps({"id": job["jid"], "name": job["name"], "state": job["state"],
                                  "start_time_ms": job["start-time"]}))  # fmt: skip
            return 0
        cancelled = cancel_jobs(rest, args.jobs)
    except requests.RequestException as err:
        print(f"alertflow jobs: Flink REST API at {rest} did not answer: {err}", file=sys.stderr)
        return 2
    for jid in cancelled:
        print(f"cancelled {jid}")
    return 0 if cancelled else 1
