"""``alertflow filter apply|list|get|delete|test|activate|deactivate``: filters through the REST API.

The local ``alertflow filters check|test`` validate and try files offline; these commands speak
to a running control service: ``--url`` (``ALERTFLOW_CONTROL_URL``, default
http://127.0.0.1:5000) with the bearer token ``--token`` (``ALERTFLOW_TOKEN``). Output is JSON
on stdout (``get`` prints the YAML document); errors print ``STATUS ERROR: MESSAGE`` and each
validation problem as ``FILE:LINE:COLUMN: PATH: MESSAGE`` on stderr, exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from control_service.client import ControlClient, ControlError


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("filter", help="manage filters on a running control service", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("ALERTFLOW_CONTROL_URL", "http://127.0.0.1:5000"))
    parser.add_argument("--token", default=os.environ.get("ALERTFLOW_TOKEN"))
    actions = parser.add_subparsers(dest="filter_action", required=True, metavar="ACTION")
    apply = actions.add_parser("apply", help="create or replace the filters of a YAML file")
    apply.add_argument("-f", "--file", type=Path, required=True, metavar="FILE.yaml")
    listing = actions.add_parser("list", help="list the filters")
    listing.add_argument("--owner")
    for name, text in (("get", "print a filter's YAML"), ("delete", "delete a filter"), ("test", "dry-run a filter on the reference alerts"), ("activate", "activate a filter"), ("deactivate", "deactivate a filter")):
        actions.add_parser(name, help=text).add_argument("name")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None, client: ControlClient | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    client = client or ControlClient(args.url, args.token)
    source = "<request>"
    try:
        action = args.filter_action
        if action == "apply":
            source = str(args.file)
            try:
                text = args.file.read_text(encoding="utf-8")
            except OSError as error:
                print(f"{args.file}: cannot read: {error.strerror or error}", file=err)
                return 1
            result: Any = client.apply_filters(text)
        elif action == "list":
            result = client.list_filters(owner=args.owner)
        elif action == "get":
            print(client.get_filter(args.name, yaml_text=True), end="", file=out)
            return 0
        elif action == "delete":
            result = client.delete_filter(args.name)
        elif action == "test":
            result = client.test_filter(args.name)
        else:
            result = client.set_active(args.name, action == "activate")
    except ControlError as error:
        print(f"{error.status} {error.error}: {error.message}", file=err)
        for issue in error.details.get("issues", []):
            if "line" in issue:
                print(f"{source}:{issue['line']}:{issue['column']}: {issue['path']}: {issue['message']}", file=err)
        return 1
    print(json.dumps(result, indent=2), file=out)
    return 0
