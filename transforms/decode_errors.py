"""Why a message cannot become an alert: the stage that failed and a reason a person can act on.

Every decoding step (``transforms.avro_container``, ``transforms.schemas``' callers,
``transforms.packets``, ``transforms.decode``) raises :class:`DecodeError` and nothing else on
bad input; ``transforms.decode.decode_record`` turns it into a dead letter.
"""

from __future__ import annotations

from enum import StrEnum


class DecodeStage(StrEnum):
    """Where decoding failed; also the suffix of the per-stage dead-letter counter."""

    FRAMING = "framing"  # empty, wrong magic byte, truncated header, bad container framing
    SCHEMA = "schema"  # unknown schema id, unreadable or unsupported writer schema
    AVRO = "avro"  # the record's bytes do not match the writer schema
    MODEL = "model"  # decoded, but a field the alert model requires is missing or invalid


class DecodeError(Exception):
    """A message that cannot become an alert. ``reason`` tells a person what to do about it."""

    def __init__(self, stage: DecodeStage, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
