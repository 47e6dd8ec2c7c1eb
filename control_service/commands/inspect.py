"""``alertflow inspect FILE...``: print what the broker sees in alert files, one JSON per alert.

Accepts ZTF packets and any Avro container of alerts (``.avro``), and Rubin Confluent
wire-format messages (``.bin`` or any file starting with byte 0x00). Each alert is printed as one
line of JSON (the alert model without cutout and original bytes, see
``transforms.alert_model.to_json_dict``). A file that does not decode is reported on stderr
with its stage and reason, the other files are still printed, and the exit code is 1.

``--annotate`` runs the annotators on each file's alerts as the broker does and adds their
record to each line as ``"annotations"`` (``transforms.annotation_model.to_json_dict``); all of
them, or those of ``--annotators sky,dust``. An alert that an annotator rejects is reported on
stderr with the stage and reason, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from control_service.commands import Subparsers, add_command, add_schema_options, lsst_schemas
from transforms.alert_model import Alert, to_json_dict
from transforms.annotate.transform import AnnotateConfig, Annotator, annotate_batch, load_annotators
from transforms.annotation_model import to_json_dict as annotations_json
from transforms.decode import DeadLetter, decode_message
from transforms.decode_errors import DecodeError
from transforms.schemas import LsstSchemas


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "inspect", "print the decoded alerts of alert files as JSON lines", __doc__, run
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add_schema_options(parser)
    parser.add_argument("--pretty", action="store_true", help="indent the JSON")
    parser.add_argument(
        "--annotate", action="store_true", help="add each alert's annotations, as the broker's"
    )
    parser.add_argument(
        "--annotators",
        type=_annotators,
        default=frozenset(Annotator),
        metavar="NAME,...",
        help=f"with --annotate, only these (and what they need): {', '.join(Annotator)}",
    )
    return parser


def _annotators(text: str) -> frozenset[Annotator]:
    try:
        return frozenset(Annotator(name.strip()) for name in text.split(",") if name.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"{error}; the annotators are {', '.join(Annotator)}"
        ) from None


def iter_file_alerts(path: Path, schemas: LsstSchemas) -> Iterator[Alert]:
    """Every alert in one file (container or wire-format message). Raises DecodeError/OSError."""
    yield from decode_message(path.read_bytes(), schemas)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print every alert of ``args.files``; returns 0 if all decoded, 1 otherwise."""
    out = out or sys.stdout
    err = err or sys.stderr
    schemas = lsst_schemas(args)
    loaded = load_annotators(AnnotateConfig(enabled=args.annotators)) if args.annotate else None
    failed = 0
    for path in args.files:
        try:
            alerts = list(iter_file_alerts(path, schemas))
        except DecodeError as error:
            print(f"{path}: {error.stage}: {error.reason}", file=err)
            failed += 1
            continue
        except OSError as error:
            print(f"{path}: cannot read: {error.strerror or error}", file=err)
            failed += 1
            continue
        if loaded is None:
            lines = [to_json_dict(alert) for alert in alerts]
        else:
            lines = []
            for alert, result in zip(alerts, annotate_batch(alerts, loaded), strict=True):
                if isinstance(result, DeadLetter):
                    print(
                        f"{path}: alert {alert.alert_id}: {result.stage}: {result.reason}", file=err
                    )
                    failed += 1
                else:
                    lines.append(
                        {
                            **to_json_dict(result.alert),
                            "annotations": annotations_json(result.annotations),
                        }
                    )
        for line in lines:
            json.dump(line, out, indent=2 if args.pretty else None, allow_nan=False)
            out.write("\n")
    return 1 if failed else 0
