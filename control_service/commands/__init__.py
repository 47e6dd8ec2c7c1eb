"""The ``alertflow`` subcommands, one module each, and what they share.

Each module states only what is its own: its ``register(subparsers)`` adds the subcommand
through :func:`add_command` (the module's docstring is its ``--help`` text, as written, and
``func`` is set to its ``run``) and then its options. Options that several subcommands take are
written here once: the LSST schemas (:func:`add_schema_options`, read back with
:func:`lsst_schemas`) and where a service listens (:func:`add_listen_options`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
#: What a subcommand's ``run`` is: the parsed arguments in, the exit code out (keyword
#: arguments, such as ``out`` and ``err``, are for the tests).
Run: TypeAlias = Callable[..., int]


def add_command(
    subparsers: Subparsers, name: str, summary: str, description: str | None, run: Run
) -> argparse.ArgumentParser:
    """Add subcommand ``name``: ``summary`` in the list of commands, ``description`` (the
    module's docstring) as written under its ``--help``; parsing it sets ``func`` to ``run``."""
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=run)
    return parser


def add_actions(parser: argparse.ArgumentParser, dest: str = "action") -> Subparsers:
    """The subcommand's own actions (``alertflow jobs list``): one is required."""
    return parser.add_subparsers(dest=dest, required=True, metavar="ACTION")


def add_schema_options(parser: argparse.ArgumentParser) -> None:
    """``--schema-dir`` and ``--registry-url``: where LSST schema ids are resolved."""
    parser.add_argument(
        "--schema-dir",
        type=Path,
        default=DEFAULT_LSST_SCHEMA_DIR,
        help="directory of lsst.vX_Y schema folders (default: the schemas shipped with alertflow)",
    )
    parser.add_argument(
        "--registry-url", default=None, help="Confluent-compatible schema registry for LSST ids"
    )


def lsst_schemas(args: argparse.Namespace) -> LsstSchemas:
    """The LSST schemas of the options of :func:`add_schema_options`."""
    return LsstSchemas(args.schema_dir, registry_url=args.registry_url)


def add_listen_options(parser: argparse._ActionsContainer, host: str, port: int) -> None:
    """``--host`` and ``--port`` of a service (``parser`` may be an argument group)."""
    parser.add_argument("--host", default=host, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=port, help="port (default %(default)s)")
