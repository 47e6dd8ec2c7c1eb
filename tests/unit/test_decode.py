"""Decoding every real alert in shared/data, checked against the index CSVs and fastavro."""

from __future__ import annotations

import functools
import io
import json
import math
from collections.abc import Iterator
from typing import Any

import fastavro
import pytest

from tests.datapaths import lsst_index, shared_data, ztf_index
from transforms.alert_model import Alert, DetectionKind, Survey
from transforms.decode import (
    DeadLetter,
    KafkaRecord,
    decode_container,
    decode_lsst_wire,
    decode_message,
    decode_record,
    decode_ztf,
)
from transforms.decode_errors import DecodeStage
from transforms.schemas import LsstSchemas, lsst_schema_id

DATA = shared_data()
SCHEMAS = LsstSchemas()
ZTF_ROWS = ztf_index()
LSST_ROWS = lsst_index()


def _float(text: str) -> float | None:
    return None if text in ("", "null", "None") else float(text)


@functools.cache
def lsst_file_alerts(relpath: str) -> dict[int, Alert]:
    path = DATA / "lsst" / relpath
    if path.suffix == ".bin":
        alerts: tuple[Alert, ...] = (decode_lsst_wire(path.read_bytes(), SCHEMAS),)
    else:
        alerts = tuple(decode_container(path, SCHEMAS))
    return {a.source_id: a for a in alerts}


def _same(got: float | None, expected: float | None, rel: float = 1e-7) -> bool:
    """Equal within float precision (the CSV holds float32 values printed as doubles)."""
    if expected is None or got is None:
        return got is expected
    return got == pytest.approx(expected, rel=rel)


def _ztf_sentinel(text: str) -> float | None:
    value = _float(text)
    return None if value == -999.0 else value


# ---------------------------------------------------------------------------------------------
# Index CSVs, row by row
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row", ZTF_ROWS, ids=[r["candid"] + "-" + r["schemavsn"] for r in ZTF_ROWS]
)
def test_ztf_alert_matches_index(row: dict[str, str]) -> None:
    message = (DATA / "ztf" / row["file"]).read_bytes()
    alert = decode_ztf(message)
    assert alert.survey is Survey.ZTF
    assert alert.alert_id == alert.source_id == int(row["candid"])
    assert alert.object_id == row["objectId"]
    assert alert.schema_version == row["schemavsn"]
    assert alert.ra == pytest.approx(float(row["ra"]), abs=1e-9)
    assert alert.dec == pytest.approx(float(row["dec"]), abs=1e-9)
    assert alert.mjd == pytest.approx(float(row["jd"]) - 2400000.5, abs=1e-8)
    assert alert.band == {"1": "g", "2": "r", "3": "i"}[row["fid"]]
    assert alert.mag == pytest.approx(float(row["magpsf"]), rel=1e-7)
    assert alert.mag_err == pytest.approx(float(row["sigmapsf"]), rel=1e-7)
    expected_rel = _float(row["drb"]) if _float(row["drb"]) is not None else _float(row["rb"])
    assert _same(alert.reliability, expected_rel)
    assert alert.is_positive is (row["isdiffpos"] in ("t", "1"))
    if row["ssnamenr"] in ("", "null"):
        assert alert.solar_system is None
    else:
        assert alert.solar_system is not None and alert.solar_system.name == row["ssnamenr"]
        distance = _ztf_sentinel(row["ssdistnr"])
        assert _same(alert.solar_system.distance_arcsec, distance)
    assert alert.nearest_star is not None
    for got, column in (
        (alert.nearest_star.star_galaxy_score, "sgscore1"),
        (alert.nearest_star.distance_arcsec, "distpsnr1"),
        (alert.nearest_star.r_mag, "srmag1"),
    ):
        assert _same(got, _ztf_sentinel(row[column])), column
    assert len(alert.history) == int(row["n_prv_candidates"] or 0)
    assert len(alert.forced_photometry) == int(row["n_fp_hists"] or 0)
    assert (alert.cutouts is not None) is (row["has_cutouts"] == "True")
    assert alert.original == message


