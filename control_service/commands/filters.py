"""``alertflow filters check|test``: validate filter files, and try them on real alert files.

``alertflow filters check FILE.yaml...`` validates every filter document in the files and prints
each problem as ``FILE:LINE:COLUMN: PATH: MESSAGE`` on stderr (exit code 1), or one ``ok`` line
per file (exit code 0).

``alertflow filters test FILE.yaml --alerts ALERTS...`` decodes the alert files (ZTF Avro, Rubin
Avro containers or wire-format messages, as ``alertflow inspect`` reads them), evaluates all the
filters of FILE.yaml together, exactly as the pipeline does (one compiled filter set, column-wise
over the batch), and prints every match as one JSON line on stdout
(``{"filter", "owner", "alert_id", "survey", "fields": {...}}``, the fields of the filter's
``spec.output.fields``). Then it prints a summary per filter on stderr: alerts evaluated,
matched, fraction, errors, the per-alert cost (p50/p99 of evaluating each alert on its own) and
the batch cost per alert. A filter passing more than 5% of the alerts gets a warning: that
usually floods its topic. Annotation fields have no values here (the annotators do not run in
this command), so a filter that needs them reports every alert as an error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from transforms.alert_model import Alert
from transforms.annotate.transform import (
    AnnotateConfig,
    AnnotatedAlert,
    annotate_batch,
    load_annotators,
    needed_annotators,
)
from transforms.decode import DecodeError, decode_message
from transforms.filters.annotations import AnnotationColumns
from transforms.filters.compile import compile_filter_set
from transforms.filters.document import Filter, FilterSet, FilterValidationError, load_filter_file
from transforms.publish import lite_fields
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas

#: A filter passing more than this fraction of alerts gets a warning (BOOM rejects above 5%).
WARN_MATCH_FRACTION = 0.05
#: Alerts timed one by one for the per-alert cost percentiles.
MAX_TIMED_ALERTS = 2000


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``filters`` subcommand (actions ``check`` and ``test``)."""
    parser = subparsers.add_parser(
        "filters",
        help="validate filter files and test them on alert files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="filters_action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate filter YAML files")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE.yaml")
    test = actions.add_parser("test", help="evaluate the filters of a file on alert files")
    test.add_argument("file", type=Path, metavar="FILE.yaml")
    test.add_argument("--alerts", nargs="+", type=Path, required=True, metavar="ALERTS")
    test.add_argument(
        "--schema-dir",
        type=Path,
        default=DEFAULT_LSST_SCHEMA_DIR,
        help="directory of lsst.vX_Y schema folders (default: the schemas shipped with alertflow)",
    )
    test.add_argument("--no-matches", action="store_true", help="print only the summary")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if args.filters_action == "check":
        return _check(args.files, out, err)
    return _test(args, out, err)


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
        print(f"{path}: ok ({len(filters)} filter{'s' if len(filters) != 1 else ''}: {names})", file=out)
    return 1 if failed else 0


def _annotate(
    filter_set: FilterSet, alerts: list[Alert], err: TextIO
) -> tuple[list[Alert], AnnotationColumns | None]:
    """Run the annotators the filters name, as the broker does; alerts one rejects are left out
    (and counted on ``err``)."""
    needed = needed_annotators(filter_set)
    if not needed:
        return alerts, None
    results = annotate_batch(alerts, load_annotators(AnnotateConfig(enabled=needed)))
    kept = [r for r in results if isinstance(r, AnnotatedAlert)]
    if len(kept) < len(alerts):
        print(f"{len(alerts) - len(kept)} alerts rejected by an annotator", file=err)
    return [r.alert for r in kept], AnnotationColumns([r.annotations for r in kept])


def _test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    filters = _load(args.file, err)
    if filters is None:
        return 1
    schemas = LsstSchemas(args.schema_dir)
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
    compiled = compile_filter_set(FilterSet(0, filters))
    alerts, annotations = _annotate(FilterSet(0, filters), alerts, err)
    started = time.perf_counter()
    result = compiled.evaluate(alerts, annotations)
    batch_seconds = time.perf_counter() - started
    single: list[float] = []
    for alert in alerts[:MAX_TIMED_ALERTS]:
        t0 = time.perf_counter()
        compiled.evaluate([alert])
        single.append(time.perf_counter() - t0)
    if not args.no_matches:
        for index, alert in enumerate(alerts):
            for flt in filters:
                if result.outcomes[flt.name].matches[index]:
                    record = {
                        "filter": flt.name,
                        "owner": flt.owner,
                        "alert_id": alert.alert_id,
                        "survey": str(alert.survey),
                        "fields": lite_fields(tuple(flt.output.fields), alert),
                    }
                    print(json.dumps(record, allow_nan=False), file=out)
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
