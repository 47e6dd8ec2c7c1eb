"""``alertflow submit PIPELINE [options]``: submit a pipeline to the stack's Flink cluster.

The pipeline's own options follow its name (``alertflow submit smoke --help`` lists them);
any other ``--flag`` is passed to Beam as a pipeline option.
"""

from __future__ import annotations

import argparse
import sys

from control_service.commands import Subparsers, add_command
from pipelines import broker, ingest, smoke

PIPELINES = {"broker": broker.run, "ingest": ingest.run, "smoke": smoke.run}


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "submit", "submit a pipeline to the local Flink cluster", __doc__, run
    )
    parser.add_argument("pipeline", choices=sorted(PIPELINES))
    parser.add_argument("pipeline_args", nargs=argparse.REMAINDER, metavar="...")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        result = PIPELINES[args.pipeline](args.pipeline_args)
    except FileNotFoundError as err:
        print(f"alertflow submit: {err}", file=sys.stderr)
        return 2
    print(f"{args.pipeline}: {result.state}")
    return 0
