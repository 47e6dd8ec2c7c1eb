"""The broker: survey topics -> decode -> annotate -> filter (live filter sets) -> topics.

    alertflow submit broker [--topics alerts.ztf,alerts.lsst] [--parallelism N]

Stages (their labels are the names in the Flink UI):

- ``ReadAlerts``: KafkaIO over the survey topics, with topic/partition/offset, offsets
  committed on checkpoint; ``DecodeAlerts`` into the alert model.
- The live filter sets: every worker process follows the compacted config topic of whole
  filter-set snapshots (``transforms.filters.live``; a side input fails Flink's checkpoints
  with this Beam version).
- ``AnnotateAlerts``: the annotators the active filter set needs, batched.
- ``ApplyFilters``: the newest valid filter set, compiled once per version, over each batch.
- ``PublishMatches``: each filter's matches to its own topic, lite or full.
- ``PublishDeadLetters``: decode and annotate failures to ``alertflow.deadletter``;
  ``PublishFilterErrors``: per-filter error reports to ``alertflow.filter-errors``.

With no snapshot on the config topic no filter is active, and no alert matches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import apache_beam as beam
from apache_beam.runners.runner import PipelineResult

from pipelines.flink import ClusterEndpoints, job_parser, read_from_kafka, submit, write_to_kafka
from transforms.annotate.transform import AnnotateAlerts
from transforms.apply_filters import ERRORS, MATCHES, ApplyFilters
from transforms.decode_alerts import DecodeAlerts
from transforms.filters.live import ConfigTopicFeed
from transforms.filters.matches import FilterErrorReport
from transforms.publish import PublishMatches, dead_letter_message, kafka_record
from transforms.topics import ALERT_TOPICS, CONFIG_TOPIC, DEADLETTER_TOPIC, FILTER_ERRORS_TOPIC

KV = tuple[bytes, bytes]


def filter_error_message(report: FilterErrorReport) -> KV:
    return report.filter_name.encode(), json.dumps(asdict(report)).encode()


def build(
    p: beam.Pipeline,
    endpoints: ClusterEndpoints,
    topics: Sequence[str],
    group_id: str,
    partitions: int,
    config_topic: str = CONFIG_TOPIC,
    deadletter_topic: str = DEADLETTER_TOPIC,
) -> None:
    """Wire the broker's stages (see the module doc)."""
    bootstrap = endpoints.bootstrap_servers
    # The live filter sets: each worker process follows the config topic itself (see
    # transforms/filters/live.py for why this is not a side input on Flink).
    feed = ConfigTopicFeed(bootstrap, config_topic)
    decoded = (
        p
        | "ReadAlerts" >> read_from_kafka(endpoints, topics, group_id, with_metadata=True)
        | "ToKafkaRecord" >> beam.Map(kafka_record)
        | "DecodeAlerts" >> DecodeAlerts()
    )
    annotated = decoded[DecodeAlerts.ALERTS] | "AnnotateAlerts" >> AnnotateAlerts(feed=feed)
    filtered = annotated[AnnotateAlerts.ANNOTATED] | "ApplyFilters" >> ApplyFilters(feed=feed)
    _ = filtered[MATCHES] | "PublishMatches" >> PublishMatches(bootstrap, partitions)
    (
        (decoded[DecodeAlerts.DEAD_LETTERS], annotated[AnnotateAlerts.DEAD_LETTERS])
        | "AllDeadLetters" >> beam.Flatten()
        | "DeadLetterToMessage" >> beam.Map(dead_letter_message).with_output_types(KV)
        | "PublishDeadLetters" >> write_to_kafka(endpoints, deadletter_topic)
    )
    (
        filtered[ERRORS]
        | "FilterErrorToMessage" >> beam.Map(filter_error_message).with_output_types(KV)
        | "PublishFilterErrors" >> write_to_kafka(endpoints, FILTER_ERRORS_TOPIC)
    )


def run(argv: Sequence[str] | None = None) -> PipelineResult:
    """Submit the broker to the stack's Flink cluster; returns once it is submitted."""
    parser = job_parser(__doc__, "alertflow-broker", parallelism=2)
    parser.add_argument("--topics", default=",".join(ALERT_TOPICS), help="comma-separated")
    parser.add_argument("--config-topic", default=CONFIG_TOPIC)
    parser.add_argument("--deadletter-topic", default=DEADLETTER_TOPIC)
    parser.add_argument(
        "--output-partitions",
        type=int,
        default=1,
        help="partitions of each filter's topic when the broker creates it",
    )
    parser.add_argument(
        "--output-executable",
        type=Path,
        default=None,
        metavar="JAR",
        help="write the job as a Flink application jar instead of submitting it",
    )
    args, beam_args = parser.parse_known_args(argv)
    return submit(
        lambda p, endpoints: build(
            p,
            endpoints,
            args.topics.split(","),
            args.group_id,
            args.output_partitions,
            args.config_topic,
            args.deadletter_topic,
        ),
        args.job_name,
        args.parallelism,
        beam_args,
        args.output_executable,
    )
