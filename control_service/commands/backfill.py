"""``alertflow backfill --filters DIR --alerts FILE... --out DIR``: filters over alert history."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines import backfill


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "backfill",
        help="run filters over alert files in batch",
        description=backfill.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--filters", type=Path, required=True, help="folder of filter YAML files")
    parser.add_argument("--alerts", nargs="+", required=True, metavar="FILE")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    filter_set = backfill.run(args.filters, args.alerts, args.out)
    print(
        f"backfill: {len(filter_set.filters)} filters; results in the --out folder", file=sys.stderr
    )
    return 0
