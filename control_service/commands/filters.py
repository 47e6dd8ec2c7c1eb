"""``alertflow filters``: filter files offline, and filters on a running control service.

Offline, on files (nothing is sent anywhere):

* ``alertflow filters check FILE.yaml...`` validates every filter document in the files and
  prints each problem as ``FILE:LINE:COLUMN: PATH: MESSAGE`` on stderr (exit code 1), or one
  ``ok`` line per file (exit code 0).
* ``alertflow filters test -f FILE.yaml --alerts ALERTS...`` decodes the alert files (ZTF Avro,
  Rubin Avro containers or wire-format messages, as ``alertflow inspect`` reads them), runs the
  annotators the filters name, evaluates all the filters of FILE.yaml together, exactly as the
  pipeline does (:class:`transforms.local.LocalRunner`, the runner of every dry run),
  and prints every match, filter by filter, as one JSON line on stdout, as the ``lite`` output
  shows it (identity, the fields of ``spec.output.fields``, the annotations). Then it prints a
  summary per filter on stderr: alerts evaluated, matched, fraction, errors, the per-alert
  cost (p50/p99 of annotating and evaluating each alert on its own) and the batch cost per
  alert. A filter passing more than 5% of the alerts gets a warning: that usually floods its
  topic.

On the control service (REST: ``--url``, default ``$ALERTFLOW_CONTROL_URL`` or
http://127.0.0.1:5000, and the bearer token ``--token``, default ``$ALERTFLOW_TOKEN``, else the
admin token of the local stack that ``alertflow run`` made, when the URL is its control service):

* ``apply -f FILE.yaml`` creates or replaces the filters of the file;
* ``list [--owner USER]``, ``get NAME`` (prints the YAML document), ``delete NAME``;
* ``test NAME``: the service's dry run of filter NAME on its reference alerts;
* ``activate NAME``, ``deactivate NAME``.

``test`` takes either ``NAME`` (on the service) or ``-f FILE --alerts ...`` (offline), never
both. REST answers print as JSON on stdout; errors print ``STATUS ERROR: MESSAGE`` and each
validation problem as ``FILE:LINE:COLUMN: PATH: MESSAGE`` on stderr, exit code 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from control_service.client import ControlClient, ControlError
from control_service.commands import (
    Subparsers,
    add_actions,
    add_command,
    add_schema_options,
    lsst_schemas,
)
from flink_deploy.stack.services import local_control_token
from transforms.alert_model import Alert
from transforms.decode import decode_message
from transforms.decode_errors import DecodeError
from transforms.filters.document import load_filter_file
from transforms.filters.matches import FilterMatch, batch_reports
from transforms.filters.model import Filter, FilterSet, FilterValidationError
from transforms.local import LocalRunner
from transforms.publish import lite_record

#: A filter passing more than this fraction of alerts gets a warning (BOOM rejects above 5%).
WARN_MATCH_FRACTION = 0.05
#: Alerts timed one by one for the per-alert cost percentiles.
MAX_TIMED_ALERTS = 2000


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add the ``filters`` subcommand: offline ``check``/``test -f``, and the REST actions."""
    parser = add_command(
        subparsers,
        "filters",
        "check and test filter files; manage filters on the control service",
        __doc__,
        run,
    )
    service = argparse.ArgumentParser(add_help=False)
    service.add_argument(
        "--url",
        default=os.environ.get("ALERTFLOW_CONTROL_URL", "http://127.0.0.1:5000"),
        help="the control service (default: $ALERTFLOW_CONTROL_URL or http://127.0.0.1:5000)",
    )
    service.add_argument(
        "--token",
        default=os.environ.get("ALERTFLOW_TOKEN"),
        help="bearer token (default: $ALERTFLOW_TOKEN, else the local "
        "stack's admin token for its control service)",
    )
    actions = add_actions(parser, "filters_action")
    check = actions.add_parser("check", help="validate filter YAML files (offline)")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE.yaml")
    test = actions.add_parser(
        "test",
        parents=[service],
        help="dry-run a filter: NAME on the service, or -f FILE --alerts ... offline",
    )
    test.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        help="a filter of the control service, tried on its reference alerts",
    )
    test.add_argument(
        "-f",
        "--file",
        type=Path,
        metavar="FILE.yaml",
        help="a filter file, tried offline on the --alerts files",
    )
    test.add_argument(
        "--alerts",
        nargs="+",
        type=Path,
        metavar="ALERTS",
        help="alert files for -f (ZTF Avro, Rubin Avro or wire format)",
    )
    add_schema_options(test)
    test.add_argument("--no-matches", action="store_true", help="-f: print only the summary")
    apply = actions.add_parser(
        "apply", parents=[service], help="create or replace the filters of a YAML file"
    )
    apply.add_argument("-f", "--file", type=Path, required=True, metavar="FILE.yaml")
    listing = actions.add_parser("list", parents=[service], help="list the filters")
    listing.add_argument("--owner", help="only this user's filters")
    for name, text in (
        ("get", "print a filter's YAML document"),
        ("delete", "delete a filter"),
        ("activate", "activate a filter"),
        ("deactivate", "deactivate a filter"),
    ):
        actions.add_parser(name, parents=[service], help=text).add_argument("name")
    return parser


