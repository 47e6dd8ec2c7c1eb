"""What the pipeline publishes: filter matches, decoded-alert summaries and dead letters.

Pure functions turn our records into Kafka ``(key, value)`` byte pairs with self-describing
values (WriteToKafka takes no headers here); :class:`PublishMatches` writes each filter's
matches to that filter's own topic. Writes are at least once: consumers de-duplicate on the
key, ``<filter>/<alert_id>`` for matches.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import apache_beam as beam
import fastavro
from apache_beam.metrics import Metrics

from transforms.alert_model import Alert, to_json_dict
from transforms.annotation_model import to_json_dict as annotations_json
from transforms.decode import DeadLetter, KafkaRecord
from transforms.filters.catalogue import lookup
from transforms.filters.matches import FilterMatch
from transforms.filters.model import OutputFormat
from transforms.kafka_clients import ensure_topic, kafka_config

FULL_SCHEMA_PATH = Path(__file__).resolve().parent / "avro" / "alertflow.match.full.avsc"
FULL_SCHEMA = fastavro.parse_schema(json.loads(FULL_SCHEMA_PATH.read_text()))


def kafka_record(row: object) -> KafkaRecord:
    """A KafkaIO ``with_metadata`` row as the decoder's KafkaRecord."""
    return KafkaRecord(
        topic=row.topic,  # type: ignore[attr-defined]
        partition=int(row.partition),  # type: ignore[attr-defined]
        offset=int(row.offset),  # type: ignore[attr-defined]
        key=row.key,  # type: ignore[attr-defined]
        value=row.value,  # type: ignore[attr-defined]
        timestamp_ms=int(row.timestamp),  # type: ignore[attr-defined]
    )


def dead_letter_message(letter: DeadLetter) -> tuple[bytes, bytes]:
    """Key ``topic/partition/offset``; value JSON with stage, reason, source and the bytes.

    The original bytes are base64 in ``original_b64`` so the message can be replayed as it was.
    """
    key = f"{letter.topic}/{letter.partition}/{letter.offset}".encode()
    value = {
        "stage": letter.stage,
        "reason": letter.reason,
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "original_b64": base64.b64encode(letter.original).decode("ascii"),
    }
    return key, json.dumps(value).encode()


def alert_message(alert: Alert) -> tuple[bytes, bytes]:
    """Key ``survey/alert_id``; value the alert model as JSON (no cutouts, no original bytes)."""
    key = f"{alert.survey.value}/{alert.alert_id}".encode()
    return key, json.dumps(to_json_dict(alert)).encode()


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def lite_fields(fields: tuple[str, ...], alert: Alert) -> dict[str, Any]:
    """The alert-model fields a filter's ``output.fields`` names, as JSON-ready values."""
    out: dict[str, Any] = {}
    for name in fields:
        spec = lookup(name)
        getter = None if spec is None else spec.getter
        out[name] = None if getter is None else _json_value(getter(alert))
    return out


def match_key(match: FilterMatch) -> bytes:
    return f"{match.filter_name}/{match.alert.alert_id}".encode()


def lite_record(match: FilterMatch) -> dict[str, Any]:
    """A match as the ``lite`` format shows it: identity, the chosen fields, the annotations
    and tags. Also what the dry runs print."""
    return {
        "filter": match.filter_name,
        "owner": match.owner,
        "filter_set_version": match.filter_set_version,
        "survey": str(match.alert.survey),
        "alert_id": match.alert.alert_id,
        "object_id": match.alert.object_id,
        "fields": lite_fields(match.fields, match.alert),
        "annotations": None if match.annotations is None else annotations_json(match.annotations),
    }


def lite_message(match: FilterMatch, processed_at_ms: int) -> tuple[bytes, bytes]:
    """The ``lite`` format: :func:`lite_record` and when it was processed, as JSON."""
    value = {**lite_record(match), "processed_at_ms": processed_at_ms}
    return match_key(match), json.dumps(value, allow_nan=False, default=str).encode()


