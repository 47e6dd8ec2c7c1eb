"""The ingest pipeline: survey topics -> DecodeAlerts -> decoded alerts and dead letters.

The first stages of the broker, on their own: KafkaIO reads the alert topics (with their
topic/partition/offset, offsets committed on checkpoint), DecodeAlerts turns each message into
the alert model, the alerts go to a decoded topic as JSON and the failures to
``alertflow.deadletter`` with their stage, reason and source.

    alertflow submit ingest --topics alerts.ztf,alerts.lsst --decoded alertflow.decoded
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.kafka import ReadFromKafka, WriteToKafka
from apache_beam.runners.runner import PipelineResult

from pipelines.flink import ClusterEndpoints, kafka_consumer_config, submit
from transforms.decode import DecodeAlerts
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
    producer = {"bootstrap.servers": endpoints.bootstrap_servers}
    decoded = (
        p
        | "ReadAlerts"
        >> ReadFromKafka(
            consumer_config=kafka_consumer_config(endpoints.bootstrap_servers, group_id),
            topics=list(topics),
            with_metadata=True,
            commit_offset_in_finalize=True,
            expansion_service=endpoints.expansion_service,
        )
        | "ToKafkaRecord" >> beam.Map(kafka_record)
        | "DecodeAlerts" >> DecodeAlerts()
    )
    (
        decoded[DecodeAlerts.ALERTS]
        | "AlertToMessage" >> beam.Map(alert_message).with_output_types(KV)
        | "PublishDecoded"
        >> WriteToKafka(
            producer_config=producer,
            topic=decoded_topic,
            expansion_service=endpoints.expansion_service,
        )
    )
    (
        decoded[DecodeAlerts.DEAD_LETTERS]
        | "DeadLetterToMessage" >> beam.Map(dead_letter_message).with_output_types(KV)
        | "PublishDeadLetters"
        >> WriteToKafka(
            producer_config=producer,
            topic=deadletter_topic,
            expansion_service=endpoints.expansion_service,
        )
    )


def run(argv: Sequence[str] | None = None) -> PipelineResult:
    """Submit the ingest job to the stack's Flink cluster; returns once it is submitted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topics", default=",".join(ALERT_TOPICS), help="comma-separated")
    parser.add_argument("--decoded", default=DECODED_TOPIC)
    parser.add_argument("--deadletter", default=DEADLETTER_TOPIC)
    parser.add_argument("--group-id", default="alertflow-ingest")
    parser.add_argument("--job-name", default="alertflow-ingest")
    parser.add_argument("--parallelism", type=int, default=1)
    args, beam_args = parser.parse_known_args(argv)
    return submit(
        lambda p, endpoints: build(
            p, endpoints, args.topics.split(","), args.group_id, args.decoded, args.deadletter
        ),
        args.job_name,
        args.parallelism,
        beam_args,
    )
