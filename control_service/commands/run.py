"""``alertflow run``: the broker on the local stack, in the foreground, until Ctrl-C.

Starts the stack (unless a healthy one is already running from the run folder), submits the
pipeline, sends a few sample messages through it and prints what came out, then prints the
Flink web UI address and waits. Ctrl-C (or `alertflow stack down` from another shell) stops
everything it started.

For now the pipeline is the smoke pipeline (Kafka -> Python step -> Kafka); the broker
pipeline replaces it as it lands.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from flink_deploy import stack
from pipelines import smoke

INPUT_TOPIC = "smoke.in"
OUTPUT_TOPIC = "smoke.out"
SAMPLES = ("ZTF18abcdefg rising in g", "LSST diaSource 1234 fading", "bogus near a bright star")


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("run", help="run the broker locally until Ctrl-C",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--taskmanagers", type=int, default=None, metavar="N")
    parser.add_argument("--detach", action="store_true",
                        help="leave the broker running and return instead of waiting")
    parser.set_defaults(func=run)
    return parser


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = stack.StackConfig.from_env(args.taskmanagers)
        owned = not stack.status(cfg)["healthy"]
        if owned:
            say("starting the local stack ...")
            stack.up(cfg, log=say)
        else:
            say(f"using the stack already running from {cfg.run_dir}")
    except stack.StackError as err:
        say(f"alertflow run: {err}")
        return 2
    try:
        create_topics(cfg.bootstrap_servers)
        say("submitting the smoke pipeline ...")
        smoke.run([f"--input={INPUT_TOPIC}", f"--output={OUTPUT_TOPIC}",
                   "--job-name=alertflow-smoke", "--parallelism=1"])  # fmt: skip
        for line in round_trip(cfg.bootstrap_servers):
            print(line, flush=True)
        say(f"\nFlink web UI: {cfg.flink_rest_url}")
        say(f"Send to topic {INPUT_TOPIC}, read from {OUTPUT_TOPIC} on {cfg.bootstrap_servers}.")
        if args.detach:
            say("Stop with: alertflow stack down")
            return 0
        say("Stop with Ctrl-C (or `alertflow stack down` from another shell).")
        wait_for_interrupt(cfg)
    finally:
        if owned and not args.detach:
            say("stopping the stack ...")
            stack.down(cfg, log=say)
    return 0


def create_topics(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics
    new = [NewTopic(t, num_partitions=1, replication_factor=1)
           for t in (INPUT_TOPIC, OUTPUT_TOPIC) if t not in existing]  # fmt: skip
    for future in admin.create_topics(new).values() if new else ():
        future.result(timeout=30)


def round_trip(bootstrap: str, deadline_s: float = 180) -> list[str]:
    """Send the samples through the running job and return what it wrote for them."""
    run_id = uuid.uuid4().hex[:6]
    keys = {f"{run_id}-{i}".encode(): text for i, text in enumerate(SAMPLES)}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"alertflow-run-{run_id}",
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([OUTPUT_TOPIC])
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, text in keys.items():
        producer.produce(INPUT_TOPIC, key=key, value=text.encode())
    producer.flush(30)
    lines = []
    end = time.monotonic() + deadline_s
    while len(lines) < len(keys) and time.monotonic() < end:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None and msg.key() in keys:
            lines.append(f"{OUTPUT_TOPIC}: {json.dumps(json.loads(msg.value()))}")
    consumer.close()
    if len(lines) < len(keys):
        lines.append(f"only {len(lines)} of {len(keys)} samples came back in {deadline_s:.0f} s")
    return lines


def wait_for_interrupt(cfg: stack.StackConfig) -> None:
    """Block until Ctrl-C, SIGTERM, or the stack is taken down from elsewhere."""
    # Ctrl-C must stop the broker even when we were started with SIGINT ignored (a
    # background job of a non-interactive shell inherits that).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while any(stack.is_running(p) for p in stack.RunState(cfg.run_dir).load()):
            time.sleep(2)
    except KeyboardInterrupt:
        pass