@pytest.mark.parametrize(
    "row", LSST_ROWS, ids=[r["diaSourceId"] + "-" + r["schema_name"] for r in LSST_ROWS]
)
def test_lsst_alert_matches_index(row: dict[str, str]) -> None:
    alert = lsst_file_alerts(row["file"])[int(row["diaSourceId"])]
    assert alert.survey is Survey.LSST
    major, minor = row["schema_name"].removeprefix("lsst.v").removesuffix(".alert").split("_")
    assert alert.schema_version == f"{int(major)}.{int(minor)}"
    dia_object_id = int(row["diaObjectId"] or 0)
    assert alert.object_id == (str(dia_object_id) if dia_object_id else None)
    assert alert.ra == pytest.approx(float(row["ra"]), abs=1e-9)
    assert alert.dec == pytest.approx(float(row["dec"]), abs=1e-9)
    assert alert.mjd == pytest.approx(float(row["midpointMjdTai"]), abs=1e-9)
    assert alert.band == row["band"]
    flux = float(row["psfFlux"])
    assert alert.flux == pytest.approx(flux, rel=1e-7)
    assert alert.flux_err == pytest.approx(float(row["psfFluxErr"]), rel=1e-7)
    if flux > 0:
        assert alert.mag == pytest.approx(31.4 - 2.5 * math.log10(flux), rel=1e-9)
        assert alert.mag_err == pytest.approx(
            2.5 / math.log(10) * float(row["psfFluxErr"]) / flux, rel=1e-6
        )
        assert alert.is_positive is True
    else:
        assert alert.mag is None and alert.mag_err is None
        assert alert.is_positive is False
    assert _same(alert.reliability, _float(row["reliability"]))
    ss_object_id = int(row["ssObjectId"] or 0)
    if ss_object_id or row["has_ssSource"] == "True":
        assert alert.solar_system is not None
        assert alert.solar_system.ss_object_id == (ss_object_id or None)
    else:
        assert alert.solar_system is None
    detections = [d for d in alert.history if d.kind is DetectionKind.DETECTION]
    assert len(detections) == int(row["n_prvDiaSources"] or 0)
    assert len(alert.forced_photometry) == int(row["n_prvDiaForcedSources"] or 0)
    assert (alert.cutouts is not None) is (row["has_cutouts"] == "True")
    # The original is a Confluent wire message that decodes to the same alert.
    assert alert.original[0] == 0
    assert decode_lsst_wire(alert.original, SCHEMAS) == alert


def test_every_lsst_index_file_is_fully_covered() -> None:
    # Each file decodes to exactly as many alerts as the index says: none lost, none extra.
    for relpath in {r["file"] for r in LSST_ROWS}:
        rows = [r for r in LSST_ROWS if r["file"] == relpath]
        assert len(lsst_file_alerts(relpath)) == int(rows[0]["alerts_in_file"]) == len(rows)


def test_every_alert_file_in_shared_data_decodes() -> None:
    files = sorted((DATA / "ztf" / "alerts").glob("*/*.avro"))
    files += sorted((DATA / "lsst").glob("**/*.avro")) + sorted((DATA / "lsst").glob("**/*.bin"))
    total = 0
    for path in files:
        total += len(decode_message(path.read_bytes(), SCHEMAS))
    # 379 ZTF + 144 real LSST + 15 simulated fakeAlerts + 2 simulated wire messages.
    assert total == 379 + 144 + 15 + 2


# ---------------------------------------------------------------------------------------------
# Schema version coverage
# ---------------------------------------------------------------------------------------------

LSST_VERSIONS = sorted(p.name for p in (DATA / "lsst" / "schemas").glob("lsst.v*"))


def test_shipped_schemas_cover_every_version_in_shared_data() -> None:
    shipped = SCHEMAS.known_ids()
    for name in LSST_VERSIONS:
        major, minor = name.removeprefix("lsst.v").split("_")
        assert lsst_schema_id(int(major), int(minor)) in shipped


