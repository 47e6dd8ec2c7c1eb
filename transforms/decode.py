"""Decode ZTF and LSST alert messages into the alert model; a failure is a dead letter.

Pure functions, tested without Beam (``transforms.decode_alerts.DecodeAlerts`` runs them in a
pipeline):

* :func:`decode_ztf` - one ZTF Kafka message: an Avro object container (OCF) holding one alert
  with its writer schema embedded (ZTF schema 1.3 to 4.02).
* :func:`decode_lsst_wire` - one Rubin Kafka message in Confluent wire format: byte 0 = 0x00,
  bytes 1-4 = big-endian schema id (major*100+minor), then the schemaless Avro body.
* :func:`decode_container` - a plain OCF file with one or many alerts (backfill); the survey is
  told by the writer schema's name (``ztf.alert`` or ``lsst.vX_Y.alert``).
* :func:`decode_message` - any of the above, told apart by the first bytes.
* :func:`decode_record` - a :class:`KafkaRecord`'s alerts, or its :class:`DeadLetter`.

They raise :class:`~transforms.decode_errors.DecodeError` (stage + actionable reason) and
nothing else on bad input; :func:`decode_record` never raises. The container framing is
``transforms.avro_container``, the mapping of decoded packets to the model
``transforms.packets``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from fastavro.schema import to_parsing_canonical_form

from transforms.alert_model import Alert, Survey
from transforms.avro_container import (
    OCF_MAGIC,
    container_blocks,
    container_codec,
    one_record_container,
    parse_container_header,
)
from transforms.avro_projection import DECODE_ERRORS, SchemaError
from transforms.decode_errors import DecodeError, DecodeStage
from transforms.packets import lsst_alert_from_record, ztf_alert_from_record
from transforms.schemas import (
    LSST_VERSION_PATTERN,
    CompiledSchema,
    LsstSchemas,
    container_schema,
    lsst_schema_id,
    lsst_version,
)

CONFLUENT_MAGIC = 0


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """A Kafka message as the decoder sees it. ``timestamp_ms`` is the message timestamp."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that failed a stage, with everything needed to find, understand and replay it.

    ``original`` is the message value exactly as received (b"" for a tombstone); ``stage`` is a
    :class:`DecodeStage` value (later stages of the pipeline may use their own names).
    """

    original: bytes
    stage: str
    reason: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


def _describe(err: Exception) -> str:
    """A reader exception in words: running off the end is the common, actionable case."""
    if isinstance(err, (IndexError, struct.error)):
        return "the record runs past the end of the bytes: truncated?"
    return f"{type(err).__name__}: {err}"


def _run_reader(compiled: CompiledSchema, buf: bytes, pos: int, end: int) -> dict[str, Any]:
    try:
        record, stop = compiled.reader(buf, pos, end)
    except DECODE_ERRORS as err:
        raise DecodeError(
            DecodeStage.AVRO,
            f"bytes do not match writer schema {compiled.name} ({_describe(err)}); "
            "the packet is corrupt or labelled with the wrong schema",
        ) from err
    if stop != end:
        raise DecodeError(
            DecodeStage.AVRO,
            f"record under writer schema {compiled.name} ends after {stop - pos} bytes but "
            f"{end - pos} were given; the packet is corrupt or labelled with the wrong schema",
        )
    return record


def decode_lsst_wire(message: bytes, schemas: LsstSchemas) -> Alert:
    """Decode one Rubin alert in Confluent wire format. Raises DecodeError only."""
    if len(message) < 5:
        raise DecodeError(
            DecodeStage.FRAMING,
            f"message is {len(message)} bytes; Confluent wire format needs a magic byte and a "
            "4-byte schema id before the Avro body",
        )
    if message[0] != CONFLUENT_MAGIC:
        raise DecodeError(
            DecodeStage.FRAMING,
            f"magic byte is 0x{message[0]:02x}, expected 0x00 (Confluent wire format)",
        )
    schema_id = int.from_bytes(message[1:5], "big")
    try:
        compiled = schemas.get(schema_id)
    except SchemaError as err:
        raise DecodeError(DecodeStage.SCHEMA, err.reason) from err
    record = _run_reader(compiled, message, 5, len(message))
    return lsst_alert_from_record(record, lsst_version(schema_id), message)


_DEFAULT_SCHEMAS: LsstSchemas | None = None


def _default_schemas() -> LsstSchemas:
    global _DEFAULT_SCHEMAS
    if _DEFAULT_SCHEMAS is None:
        _DEFAULT_SCHEMAS = LsstSchemas()
    return _DEFAULT_SCHEMAS


def _lsst_wire_id(compiled: CompiledSchema, schemas: LsstSchemas) -> int | None:
    """The wire schema id for records of an LSST container, if its writer schema is official.

    Only then can a record's bytes be re-framed as a Confluent message under that id; otherwise
    the caller keeps a one-record container so the bytes stay self-describing.
    """
    match = LSST_VERSION_PATTERN.fullmatch(compiled.name)
    if match is None:
        return None
    schema_id = lsst_schema_id(int(match[1]), int(match[2]))
    try:
        official = schemas.get(schema_id)
        same = to_parsing_canonical_form(dict(official.writer)) == to_parsing_canonical_form(
            dict(compiled.writer)
        )
    except (SchemaError, ValueError, KeyError, TypeError):
        return None
    return schema_id if same else None


def decode_container(
    source: bytes | BinaryIO | Path, schemas: LsstSchemas | None = None
) -> Iterator[Alert]:
    """Decode every alert of an Avro object container file (one or many alerts).

    The survey comes from the writer schema's name. Each alert's ``original`` is the survey's
    wire form: for ZTF a one-alert container (byte-identical to the input for a ZTF packet);
    for LSST a Confluent wire-format message if the embedded schema is the official one of its
    version, else a one-alert container. Codecs: null and deflate. The whole input is read into
    memory. Raises DecodeError at the first failure, saying how many alerts came before it.
    """
    if isinstance(source, Path):
        buf = source.read_bytes()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        buf = bytes(source)
    else:
        buf = source.read()
    header = parse_container_header(buf)
    codec = container_codec(header)
    schema_text = header.metadata.get("avro.schema")
    if schema_text is None:
        raise DecodeError(DecodeStage.SCHEMA, "container header has no avro.schema")
    try:
        compiled = container_schema(schema_text)
    except SchemaError as err:
        raise DecodeError(DecodeStage.SCHEMA, err.reason) from err
    is_ztf = compiled.name == "ztf.alert"
    lsst_schemas = schemas if schemas is not None else _default_schemas()
    wire_id = None if is_ztf else _lsst_wire_id(compiled, lsst_schemas)
    version = None
    if not is_ztf:
        match = LSST_VERSION_PATTERN.fullmatch(compiled.name)
        assert match is not None  # container_schema accepts only these two names
        version = f"{int(match[1])}.{int(match[2])}"
    header_bytes = buf[: header.end]
    decoded = 0
    for count, data in container_blocks(buf, header, codec):
        start = 0
        for _ in range(count):
            record, stop = _read_one(compiled, data, start)
            body = data[start:stop]
            start = stop
            if is_ztf:
                yield ztf_alert_from_record(
                    record,
                    one_record_container(header_bytes, codec, body, header.sync),
                    compiled.version,
                )
            else:
                original = (
                    bytes([CONFLUENT_MAGIC]) + wire_id.to_bytes(4, "big") + body
                    if wire_id is not None
                    else one_record_container(header_bytes, codec, body, header.sync)
                )
                yield lsst_alert_from_record(record, version or "", original)
            decoded += 1
        if start != len(data):
            raise DecodeError(
                DecodeStage.AVRO,
                f"block after {decoded} alerts has {len(data) - start} bytes left over; "
                f"the records do not match writer schema {compiled.name}",
            )


def _read_one(compiled: CompiledSchema, data: bytes, start: int) -> tuple[dict[str, Any], int]:
    try:
        return compiled.reader(data, start, len(data))
    except DECODE_ERRORS as err:
        raise DecodeError(
            DecodeStage.AVRO,
            f"bytes do not match writer schema {compiled.name} ({_describe(err)}); "
            "the container is corrupt",
        ) from err


def decode_ztf(message: bytes) -> Alert:
    """Decode one ZTF Kafka message (an Avro container holding exactly one ZTF alert).

    Writer schemas are parsed and compiled once per distinct header text. Raises DecodeError.
    """
    alerts = list(decode_container(message))
    if len(alerts) != 1 or alerts[0].survey is not Survey.ZTF:
        raise DecodeError(
            DecodeStage.FRAMING,
            f"expected one ZTF alert in the message, found {len(alerts)} "
            f"{alerts[0].survey if alerts else ''} alert(s)".rstrip(),
        )
    return alerts[0]


def decode_message(value: bytes | None, schemas: LsstSchemas) -> tuple[Alert, ...]:
    """Decode one Kafka message value of either survey, all or nothing.

    An Avro container (ZTF packet, or a backfill file) gives all its alerts; a Confluent
    wire-format message gives one LSST alert. Raises DecodeError only: the caller routes it.
    """
    if value is None:
        raise DecodeError(DecodeStage.FRAMING, "message has no value (a tombstone); not an alert")
    if not value:
        raise DecodeError(DecodeStage.FRAMING, "message is empty; not an alert")
    if value[:4] == OCF_MAGIC:
        # Materialised so that a failure late in a container yields one dead letter and no
        # partial output: the dead letter alone can then be replayed without duplicates.
        return tuple(decode_container(value, schemas))
    if value[0] == CONFLUENT_MAGIC:
        return (decode_lsst_wire(value, schemas),)
    raise DecodeError(
        DecodeStage.FRAMING,
        f"first byte 0x{value[0]:02x} is neither the Confluent magic 0x00 (LSST) nor the start "
        "of an Avro container 'Obj\\x01' (ZTF); is this topic carrying alerts?",
    )


#: The endings of alert files: Avro object containers, and Confluent wire-format messages.
ALERT_FILE_SUFFIXES = (".avro", ".bin")


def alert_files(path: Path) -> list[Path]:
    """``path`` itself if it is not a directory, else the alert files under it, sorted."""
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in ALERT_FILE_SUFFIXES and p.is_file())


def dead_letter(record: KafkaRecord, error: DecodeError) -> DeadLetter:
    """The dead letter for a record that failed to decode."""
    return DeadLetter(
        original=record.value or b"",
        stage=str(error.stage),
        reason=error.reason,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )


def decode_record(record: KafkaRecord, schemas: LsstSchemas) -> tuple[Alert, ...] | DeadLetter:
    """Alerts of one Kafka record, or its dead letter. Never raises on any input bytes."""
    try:
        return decode_message(record.value, schemas)
    except DecodeError as err:
        return dead_letter(record, err)
