"""The ``alertflow`` command: one entry point, a subcommand per task.

Each module in control_service/commands adds its own subcommand through ``register``, which
sets ``func``, the command's ``run``: it returns the exit code (control_service/commands/__init__.py
holds what the subcommands share).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from control_service.commands import (
    autoscale,
    backfill,
    filters,
    inspect,
    jobs,
    replay,
    run,
    serve,
    stack,
    submit,
)

COMMANDS = (stack, run, submit, jobs, serve, inspect, replay, filters, backfill, autoscale)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alertflow", description="alertflow: an alert broker for LSST and ZTF."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (``alertflow inspect ... | head``): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