@pytest.mark.parametrize("version", LSST_VERSIONS)
def test_one_sample_of_every_lsst_schema_version(version: str) -> None:
    path = DATA / "lsst" / "simulated" / "alert_packet_fakeAlerts" / f"fakeAlert_{version}.avro"
    (alert,) = decode_container(path, SCHEMAS)
    major, minor = version.removeprefix("lsst.v").split("_")
    assert alert.schema_version == f"{int(major)}.{int(minor)}"
    assert alert.original[1:5] == lsst_schema_id(int(major), int(minor)).to_bytes(4, "big")
    with path.open("rb") as fh:
        (record,) = fastavro.reader(fh)
    source = record["diaSource"]
    assert alert.source_id == source["diaSourceId"]
    assert alert.ra == source["ra"]
    assert alert.dec == source.get("dec", source.get("decl"))
    assert alert.band == source.get("band", source.get("filterName"))
    assert alert.flux == source.get("psfFlux", source.get("psFlux"))
    assert decode_lsst_wire(alert.original, SCHEMAS) == alert


ZTF_VERSIONS = sorted({r["schemavsn"] for r in ZTF_ROWS})


def test_ztf_versions_present() -> None:
    assert ZTF_VERSIONS == ["2.0", "3.0", "3.1", "3.2", "3.3", "3.5", "4.01", "4.02"]


@pytest.mark.parametrize("version", ZTF_VERSIONS)
def test_one_sample_of_every_ztf_schema_version(version: str) -> None:
    row = next(r for r in ZTF_ROWS if r["schemavsn"] == version)
    path = DATA / "ztf" / row["file"]
    alert = decode_ztf(path.read_bytes())
    with path.open("rb") as fh:
        (record,) = fastavro.reader(fh)
    cand = record["candidate"]
    assert alert.schema_version == version == record["schemavsn"]
    assert (alert.alert_id, alert.ra, alert.dec, alert.mag) == (
        cand["candid"],
        cand["ra"],
        cand["dec"],
        cand["magpsf"],
    )
    assert alert.reliability == (cand.get("drb") if cand.get("drb") is not None else cand["rb"])


# ---------------------------------------------------------------------------------------------
# Containers: many alerts, codecs, originals
# ---------------------------------------------------------------------------------------------


def _ztf_packet(index: int = 0) -> bytes:
    return (DATA / "ztf" / ZTF_ROWS[index]["file"]).read_bytes()


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_multi_alert_ztf_container_gives_every_alert(codec: str) -> None:
    packets = [_ztf_packet(i) for i in (0, 1, 2)]
    # Three alerts written with one schema (the 3.0 one of the first packet) into one file.
    reader = fastavro.reader(io.BytesIO(packets[0]))
    records = [next(iter(fastavro.reader(io.BytesIO(packets[0]))))] * 3
    buf = io.BytesIO()
    fastavro.writer(buf, reader.writer_schema, records, codec=codec)
    alerts = list(decode_container(buf.getvalue()))
    assert len(alerts) == 3
    for alert in alerts:
        # Each original is a one-alert container that decodes to the same alert.
        assert decode_ztf(alert.original) == alert
    assert alerts[0].original != buf.getvalue()


def test_container_reads_paths_and_file_objects_alike() -> None:
    path = DATA / "lsst" / "alerts" / "lsstcam_20251231_v10_0.avro"
    with path.open("rb") as fh:
        from_file = list(decode_container(fh, SCHEMAS))
    assert from_file == list(decode_container(path, SCHEMAS))
    assert len(from_file) == 27


# ---------------------------------------------------------------------------------------------
# Failures become dead letters with a stage and a reason
# ---------------------------------------------------------------------------------------------


def lsst_wire() -> bytes:
    return sorted((DATA / "lsst" / "alerts" / "wire_format").glob("*704*.bin"))[0].read_bytes()


def _ocf(schema: dict[str, Any], records: list[dict[str, Any]], codec: str = "null") -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), records, codec=codec)
    return buf.getvalue()


def _ztf_record_and_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    reader = fastavro.reader(io.BytesIO(_ztf_packet(0)))
    schema = json.loads(reader.metadata["avro.schema"])
    return next(iter(reader)), schema


