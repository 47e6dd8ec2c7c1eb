"""``alertflow backfill --filters DIR --alerts FILE... --out DIR``: filters over alert history."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from control_service.commands import Subparsers, add_command
from pipelines import backfill


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "backfill", "run filters over alert files in batch", backfill.__doc__, run
    )
    parser.add_argument("--filters", type=Path, required=True, help="folder of filter YAML files")
    parser.add_argument("--alerts", nargs="+", required=True, metavar="FILE")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    return parser


def run(args: argparse.Namespace) -> int:
    filter_set = backfill.run(args.filters, args.alerts, args.out)
    print(
        f"backfill: {len(filter_set.filters)} filters; results in the --out folder", file=sys.stderr
    )
    return 0
