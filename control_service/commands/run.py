"""``alertflow run``: the broker on the local stack, in the foreground, until Ctrl-C.

Holds the run folder (one ``run`` or ``stack up`` at a time), starts the stack (unless a
healthy one is already running from the run folder) and the control service, applies the
example filters (examples/filters) through the control service, submits the broker pipeline,
replays the sample alerts from shared/data into the survey topics and prints what each filter
selected. Then it prints the Flink web UI, the control service and its local admin token, and
waits: Ctrl-C (or `alertflow stack down` from another shell) stops what it started. A failure
or an interrupt on the way stops it too.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from control_service.client import ControlClient, ControlError
from control_service.commands import Subparsers, add_command, replay
from control_service.commands.jobs import cancel_jobs
from flink_deploy.autoscaler.policy import DEFAULT_POLICY_FILE
from flink_deploy.settings import REPO_ROOT
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import (
    HOST,
    StackConfig,
    StackError,
    StackMode,
    running_mode,
    shared_data,
)
from flink_deploy.stack.runlock import hold
from flink_deploy.stack.services import ADMIN_TOKEN_FILE, local_admin_token
from pipelines import broker
from transforms.decode import decode_message
from transforms.filters.document import load_filter_file
from transforms.filters.model import Filter, FilterSet
from transforms.kafka_clients import kafka_config
from transforms.local import match_locally
from transforms.schemas import LsstSchemas
from transforms.topics import LSST_TOPIC, ZTF_TOPIC

EXAMPLES = REPO_ROOT / "examples" / "filters"
JOB_NAME = "alertflow-broker"


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "run", "run the broker locally until Ctrl-C", __doc__, run)
    parser.add_argument("--taskmanagers", type=int, default=None, metavar="N")
    parser.add_argument(
        "--autoscale",
        action="store_true",
        help="run the broker as a reactive-mode application cluster with the "
        "autoscaler (default policy: flink_deploy/autoscaler/default-policy.yaml)",
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="leave the broker running and return instead of waiting",
    )
    return parser


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def sample_alerts() -> dict[str, list[Path]]:
    """The sample alert files in shared/data (beside the clone or ALERTFLOW_SHARED_DATA)."""
    data = shared_data()
    return {
        ZTF_TOPIC: sorted((data / "ztf" / "alerts").glob("*/*.avro")),
        LSST_TOPIC: sorted((data / "lsst" / "alerts").glob("*.avro")),
    }


def run(args: argparse.Namespace) -> int:
    try:
        cfg = StackConfig.from_env(
            args.taskmanagers, StackMode.APPLICATION if args.autoscale else None
        )
        with hold(cfg, "alertflow run" + (" --autoscale" if args.autoscale else "")):
            return _run(args, cfg)
    except StackError as err:
        say(f"alertflow run: {err}")
        return 2
    except ControlError as err:
        say(f"alertflow run: the control service refused the example filters: {err}")
        return 1
    except KeyboardInterrupt:
        say("alertflow run: interrupted")
        return 130


def _run(args: argparse.Namespace, cfg: StackConfig) -> int:
    """Everything ``run`` starts is stopped again when it fails or is interrupted, and when it
    ends, unless it ends detached: the whole stack if it started it, else its own services."""
    owned = not supervisor.status(cfg)["healthy"]
    started: list[str] = []
    detached = False
    try:
        if owned:
            say(f"starting the local stack ({cfg.mode} mode) ...")
            started += [p.name for p in supervisor.up(cfg, log=say)]
        elif (mode := running_mode(cfg)) != cfg.mode:
            raise StackError(
                f"the stack running from {cfg.run_dir} is in {mode} mode; stop it first (make stop)"
            )
        else:
            say(f"using the stack already running from {cfg.run_dir}")
        recorded = supervisor.RunState(cfg.run_dir).load()
        running = {p.name for p in recorded if supervisor.is_running(p)}
        if "alertflow-control" not in running:
            started.append(supervisor.start_control(cfg).name)
        if args.autoscale and "alertflow-autoscaler" not in running:
            started.append(supervisor.start_autoscaler(cfg, DEFAULT_POLICY_FILE).name)
            say(
                f"autoscaler: http://{HOST}:{cfg.autoscaler_port}/api/v1/scaling "
                f"(policy {DEFAULT_POLICY_FILE.relative_to(REPO_ROOT)})"
            )
        files = sorted(EXAMPLES.glob("*.yaml"))
        filters = tuple(f for p in files for f in load_filter_file(str(p)))
        control = ControlClient(cfg.control_url, local_admin_token(cfg))
        applied = control.apply_filters("\n---\n".join(p.read_text() for p in files))
        say(f"applied filter set v{applied['version']}: {', '.join(f.name for f in filters)}")
        if cfg.mode is StackMode.SESSION:
            replaced = cancel_jobs(cfg.flink_rest_url, [JOB_NAME])
            if replaced:
                say(f"cancelled the broker already running ({', '.join(replaced)})")
            say("submitting the broker pipeline ...")
            broker.run([f"--job-name={JOB_NAME}", "--parallelism=2"])
        counts_before = topic_counts(cfg.bootstrap_servers, [f.output.topic for f in filters])
        for topic, alert_files in sample_alerts().items():
            if alert_files:
                replay.run(replay_arguments(cfg, topic, alert_files), err=sys.stderr)
        expected = expected_matches(filters)
        say("waiting for the matches ...")
        new = wait_for_matches(cfg.bootstrap_servers, filters, counts_before, expected)
        for flt in filters:
            print(
                f"{flt.name:<28} {new[flt.output.topic]:>5} matches on {flt.output.topic} "
                f"(computed locally: {expected[flt.name]})",
                flush=True,
            )
        say(f"\nFlink web UI:    {cfg.flink_rest_url}")
        say(
            f"Control service: {cfg.control_url} (admin token in {cfg.run_dir / ADMIN_TOKEN_FILE}"
            f": {local_admin_token(cfg)})"
        )
        say(
            "Apply a filter: alertflow filters apply -f FILE (it uses that token), or try one "
            "locally first: alertflow filters test -f FILE --alerts ALERTS..."
        )
        if args.detach:
            detached = True
            say("Stop with: alertflow stack down")
            return 0
        say("Stop with Ctrl-C (or `alertflow stack down` from another shell).")
        wait_for_interrupt(cfg)
        return 0
    finally:
        if not detached:
            if owned:
                say("stopping the stack ...")
                supervisor.down(cfg, log=say)
            else:
                for name in reversed(started):
                    try:
                        supervisor.stop_service(cfg, name)
                        say(f"stopped {name}")
                    except StackError as err:  # stopped from elsewhere meanwhile
                        say(f"alertflow run: {err}")


def replay_arguments(cfg: StackConfig, topic: str, files: list[Path]) -> argparse.Namespace:
    """``alertflow replay`` of ``files`` onto ``topic`` of this stack, as parsed arguments."""
    parser = argparse.ArgumentParser(prog="alertflow")
    replay.register(parser.add_subparsers())
    return parser.parse_args(
        [
            "replay",
            "--bootstrap",
            cfg.bootstrap_servers,
            "--topic",
            topic,
            "--no-progress",
            *map(str, files),
        ]
    )


def expected_matches(filters: tuple[Filter, ...]) -> Counter[str]:
    """Matches per filter on the sample alerts, computed in this process."""
    schemas = LsstSchemas()
    alerts = [
        a
        for files in sample_alerts().values()
        for path in files
        for a in decode_message(path.read_bytes(), schemas)
    ]
    counts = Counter({f.name: 0 for f in filters})
    counts.update(m.filter_name for m in match_locally(FilterSet(0, filters), alerts)[0])
    return counts


def wait_for_matches(
    bootstrap: str,
    filters: tuple[Filter, ...],
    before: Counter[str],
    expected: Counter[str],
    deadline_s: float = 180.0,
) -> Counter[str]:
    """New messages per filter topic, once each has at least the expected count or at the
    deadline (writes are at least once, so more is possible)."""
    end = time.monotonic() + deadline_s
    while True:
        counts = topic_counts(bootstrap, [f.output.topic for f in filters])
        new = Counter(
            {f.output.topic: counts[f.output.topic] - before[f.output.topic] for f in filters}
        )
        if all(new[f.output.topic] >= expected[f.name] for f in filters):
            return new
        if time.monotonic() > end:
            say(f"not all matches arrived within {deadline_s:.0f} s")
            return new
        time.sleep(1)


def topic_counts(bootstrap: str, topics: list[str]) -> Counter[str]:
    """Messages in each topic (0 for one that does not exist yet)."""
    metadata = AdminClient(kafka_config(bootstrap)).list_topics(timeout=10).topics
    consumer = Consumer(kafka_config(bootstrap, {"group.id": "alertflow-run-counts"}))
    counts: Counter[str] = Counter()
    for topic in topics:
        for partition in metadata[topic].partitions if topic in metadata else ():
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            counts[topic] += high - low
    consumer.close()
    return counts


def wait_for_interrupt(cfg: StackConfig) -> None:
    """Block until Ctrl-C, SIGTERM, or the stack is taken down from elsewhere."""
    # Ctrl-C must stop the broker even when we were started with SIGINT ignored (a
    # background job of a non-interactive shell inherits that).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while any(supervisor.is_running(p) for p in supervisor.RunState(cfg.run_dir).load()):
            time.sleep(2)
    except KeyboardInterrupt:
        pass
