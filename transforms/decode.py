"""Decode ZTF and LSST alert packets into the alert model, routing every failure to dead letters.

Pure functions do the work and are tested without Beam:

* :func:`decode_ztf` - one ZTF Kafka message: an Avro object container (OCF) holding one alert
  with its writer schema embedded (ZTF schema 1.3 to 4.02).
* :func:`decode_lsst_wire` - one Rubin Kafka message in Confluent wire format: byte 0 = 0x00,
  bytes 1-4 = big-endian schema id (major*100+minor), then the schemaless Avro body.
* :func:`decode_container` - a plain OCF file with one or many alerts (backfill); the survey is
  told by the writer schema's name (``ztf.alert`` or ``lsst.vX_Y.alert``).
* :func:`decode_message` - any of the above, told apart by the first bytes.

They raise :class:`DecodeError` (stage + actionable reason) and nothing else on bad input.
:class:`DecodeAlerts` wires them into a pipeline: every input record becomes alerts on the main
output or exactly one :class:`DeadLetter` on the ``dead_letters`` output, and a counter per
failure stage moves. Nothing is dropped and nothing raises out of the transform.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput
from fastavro.schema import to_parsing_canonical_form

from transforms import avro_binary
from transforms.alert_model import (
    Alert,
    Cutouts,
    Detection,
    DetectionKind,
    NearestStar,
    SolarSystemObject,
    Survey,
    flux_err_to_mag_err,
    flux_to_mag,
)
from transforms.schemas import (
    DECODE_ERRORS,
    LSST_VERSION_PATTERN,
    CompiledSchema,
    LsstSchemas,
    SchemaError,
    container_schema,
    lsst_schema_id,
    lsst_version,
)

OCF_MAGIC = b"Obj\x01"
CONFLUENT_MAGIC = 0
_SYNC_SIZE = 16
_ZTF_BANDS = {1: "g", 2: "r", 3: "i"}
# ZTF marks "no value" with these instead of null (see the ZTF schema docs).
_ZTF_MISSING = -999.0
_ZTF_MISSING_FLUX = -99999.0
_JD_TO_MJD = 2400000.5


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


# --------------------------------------------------------------------------------------------
# Framing helpers
# --------------------------------------------------------------------------------------------


def read_long(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    """Zig-zag varint at ``buf[pos]`` -> (value, next pos); DecodeError(FRAMING), naming
    ``what``, if ``buf`` ends inside it or it is malformed."""
    try:
        return avro_binary.read_long(buf, pos)
    except IndexError:
        raise DecodeError(
            DecodeStage.FRAMING, f"container truncated while reading {what}"
        ) from None
    except ValueError:
        raise DecodeError(DecodeStage.FRAMING, f"malformed varint in {what}") from None


@dataclass(frozen=True, slots=True)
class ContainerHeader:
    """An Avro container header: metadata, 16-byte sync marker, offset of the first block."""

    metadata: dict[str, bytes]
    sync: bytes
    end: int  # offset of the first block


def parse_container_header(buf: bytes) -> ContainerHeader:
    """Parse an Avro container header. Raises DecodeError(FRAMING) if it is not one."""
    if buf[:4] != OCF_MAGIC:
        raise DecodeError(DecodeStage.FRAMING, "not an Avro container: magic is not 'Obj\\x01'")
    pos = 4
    metadata: dict[str, bytes] = {}
    while True:
        count, pos = read_long(buf, pos, "the header metadata")
        if count == 0:
            break
        if count < 0:
            count = -count
            _, pos = read_long(buf, pos, "the header metadata")
        for _ in range(count):
            klen, pos = read_long(buf, pos, "a header key")
            if klen < 0 or pos + klen > len(buf):
                raise DecodeError(DecodeStage.FRAMING, "container header truncated or corrupt")
            key = buf[pos : pos + klen]
            pos += klen
            vlen, pos = read_long(buf, pos, "a header value")
            if vlen < 0 or pos + vlen > len(buf):
                raise DecodeError(DecodeStage.FRAMING, "container header truncated or corrupt")
            try:
                metadata[key.decode()] = buf[pos : pos + vlen]
            except UnicodeDecodeError as err:
                raise DecodeError(DecodeStage.FRAMING, "container header key is not UTF-8") from err
            pos += vlen
    if pos + _SYNC_SIZE > len(buf):
        raise DecodeError(DecodeStage.FRAMING, "container truncated before the sync marker")
    return ContainerHeader(
        metadata=metadata, sync=buf[pos : pos + _SYNC_SIZE], end=pos + _SYNC_SIZE
    )


# --------------------------------------------------------------------------------------------
# Record -> Alert
# --------------------------------------------------------------------------------------------


def _required(record: dict[str, Any], names: tuple[str, ...], where: str) -> Any:
    """The first of ``names`` present and non-null in ``record``; DecodeError(MODEL) if none."""
    for name in names:
        value = record.get(name)
        if value is not None:
            return value
    present = [n for n in names if n in record]
    if present:
        raise DecodeError(DecodeStage.MODEL, f"required field {where}.{present[0]} is null")
    raise DecodeError(
        DecodeStage.MODEL,
        f"missing required field {where}.{names[0]}: the writer schema does not have it",
    )


def _first(record: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in record:
            return record[name]
    return None


def _ztf_value(value: float | None) -> float | None:
    return None if value is None or value == _ZTF_MISSING else value


def _ztf_band(fid: Any, where: str) -> str:
    band = _ZTF_BANDS.get(fid)
    if band is None:
        raise DecodeError(
            DecodeStage.MODEL, f"{where}.fid is {fid!r}; ZTF filter ids are 1 (g), 2 (r), 3 (i)"
        )
    return band


def _ztf_positive(isdiffpos: Any, where: str) -> bool:
    if isdiffpos in ("t", "1"):
        return True
    if isdiffpos in ("f", "0"):
        return False
    raise DecodeError(
        DecodeStage.MODEL, f"{where}.isdiffpos is {isdiffpos!r}; expected 't', 'f', '1' or '0'"
    )


def _ztf_stamp(cutout: dict[str, Any] | None) -> bytes | None:
    return None if cutout is None else cutout.get("stampData")


def _ztf_schema_version(record: dict[str, Any], writer_version: str | None) -> str:
    """The packet's ``schemavsn`` (2.0 on), else the writer schema's version attribute (1.x)."""
    schemavsn = record.get("schemavsn")
    if schemavsn is not None:
        return str(schemavsn)
    if writer_version is not None:
        return writer_version
    raise DecodeError(
        DecodeStage.MODEL,
        "missing required field alert.schemavsn: the writer schema has neither it nor a "
        'top-level "version" attribute, so the packet\'s schema version is unknown',
    )


def ztf_alert_from_record(
    record: dict[str, Any], original: bytes, writer_version: str | None = None
) -> Alert:
    """Map a decoded ZTF packet (projection of ``transforms.schemas.ZTF_PROJECTION``) to Alert.

    Every ZTF schema version from 1.3 on maps, with the model's fields that the version has;
    the others are None (distpsnr1 before 1.5; drb before 3.3, so reliability is rb; fp_hists
    before 4.01). Before 1.8 the closest PS1 source's score and r mag are ``sgscore``/``srmag``
    (before 1.5 only for a source within 1 arcsec), later ``sgscore1``/``srmag1``.
    ``schema_version`` is the packet's ``schemavsn``, or for 1.x, which has none,
    ``writer_version``: the writer schema's top-level ``"version"`` attribute.
    Raises DecodeError(MODEL) for a missing required field (objectId, absent in 1.1, is one),
    an unknown schema version, or an invalid fid/isdiffpos.
    """
    cand = _required(record, ("candidate",), "alert")
    candid = _required(cand, ("candid",), "candidate")
    drb = cand.get("drb")
    ssnamenr = cand.get("ssnamenr")
    solar_system = None
    if ssnamenr not in (None, "null", ""):
        distance = _ztf_value(cand.get("ssdistnr"))
        solar_system = SolarSystemObject(
            name=ssnamenr,
            distance_arcsec=None if distance is None or distance < 0 else distance,
            mag=_ztf_value(cand.get("ssmagnr")),
        )
    history = []
    for row in record.get("prv_candidates") or ():
        mjd = _required(row, ("jd",), "prv_candidate") - _JD_TO_MJD
        band = _ztf_band(row.get("fid"), "prv_candidate")
        if row.get("candid") is not None and row.get("magpsf") is not None:
            history.append(
                Detection(
                    kind=DetectionKind.DETECTION,
                    mjd=mjd,
                    band=band,
                    mag=row["magpsf"],
                    mag_err=row.get("sigmapsf"),
                    limiting_mag=row.get("diffmaglim"),
                    is_positive=_ztf_positive(row.get("isdiffpos"), "prv_candidate"),
                    source_id=row["candid"],
                    ra=row.get("ra"),
                    dec=row.get("dec"),
                )
            )
        else:
            history.append(
                Detection(
                    kind=DetectionKind.UPPER_LIMIT,
                    mjd=mjd,
                    band=band,
                    limiting_mag=row.get("diffmaglim"),
                )
            )
    forced = []
    for row in record.get("fp_hists") or ():
        flux = row.get("forcediffimflux")
        flux = None if flux is None or flux == _ZTF_MISSING_FLUX else flux
        flux_err = row.get("forcediffimfluxunc")
        flux_err = None if flux_err is None or flux_err == _ZTF_MISSING_FLUX else flux_err
        zero_point = row.get("magzpsci")
        mag = None
        if flux is not None and flux > 0 and zero_point is not None:
            mag = zero_point - 2.5 * math.log10(flux)
        forced.append(
            Detection(
                kind=DetectionKind.FORCED,
                mjd=_required(row, ("jd",), "fp_hist") - _JD_TO_MJD,
                band=_ztf_band(row.get("fid"), "fp_hist"),
                mag=mag,
                mag_err=None if mag is None else flux_err_to_mag_err(flux, flux_err),
                flux=flux,
                flux_err=flux_err,
                limiting_mag=row.get("diffmaglim"),
                is_positive=None if flux is None else flux > 0,
            )
        )
    science, template, difference = (
        _ztf_stamp(record.get("cutoutScience")),
        _ztf_stamp(record.get("cutoutTemplate")),
        _ztf_stamp(record.get("cutoutDifference")),
    )
    return Alert(
        survey=Survey.ZTF,
        alert_id=candid,
        source_id=candid,
        object_id=_required(record, ("objectId",), "alert"),
        ra=_required(cand, ("ra",), "candidate"),
        dec=_required(cand, ("dec",), "candidate"),
        mjd=_required(cand, ("jd",), "candidate") - _JD_TO_MJD,
        band=_ztf_band(cand.get("fid"), "candidate"),
        mag=_required(cand, ("magpsf",), "candidate"),
        mag_err=cand.get("sigmapsf"),
        flux=None,
        flux_err=None,
        reliability=drb if drb is not None else cand.get("rb"),
        is_positive=_ztf_positive(cand.get("isdiffpos"), "candidate"),
        solar_system=solar_system,
        nearest_star=NearestStar(
            star_galaxy_score=_ztf_value(_first(cand, "sgscore1", "sgscore")),
            distance_arcsec=_ztf_value(cand.get("distpsnr1")),
            r_mag=_ztf_value(_first(cand, "srmag1", "srmag")),
        ),
        history=tuple(history),
        forced_photometry=tuple(forced),
        schema_version=_ztf_schema_version(record, writer_version),
        cutouts=None
        if science is None and template is None and difference is None
        else Cutouts(science=science, template=template, difference=difference),
        original=original,
    )


def _lsst_row(row: dict[str, Any], kind: DetectionKind, where: str) -> Detection:
    flux = _first(row, "psfFlux", "psFlux")
    flux_err = _first(row, "psfFluxErr", "psFluxErr")
    mag = flux_to_mag(flux)
    source_id = row.get("diaSourceId") if kind is DetectionKind.DETECTION else None
    return Detection(
        kind=kind,
        mjd=_required(row, ("midpointMjdTai", "midPointTai"), where),
        band=_first(row, "band", "filterName"),
        mag=mag,
        mag_err=flux_err_to_mag_err(flux, flux_err),
        flux=flux,
        flux_err=flux_err,
        is_positive=None if flux is None else flux > 0,
        source_id=source_id if source_id is not None else row.get("diaForcedSourceId"),
        ra=row.get("ra"),
        dec=_first(row, "dec", "decl"),
    )


def lsst_alert_from_record(record: dict[str, Any], version: str, original: bytes) -> Alert:
    """Map a decoded Rubin packet (``LSST_PROJECTION``) of schema ``version`` to an Alert.

    Handles the field renames between v3.0 and v11.1 (psFlux/psfFlux, filterName/band,
    midPointTai/midpointMjdTai, decl/dec, alertId/diaSourceId). Raises DecodeError(MODEL).
    """
    src = _required(record, ("diaSource",), "alert")
    source_id = _required(src, ("diaSourceId",), "diaSource")
    flux = _first(src, "psfFlux", "psFlux")
    flux_err = _first(src, "psfFluxErr", "psFluxErr")
    dia_object_id = src.get("diaObjectId")
    ss_record = record.get("ssSource") or record.get("ssObject")
    ss_object_id = src.get("ssObjectId") or (ss_record or {}).get("ssObjectId") or None
    solar_system = None
    if ss_object_id is not None or ss_record is not None:
        solar_system = SolarSystemObject(
            name=(ss_record or {}).get("designation"), ss_object_id=ss_object_id
        )
    history = [
        _lsst_row(r, DetectionKind.DETECTION, "prvDiaSources")
        for r in record.get("prvDiaSources") or ()
    ]
    for row in record.get("prvDiaNondetectionLimits") or ():
        history.append(
            Detection(
                kind=DetectionKind.UPPER_LIMIT,
                mjd=_required(row, ("midpointMjdTai", "midPointTai"), "prvDiaNondetectionLimits"),
                band=_first(row, "band", "filterName"),
                flux_err=row.get("diaNoise"),
            )
        )
    cutouts = (
        record.get("cutoutScience"),
        record.get("cutoutTemplate"),
        record.get("cutoutDifference"),
    )
    return Alert(
        survey=Survey.LSST,
        alert_id=_first(record, "alertId", "diaSourceId") or source_id,
        source_id=source_id,
        object_id=str(dia_object_id) if dia_object_id else None,
        ra=_required(src, ("ra",), "diaSource"),
        dec=_required(src, ("dec", "decl"), "diaSource"),
        mjd=_required(src, ("midpointMjdTai", "midPointTai"), "diaSource"),
        band=_first(src, "band", "filterName"),
        mag=flux_to_mag(flux),
        mag_err=flux_err_to_mag_err(flux, flux_err),
        flux=flux,
        flux_err=flux_err,
        reliability=src.get("reliability"),
        is_positive=None if flux is None else flux > 0,
        solar_system=solar_system,
        nearest_star=None,
        history=tuple(history),
        forced_photometry=tuple(
            _lsst_row(r, DetectionKind.FORCED, "prvDiaForcedSources")
            for r in record.get("prvDiaForcedSources") or ()
        ),
        schema_version=version,
        cutouts=None if cutouts == (None, None, None) else Cutouts(*cutouts),
        original=original,
    )


# --------------------------------------------------------------------------------------------
# Decoders
# --------------------------------------------------------------------------------------------


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
    codec = header.metadata.get("avro.codec", b"null")
    if codec not in (b"null", b"deflate"):
        raise DecodeError(
            DecodeStage.FRAMING,
            f"container codec {codec!r} is not supported (null, deflate); rewrite the file",
        )
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
    pos = header.end
    decoded = 0
    while pos < len(buf):
        count, pos = read_long(buf, pos, "a block count")
        size, pos = read_long(buf, pos, "a block size")
        if count < 0 or size < 0 or pos + size + _SYNC_SIZE > len(buf):
            raise DecodeError(
                DecodeStage.FRAMING,
                f"container block after {decoded} alerts is truncated or corrupt",
            )
        data = buf[pos : pos + size]
        pos += size
        if buf[pos : pos + _SYNC_SIZE] != header.sync:
            raise DecodeError(
                DecodeStage.FRAMING,
                f"sync marker mismatch after {decoded} alerts: the container is corrupt",
            )
        pos += _SYNC_SIZE
        if codec == b"deflate":
            try:
                data = zlib.decompress(data, -15)
            except zlib.error as err:
                raise DecodeError(
                    DecodeStage.FRAMING, f"deflate block after {decoded} alerts: {err}"
                ) from err
        start = 0
        for _ in range(count):
            record, stop = _read_one(compiled, data, start)
            body = data[start:stop]
            start = stop
            if is_ztf:
                yield ztf_alert_from_record(
                    record,
                    _one_record_container(header_bytes, codec, body, header.sync),
                    compiled.version,
                )
            else:
                original = (
                    bytes([CONFLUENT_MAGIC]) + wire_id.to_bytes(4, "big") + body
                    if wire_id is not None
                    else _one_record_container(header_bytes, codec, body, header.sync)
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


def _one_record_container(header: bytes, codec: bytes, body: bytes, sync: bytes) -> bytes:
    payload = body
    if codec == b"deflate":
        compressor = zlib.compressobj(wbits=-15)
        payload = compressor.compress(body) + compressor.flush()
    return b"".join(
        (header, avro_binary.encode_long(1), avro_binary.encode_long(len(payload)), payload, sync)
    )


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


# --------------------------------------------------------------------------------------------
# Beam wiring
# --------------------------------------------------------------------------------------------

COUNTER_NAMESPACE = "DecodeAlerts"
MESSAGES_COUNTER = "messages"
DECODED_COUNTER = "alerts_decoded"


def dead_letters_counter(stage: DecodeStage) -> str:
    """The counter of the records that failed in ``stage``."""
    return f"dead_letters_{stage}"


class _DecodeFn(beam.DoFn):
    def __init__(self, schemas: LsstSchemas) -> None:
        self._schemas = schemas
        self._messages = Metrics.counter(COUNTER_NAMESPACE, MESSAGES_COUNTER)
        self._decoded = Metrics.counter(COUNTER_NAMESPACE, DECODED_COUNTER)
        self._failed = {
            stage: Metrics.counter(COUNTER_NAMESPACE, dead_letters_counter(stage))
            for stage in DecodeStage
        }

    def process(self, record: KafkaRecord) -> Iterator[Alert | TaggedOutput]:
        self._messages.inc()
        result = decode_record(record, self._schemas)
        if isinstance(result, DeadLetter):
            self._failed[DecodeStage(result.stage)].inc()
            yield TaggedOutput(DecodeAlerts.DEAD_LETTERS, result)
            return
        self._decoded.inc(len(result))
        yield from result


class DecodeAlerts(beam.PTransform[PCollection[KafkaRecord], beam.pvalue.DoOutputsTuple]):
    """KafkaRecord -> Alert, with failures on the ``dead_letters`` output.

    Input: ``PCollection[KafkaRecord]``, bounded or not, any windowing (element-wise; windows and
    timestamps pass through unchanged). Outputs (``DoOutputsTuple``):

    * ``alerts`` (main): ``PCollection[Alert]``; a container message yields all its alerts.
    * ``dead_letters``: ``PCollection[DeadLetter]``, exactly one per record that failed, with the
      original bytes, the stage, the reason and the source topic/partition/offset; the pipeline
      publishes it to ``alertflow.deadletter``.

    Every record ends up in exactly one of the two outputs (all or nothing per record). Counters
    in namespace ``DecodeAlerts``: ``messages`` (records in), ``alerts_decoded`` and
    ``dead_letters_<stage>`` for each :class:`DecodeStage`. No side inputs; delivery is that of
    the runner (at least once on Flink with checkpointing). LSST schema ids are resolved by
    ``schemas`` (default: the shipped ones).
    """

    DEAD_LETTERS = "dead_letters"
    ALERTS = "alerts"

    def __init__(self, schemas: LsstSchemas | None = None, label: str | None = None) -> None:
        super().__init__(label)
        self._schemas = schemas if schemas is not None else LsstSchemas()

    def expand(self, records: PCollection[KafkaRecord]) -> beam.pvalue.DoOutputsTuple:
        outputs: beam.pvalue.DoOutputsTuple = records | "Decode" >> beam.ParDo(
            _DecodeFn(self._schemas)
        ).with_outputs(self.DEAD_LETTERS, main=self.ALERTS)
        return outputs


__all__ = [
    "Alert",
    "DeadLetter",
    "DecodeAlerts",
    "DecodeError",
    "DecodeStage",
    "KafkaRecord",
    "decode_container",
    "decode_lsst_wire",
    "decode_message",
    "decode_record",
    "decode_ztf",
]