def full_message(match: FilterMatch, processed_at_ms: int) -> tuple[bytes, bytes]:
    """The ``full`` format: the original packet plus identity and annotations, in Avro
    (schemaless, schema in transforms/avro/alertflow.match.full.avsc)."""
    record = {
        "filter": match.filter_name,
        "owner": match.owner,
        "filter_set_version": match.filter_set_version,
        "survey": str(match.alert.survey),
        "alert_id": match.alert.alert_id,
        "object_id": None if match.alert.object_id is None else str(match.alert.object_id),
        "processed_at_ms": processed_at_ms,
        "annotations_json": None
        if match.annotations is None
        else json.dumps(annotations_json(match.annotations), default=str),
        "original": match.alert.original,
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, FULL_SCHEMA, record)
    return match_key(match), buf.getvalue()


def read_full_message(value: bytes) -> dict[str, Any]:
    """Decode a ``full`` match (what a consumer does)."""
    record = fastavro.schemaless_reader(io.BytesIO(value), FULL_SCHEMA)
    assert isinstance(record, dict), "FULL_SCHEMA is a record"
    return record


FORMATS = {OutputFormat.LITE: lite_message, OutputFormat.FULL: full_message}


class DeliveryError(RuntimeError):
    """Kafka did not acknowledge some matches of a bundle; the bundle is retried whole."""


COUNTER_NAMESPACE = "PublishMatches"
MATCHES_PUBLISHED_COUNTER = "matches_published"


class _PublishFn(beam.DoFn):
    def __init__(self, bootstrap_servers: str, partitions: int) -> None:
        self._bootstrap = bootstrap_servers
        self._partitions = partitions
        self._published = Metrics.counter(COUNTER_NAMESPACE, MATCHES_PUBLISHED_COUNTER)

    def setup(self) -> None:
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient

        self._producer = Producer(
            kafka_config(
                self._bootstrap,
                {"acks": "all", "linger.ms": 5, "message.max.bytes": 8 * 1024 * 1024},
            )
        )
        self._admin = AdminClient(kafka_config(self._bootstrap))
        self._topics: set[str] = set()
        self._failures: list[str] = []

    def _ensure_topic(self, topic: str) -> None:
        if topic in self._topics:
            return
        ensure_topic(self._bootstrap, topic, self._partitions, admin=self._admin)
        self._topics.add(topic)

    def _on_delivery(self, error: Any, _msg: Any) -> None:
        if error is not None:
            self._failures.append(str(error))

    def process(self, match: FilterMatch) -> tuple[()]:
        self._ensure_topic(match.topic)
        key, value = FORMATS[match.format](match, int(time.time() * 1000))
        while True:
            try:
                self._producer.produce(
                    match.topic, key=key, value=value, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)
        self._published.inc()
        return ()  # no output elements (Beam warns when process returns None)

    def finish_bundle(self) -> None:
        # The bundle (and so the checkpoint) completes only once Kafka has every match.
        remaining = self._producer.flush(60)
        failures, self._failures = self._failures, []
        if remaining or failures:
            raise DeliveryError(
                f"{remaining} matches unsent, {len(failures)} failed: {sorted(set(failures))[:3]}"
            )


class PublishMatches(beam.PTransform[beam.PCollection[FilterMatch], beam.PCollection[Any]]):
    """FilterMatch -> each filter's own Kafka topic, in the filter's format (lite or full).

    Input: ``PCollection[FilterMatch]``, any windowing. No output. The topic is created (with
    ``partitions`` partitions) the first time a filter matches. A bundle finishes only when
    Kafka acknowledged all its matches; a failed delivery fails the bundle, which the runner
    retries: at least once, never silently dropped. Counter ``PublishMatches/matches_published``.
    """

    def __init__(
        self, bootstrap_servers: str, partitions: int = 1, label: str | None = None
    ) -> None:
        super().__init__(label)
        self._bootstrap = bootstrap_servers
        self._partitions = partitions

    def expand(self, matches: beam.PCollection[FilterMatch]) -> beam.PCollection[Any]:
        published: beam.PCollection[Any] = matches | "Produce" >> beam.ParDo(
            _PublishFn(self._bootstrap, self._partitions)
        )
        return published
