"""Kafka messages for what the pipeline publishes: decoded-alert summaries and dead letters.

Pure functions from our records to ``(key, value)`` byte pairs, so that WriteToKafka (which
takes no headers here) gets self-describing values. Consumers can de-duplicate on the key.
"""

from __future__ import annotations

import base64
import json

from transforms.alert_model import Alert, to_json_dict
from transforms.decode import DeadLetter, KafkaRecord


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