def run(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    client: ControlClient | None = None,
) -> int:
    """Run one ``filters`` action; returns the exit code (0 ok, 1 failure, 2 usage)."""
    out = out or sys.stdout
    err = err or sys.stderr
    action = args.filters_action
    if action == "check":
        return _check(args.files, out, err)
    if action == "test":
        if (args.name is None) == (args.file is None):
            print(
                "alertflow filters test: give NAME (on the service) or -f FILE --alerts ... "
                "(offline), not both",
                file=err,
            )
            return 2
        if args.file is not None:
            if not args.alerts:
                print("alertflow filters test: -f FILE needs --alerts ALERTS...", file=err)
                return 2
            return _test(args, out, err)
        if args.alerts:
            print(
                "alertflow filters test: --alerts goes with -f FILE; a NAME is tried on "
                "the service's reference alerts",
                file=err,
            )
            return 2
    token = args.token or local_control_token(args.url)
    return _remote(args, out, err, client or ControlClient(args.url, token))


def _remote(args: argparse.Namespace, out: TextIO, err: TextIO, client: ControlClient) -> int:
    """One REST action; answers as JSON on ``out`` (``get``: the YAML), errors on ``err``."""
    action = args.filters_action
    source = "<request>"
    try:
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
                print(
                    f"{source}:{issue['line']}:{issue['column']}: {issue['path']}: "
                    f"{issue['message']}",
                    file=err,
                )
        return 1
    print(json.dumps(result, indent=2), file=out)
    return 0


def _load(path: Path, err: TextIO) -> tuple[Filter, ...] | None:
    try:
        return load_filter_file(str(path))
    except FilterValidationError as error:
        for issue in error.issues:
            print(f"{path}:{issue}", file=err)
        return None
    except OSError as error:
        print(f"{path}: cannot read: {error.strerror or error}", file=err)
        return None


def _check(files: list[Path], out: TextIO, err: TextIO) -> int:
    failed = 0
    for path in files:
        filters = _load(path, err)
        if filters is None:
            failed += 1
            continue
        names = ", ".join(f.name for f in filters)
        print(
            f"{path}: ok ({len(filters)} filter{'s' if len(filters) != 1 else ''}: {names})",
            file=out,
        )
    return 1 if failed else 0


def _test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    filters = _load(args.file, err)
    if filters is None:
        return 1
    schemas = lsst_schemas(args)
    alerts: list[Alert] = []
    failed = 0
    for path in args.alerts:
        try:
            alerts.extend(decode_message(path.read_bytes(), schemas))
        except DecodeError as error:
            print(f"{path}: {error.stage}: {error.reason}", file=err)
            failed += 1
        except OSError as error:
            print(f"{path}: cannot read: {error.strerror or error}", file=err)
            failed += 1
    runner = LocalRunner(FilterSet(0, filters))
    started = time.perf_counter()
    batch = runner.evaluate(alerts)
    batch_seconds = time.perf_counter() - started
    if batch.rejected:
        print(f"{len(batch.rejected)} alerts rejected by an annotator", file=err)
    alerts, result = batch.alerts, batch.result
    single: list[float] = []
    for alert in alerts[:MAX_TIMED_ALERTS]:
        t0 = time.perf_counter()
        runner.evaluate([alert])
        single.append(time.perf_counter() - t0)
    if not args.no_matches:
        for item in batch_reports(runner.compiled, result, alerts, batch.annotations):
            if isinstance(item, FilterMatch):
                print(json.dumps(lite_record(item), allow_nan=False, default=str), file=out)
    n = len(alerts)
    p50, p99 = (np.percentile(single, [50, 99]) * 1e6) if single else (math.nan, math.nan)
    print(
        f"{n} alerts from {len(args.alerts)} file(s), {len(filters)} filter(s); "
        f"per-alert cost p50 {p50:.0f} us, p99 {p99:.0f} us (each alert alone); "
        f"batch {batch_seconds / max(n, 1) * 1e6:.1f} us/alert",
        file=err,
    )
    for flt in filters:
        outcome = result.outcomes[flt.name]
        fraction = outcome.matched / n if n else 0.0
        line = (
            f"{flt.name}: evaluated {n}, matched {outcome.matched}, fraction {fraction:.2%}, "
            f"errors {outcome.errors}"
        )
        if outcome.failure:
            line += f" (failed: {outcome.failure})"
        print(line, file=err)
        if n and fraction > WARN_MATCH_FRACTION:
            print(
                f"warning: {flt.name} passes {fraction:.1%} of the alerts (more than "
                f"{WARN_MATCH_FRACTION:.0%}); it would likely flood its topic",
                file=err,
            )
        if flt.name in result.flagged:
            print(f"warning: {flt.name} errors on {outcome.errors / n:.1%} of the alerts", file=err)
    return 1 if failed else 0
