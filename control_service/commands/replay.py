"""``alertflow replay``: publish alert files to a Kafka topic in each survey's own wire form.

ZTF alerts are sent as one-alert Avro containers (the packet as ZTF sends it), LSST alerts in
Confluent wire format (0x00, 4-byte schema id, Avro body). Pacing: as fast as possible (default),
``--rate N`` alerts/s, or an LSST visit profile ``--visit-size N --visit-interval S`` (a burst
of N alerts every S seconds, for ``--visits`` visits; with ``--rate`` too, the burst itself is
paced). When more alerts are needed than the files hold, they are cycled and every alert after
the first pass gets fresh ids (ZTF candid, LSST alertId/diaSourceId), so downstream sees
distinct alerts. Each message carries its send time as the Kafka timestamp, so latency can be
measured downstream. A progress line goes to stderr and a summary line (alerts sent, bytes,
achieved rate) to stdout.

A FILE may be a directory: it stands for the alert files under it at any depth (``*.avro``
containers and ``*.bin`` wire-format messages), in sorted order. A file that cannot be read or
decoded is not sent; the others are. Each bad file is named on stderr with its reason, with a
count at the end, and the exit status is then 1 (2 if no file can be sent).

The messages (loading, fresh ids) are control_service/replay_messages.py, the engine (the
schedule, the sending loop) control_service/replay_engine.py; ``alertflow replay --serve`` runs
the same engine as a service with the common control API (control_service/replay_service.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from control_service.commands import (
    Subparsers,
    add_command,
    add_listen_options,
    add_schema_options,
    lsst_schemas,
)
from control_service.replay_engine import (
    DEFAULT_TOPICS,
    Schedule,
    Sender,
    format_summary,
    kafka_producer,
    plan_count,
)
from control_service.replay_messages import ReplayError, check_fresh_ids, load_files
from control_service.replay_service import serve
from flink_deploy.stack.config import HOST
from transforms.kafka_clients import DEFAULT_BOOTSTRAP
from transforms.topics import LSST_TOPIC, ZTF_TOPIC


def format_progress(done: int, total: int, elapsed: float, width: int = 30) -> str:
    """A one-line progress bar, e.g. ``[#####.....] 500/1000 alerts, 1,100 alerts/s``."""
    filled = int(width * done / total) if total else width
    rate = done / elapsed if elapsed > 0 else 0.0
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} alerts, {rate:,.0f} alerts/s"


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "replay", "publish alert files to Kafka in the survey's wire form", __doc__, run
    )
    parser.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="alert file, or directory: the *.avro and *.bin files under it",
    )
    parser.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP, help="Kafka bootstrap servers")
    parser.add_argument(
        "--topic", default=None, help=f"topic (default: {ZTF_TOPIC} / {LSST_TOPIC} by survey)"
    )
    parser.add_argument("--rate", type=float, default=None, help="alerts/s (default: max)")
    parser.add_argument("--visit-size", type=int, default=None, help="alerts per visit burst")
    parser.add_argument("--visit-interval", type=float, default=None, help="seconds per visit")
    parser.add_argument("--visits", type=int, default=1, help="visits to send (visit profile)")
    parser.add_argument(
        "--count", type=int, default=None, help="alerts to send (default: one pass, or all visits)"
    )
    add_schema_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    service = parser.add_argument_group(
        "service",
        "--serve: run the replay service; FILE and the options above are its "
        "initial config, changed with PUT /api/v1/config, sent with POST /api/v1/actions/start",
    )
    service.add_argument("--serve", action="store_true", help="run as a service")
    add_listen_options(service, HOST, 5002)
    service.add_argument("--audit-log", type=Path, help="JSON lines of config changes, actions")
    return parser


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Send the alerts of the good files; each bad file is named on stderr with its reason.

    Returns 0 if every file was sent and every message delivered; 1 if some files were bad (the
    others were sent) or some deliveries failed; 2 on a usage error or when nothing can be sent.
    With ``--serve``, runs the replay service instead (control_service/replay_service.py).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if args.serve:
        return serve(args, out, err)
    if not args.files:
        print(
            "replay: give the alert files or directories to send (FILE ...), or --serve", file=err
        )
        return 2
    try:
        schedule = Schedule(args.rate, args.visit_size, args.visit_interval)
        schemas = lsst_schemas(args)
        loaded = load_files(args.files, schemas)
        for problem in loaded.problems:
            print(f"replay: {problem}", file=err)
        if not loaded.messages:
            raise ReplayError(f"nothing to send: {_bad_files(len(loaded.problems))}")
        messages = loaded.messages
        count = plan_count(args, len(messages))
        surveys = {m.survey for m in messages}
        if args.topic is None and len(surveys) > 1:
            raise ReplayError("files mix ZTF and LSST alerts: give --topic or replay them apart")
        topic = args.topic or DEFAULT_TOPICS[next(iter(surveys))]
        check_fresh_ids(messages, count, schemas)
    except ReplayError as error:
        print(f"replay: {error}", file=err)
        return 2

    sender = Sender(
        kafka_producer(args.bootstrap),
        messages,
        count,
        schemas,
        schedule,
        {survey: topic for survey in surveys},
    )

    def show(s: Sender) -> None:
        print("\r" + format_progress(s.sent, count, s.elapsed()), end="", file=err, flush=True)

    sender.run(None if args.no_progress else show)
    if not args.no_progress:
        print("\r" + format_progress(sender.sent, count, sender.elapsed()), file=err)
    print(format_summary(sender.sent, sender.bytes, sender.elapsed(), sender.failed), file=out)
    for reason in sorted(set(sender.failures))[:5]:
        print(f"replay: delivery failed: {reason}", file=err)
    if loaded.problems:
        print(
            f"replay: sent {len(loaded.files)} of {loaded.total_files} files; not sent: "
            f"{_bad_files(len(loaded.problems))}",
            file=err,
        )
    return 1 if sender.failed or loaded.problems else 0


def _bad_files(count: int) -> str:
    return "1 bad file, named above" if count == 1 else f"{count} bad files, each named above"