def _without_candidate_field(name: str) -> bytes:
    record, schema = _ztf_record_and_schema()
    cand_field = next(f for f in schema["fields"] if f["name"] == "candidate")
    cand_field["type"]["fields"] = [f for f in cand_field["type"]["fields"] if f["name"] != name]
    return _ocf(schema, [record])


def _with_candidate(**changes: Any) -> bytes:
    record, schema = _ztf_record_and_schema()
    record = dict(record, candidate=dict(record["candidate"], **changes))
    return _ocf(schema, [record])


def _bad_cases() -> Iterator[tuple[str, bytes | None, DecodeStage, str]]:
    wire = lsst_wire()
    ztf = _ztf_packet(0)
    yield "tombstone", None, DecodeStage.FRAMING, "tombstone"
    yield "empty", b"", DecodeStage.FRAMING, "empty"
    yield "wrong magic byte", b"\x07" + wire[1:], DecodeStage.FRAMING, "0x07"
    yield "truncated wire header", wire[:3], DecodeStage.FRAMING, "4-byte schema id"
    yield (
        "unknown schema id",
        b"\x00" + (9999).to_bytes(4, "big") + wire[5:],
        DecodeStage.SCHEMA,
        "9999",
    )
    yield "truncated body", wire[: len(wire) // 2], DecodeStage.AVRO, "lsst.v7_4.alert"
    yield "trailing bytes", wire + b"\x00\x00", DecodeStage.AVRO, "ends after"
    yield (
        "wrong schema id",
        b"\x00" + (900).to_bytes(4, "big") + wire[5:],
        DecodeStage.AVRO,
        "lsst.v9_0",
    )
    yield "truncated container", ztf[: len(ztf) - 100], DecodeStage.FRAMING, "truncated"
    yield "bad sync marker", ztf[:-1] + bytes([ztf[-1] ^ 0xFF]), DecodeStage.FRAMING, "sync"
    yield "container header only", ztf[:4], DecodeStage.FRAMING, "header"
    simple = {"type": "record", "name": "thing", "fields": [{"name": "x", "type": "long"}]}
    yield "not an alert schema", _ocf(simple, [{"x": 1}]), DecodeStage.SCHEMA, "'thing'"
    zstd = ztf.replace(b"\x14avro.codec\x08null", b"\x14avro.codec\x08zstd", 1)
    assert zstd != ztf
    yield "unsupported codec", zstd, DecodeStage.FRAMING, "zstd"
    yield (
        "missing required field",
        _without_candidate_field("ra"),
        DecodeStage.MODEL,
        "candidate.ra",
    )
    yield "bad filter id", _with_candidate(fid=7), DecodeStage.MODEL, "fid is 7"
    yield "bad isdiffpos", _with_candidate(isdiffpos="x"), DecodeStage.MODEL, "isdiffpos"


BAD_CASES = list(_bad_cases())


@pytest.mark.parametrize(
    ("name", "value", "stage", "needle"), BAD_CASES, ids=[c[0] for c in BAD_CASES]
)
def test_bad_input_becomes_a_dead_letter(
    name: str, value: bytes | None, stage: DecodeStage, needle: str
) -> None:
    record = KafkaRecord(topic="alerts.test", partition=3, offset=42, key=None, value=value)
    result = decode_record(record, SCHEMAS)
    assert isinstance(result, DeadLetter), name
    assert result.stage == stage, result.reason
    assert needle in result.reason
    assert result.original == (value or b"")
    assert (result.topic, result.partition, result.offset) == ("alerts.test", 3, 42)


def test_null_lsst_flux_gives_no_mag_and_no_sign() -> None:
    # A real v9.0 alert re-encoded with psfFlux = null: still an alert, mag and sign unknown.
    path = DATA / "lsst" / "alerts" / "lsstcam_20250905_v9_0_original_alerce_sample.avro"
    with path.open("rb") as fh:
        reader = fastavro.reader(fh)
        (record,) = reader
        schema = reader.writer_schema
    record["diaSource"]["psfFlux"] = None
    (alert,) = decode_container(_ocf(schema, [record]), SCHEMAS)
    assert (alert.flux, alert.mag, alert.mag_err, alert.is_positive) == (None, None, None, None)


# ---------------------------------------------------------------------------------------------
