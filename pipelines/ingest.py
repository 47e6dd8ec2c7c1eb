"""The ingest pipeline: survey topics -> DecodeAlerts -> decoded alerts and dead letters.

The first stages of the broker, on their own: KafkaIO reads the alert topics (with their
topic/partition/offset, offsets committed on checkpoint), DecodeAlerts turns each message into
the alert model, the alerts go to a decoded topic as JSON and the failures to
``alertflow.deadletter`` with their stage, reason and source.

    alertflow submit ingest --topics alerts.ztf,alerts.lsst --decoded alertflow.decoded
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
from apache_beam.runners.runner import PipelineResult

from pipelines.flink import ClusterEndpoints, job_parser, read_from_kafka, submit, write_to_kafka
from transforms.decode_alerts import DecodeAlerts
from transforms.publish import alert_message, dead_letter_message, kafka_record
from transforms.topics import ALERT_TOPICS, DEADLETTER_TOPIC, DECODED_TOPIC

KV = tuple[bytes, bytes]


def build(
    p: beam.Pipeline,
    endpoints: ClusterEndpoints,
    topics: Sequence[str],
    group_id: str,
    decoded_topic: str,
    deadletter_topic: str = DEADLETTER_TOPIC,
) -> None:
    """Wire the stages; the labels are the names the Flink UI shows."""
    decoded = (
        p
        | "ReadAlerts" >> read_from_kafka(endpoints, topics, group_id, with_metadata=True)
        | "ToKafkaRecord" >> beam.Map(kafka_record)
        | "DecodeAlerts" >> DecodeAlerts()
    )
    (
        decoded[DecodeAlerts.ALERTS]
        | "AlertToMessage" >> beam.Map(alert_message).with_output_types(KV)
        | "PublishDecoded" >> write_to_kafka(endpoints, decoded_topic)
    )
    (
        decoded[DecodeAlerts.DEAD_LETTERS]
        | "DeadLetterToMessage" >> beam.Map(dead_letter_message).with_output_types(KV)
        | "PublishDeadLetters" >> write_to_kafka(endpoints, deadletter_topic)
    )


def run(argv: Sequence[str] | None = None) -> PipelineResult:
    """Submit the ingest job to the stack's Flink cluster; returns once it is submitted."""
    parser = job_parser(__doc__, "alertflow-ingest", parallelism=1)
    parser.add_argument("--topics", default=",".join(ALERT_TOPICS), help="comma-separated")
    parser.add_argument("--decoded", default=DECODED_TOPIC)
    parser.add_argument("--deadletter", default=DEADLETTER_TOPIC)
    args, beam_args = parser.parse_known_args(argv)
    return submit(
        lambda p, endpoints: build(
            p, endpoints, args.topics.split(","), args.group_id, args.decoded, args.deadletter
        ),
        args.job_name,
        args.parallelism,
        beam_args,
    )
