"""The smoke pipeline: Kafka in, a Python step in the worker pool, Kafka out.

It proves the stack end to end: cross-language KafkaIO read (offsets committed on checkpoint),
a Python DoFn run by an SDK worker that the worker pool forked, and a cross-language KafkaIO
write. Each output value is JSON: the input text, its upper-case form, and the PID of the
worker that made it.

    alertflow submit smoke --input smoke.in --output smoke.out

(Not `python -m pipelines.smoke`: functions pickled from __main__ lose their module globals.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.runners.runner import PipelineResult

from pipelines.flink import ClusterEndpoints, job_parser, read_from_kafka, submit, write_to_kafka


def shout(record: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """The smoke step: keep the key; the value becomes JSON with its upper-case text."""
    key, value = record
    text = value.decode("utf-8", errors="replace")
    out = {"input": text, "output": text.upper(), "worker_pid": os.getpid()}
    return key or b"", json.dumps(out).encode()


def build(
    p: beam.Pipeline,
    endpoints: ClusterEndpoints,
    input_topic: str,
    output_topic: str,
    group_id: str,
) -> None:
    """Wire Kafka -> shout -> Kafka; the step labels are the names the Flink UI shows."""
    (
        p
        | "ReadSmokeInput"
        >> read_from_kafka(endpoints, [input_topic], group_id, with_metadata=False)
        | "ShoutInPython" >> beam.Map(shout).with_output_types(tuple[bytes, bytes])
        | "WriteSmokeOutput" >> write_to_kafka(endpoints, output_topic)
    )


def run(argv: Sequence[str] | None = None) -> PipelineResult:
    """Submit the smoke job to the stack's Flink cluster; returns once the job is submitted."""
    parser = job_parser(__doc__, "alertflow-smoke", parallelism=1)
    parser.add_argument("--input", default="smoke.in")
    parser.add_argument("--output", default="smoke.out")
    args, beam_args = parser.parse_known_args(argv)
    return submit(
        lambda p, endpoints: build(p, endpoints, args.input, args.output, args.group_id),
        args.job_name,
        args.parallelism,
        beam_args,
    )
