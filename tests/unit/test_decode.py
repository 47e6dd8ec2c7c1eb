"""Decoding every real alert in shared/data, checked against the index CSVs and fastavro."""

from __future__ import annotations

import functools
import io
import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import fastavro
import pytest

from tests.datapaths import lsst_index, shared_data, ztf_index
from transforms.alert_model import (
    Alert,
    Cutouts,
    Detection,
    DetectionKind,
    NearestStar,
    SolarSystemObject,
    Survey,
)
from transforms.decode import (
    DeadLetter,
    KafkaRecord,
    decode_container,
    decode_lsst_wire,
    decode_message,
    decode_record,
    decode_ztf,
)
from transforms.decode_errors import DecodeError, DecodeStage
from transforms.schemas import LsstSchemas, lsst_schema_id

DATA = shared_data()
SCHEMAS = LsstSchemas()
ZTF_ROWS = ztf_index()
LSST_ROWS = lsst_index()


def _float(text: str) -> float | None:
    return None if text in ("", "null", "None") else float(text)


@functools.cache
def _lsst_file_alerts(relpath: str) -> dict[int, Alert]:
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
    alert = _lsst_file_alerts(row["file"])[int(row["diaSourceId"])]
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
        assert len(_lsst_file_alerts(relpath)) == int(rows[0]["alerts_in_file"]) == len(rows)


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
# ZTF 1.x (the first public months, e.g. June 2018): no schemavsn field, the version is the
# writer schema's "version" attribute. Packets are written here from real alerts under the
# official schemas in tests/fixtures (see its README).
# ---------------------------------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Sources: a 3.2 alert near a solar-system object (30 upper limits); a 2.0 negative subtraction
# with -999 sentinels; a 2.0 alert with 62 earlier detections; a 4.02 negative subtraction with
# forced photometry, drb not rb, and detections of both signs in its history.
ZTF1_SOURCES = (
    "night_20181129_v3.2/697252380315015003.avro",
    "official_samples_multiversion/472263571115090000_v2.0.avro",
    "official_samples_multiversion/472263571115095000_v2.0.avro",
    "v4.0x_2023-2025/2752190655615010047.avro",
)
# Before 1.8 the closest PS1 source's fields had these names (1.8 added the second and third).
_PS1_NAMES_BEFORE_1_8 = {
    "sgmag": "sgmag1",
    "srmag": "srmag1",
    "simag": "simag1",
    "szmag": "szmag1",
    "sgscore": "sgscore1",
}
_OCF_HEADER = {
    "type": "record",
    "name": "org.apache.avro.file.Header",
    "fields": [
        {"name": "magic", "type": {"type": "fixed", "name": "Magic", "size": 4}},
        {"name": "meta", "type": {"type": "map", "values": "bytes"}},
        {"name": "sync", "type": {"type": "fixed", "name": "Sync", "size": 16}},
    ],
}


def _official_ztf_schema_text(version: str) -> str:
    """The split official schema files as one writer schema, each named type inline at its
    first use (as in the header of a ZTF packet), every attribute kept as published."""
    folder = FIXTURES / f"ztf-{version}"
    named = {}
    for name in ("candidate", "prv_candidate", "cutout"):
        schema = json.loads((folder / f"{name}.avsc").read_text())
        named[f"{schema['namespace']}.{schema['name']}"] = schema
    alert = json.loads((folder / "alert.avsc").read_text())

    def inline(kind: Any) -> Any:
        if isinstance(kind, str) and kind in named:
            return named.pop(kind)
        if isinstance(kind, list):
            return [inline(branch) for branch in kind]
        if isinstance(kind, dict) and kind.get("type") == "array":
            return dict(kind, items=inline(kind["items"]))
        return kind

    alert["fields"] = [dict(f, type=inline(f["type"])) for f in alert["fields"]]
    assert not named, f"unused schema files: {sorted(named)}"
    return json.dumps(alert, indent=1)


def _conform(value: Any, kind: Any, named: dict[str, Any]) -> Any:
    """``value`` (a real alert's data) as a datum of ``kind``: fields the schema has keep their
    value, fields the data lacks get the schema default (null if none)."""
    kind = named.get(kind, kind) if isinstance(kind, str) else kind
    if isinstance(kind, list):
        if value is None:
            return None
        for branch in kind:
            branch = named.get(branch, branch) if isinstance(branch, str) else branch
            if isinstance(branch, dict) and (
                (branch["type"] == "record" and isinstance(value, dict))
                or (branch["type"] == "array" and isinstance(value, list))
            ):
                return _conform(value, branch, named)
        return value
    if isinstance(kind, dict) and kind["type"] == "record":
        named[f"{kind['namespace']}.{kind['name']}"] = kind
        value = {
            **{old: value[new] for old, new in _PS1_NAMES_BEFORE_1_8.items() if new in value},
            **value,
        }
        return {
            f["name"]: _conform(value[f["name"]], f["type"], named)
            if f["name"] in value
            else f.get("default")
            for f in kind["fields"]
        }
    if isinstance(kind, dict) and kind["type"] == "array":
        return [_conform(item, kind["items"], named) for item in value]
    return value


def _ztf_packet_under(schema_text: str, source: dict[str, Any]) -> bytes:
    """A one-alert container with ``schema_text`` verbatim in its header (fastavro's writer
    would re-serialise the schema) and ``source`` conformed to that schema as its record."""
    schema = json.loads(schema_text)
    record = _conform(source, schema, {})
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record)
    sync = b"alertflow-ztf1.x"
    out = io.BytesIO()
    meta = {"avro.schema": schema_text.encode(), "avro.codec": b"null"}
    header = {"magic": b"Obj\x01", "meta": meta, "sync": sync}
    fastavro.schemaless_writer(out, fastavro.parse_schema(_OCF_HEADER), header)
    for count in (1, len(body.getvalue())):
        fastavro.schemaless_writer(out, "long", count)
    return out.getvalue() + body.getvalue() + sync


def _sentinel(value: float | None) -> float | None:
    return None if value == -999.0 else value


def _expected_history(rows: list[dict[str, Any]] | None) -> tuple[Detection, ...]:
    history = []
    for row in rows or ():
        band = {1: "g", 2: "r", 3: "i"}[row["fid"]]
        mjd = row["jd"] - 2400000.5
        if row["candid"] is None or row["magpsf"] is None:
            history.append(
                Detection(DetectionKind.UPPER_LIMIT, mjd, band, limiting_mag=row["diffmaglim"])
            )
            continue
        history.append(
            Detection(
                DetectionKind.DETECTION,
                mjd,
                band,
                mag=row["magpsf"],
                mag_err=row["sigmapsf"],
                limiting_mag=row["diffmaglim"],
                is_positive=row["isdiffpos"] in ("t", "1"),
                source_id=row["candid"],
                ra=row["ra"],
                dec=row["dec"],
            )
        )
    return tuple(history)


@pytest.mark.parametrize("version", ["1.5", "1.8"])
@pytest.mark.parametrize("source", ZTF1_SOURCES, ids=lambda s: s.split("/")[-1])
def test_ztf_1x_packet_decodes_with_the_writer_schema_version(version: str, source: str) -> None:
    with (DATA / "ztf" / "alerts" / source).open("rb") as fh:
        (real,) = fastavro.reader(fh)
    text = _official_ztf_schema_text(version)
    packet = _ztf_packet_under(text, real)
    # The header holds the official schema, its version attribute and no schemavsn field.
    reader = fastavro.reader(io.BytesIO(packet))
    assert reader.metadata["avro.schema"] == text
    assert f'"version": "{version}"' in text
    assert "schemavsn" not in {f["name"] for f in json.loads(text)["fields"]}
    (record,) = reader
    cand = record["candidate"]
    assert (cand["candid"], cand["ra"], cand["magpsf"]) == (
        real["candidate"]["candid"],
        real["candidate"]["ra"],
        real["candidate"]["magpsf"],
    )

    alert = decode_ztf(packet)
    assert alert.survey is Survey.ZTF
    assert alert.schema_version == version
    assert alert.alert_id == alert.source_id == record["candid"] == cand["candid"]
    assert alert.object_id == record["objectId"]
    assert (alert.ra, alert.dec, alert.mag, alert.mag_err) == (
        cand["ra"],
        cand["dec"],
        cand["magpsf"],
        cand["sigmapsf"],
    )
    assert alert.mjd == cand["jd"] - 2400000.5
    assert alert.band == {1: "g", 2: "r", 3: "i"}[cand["fid"]]
    assert "drb" not in cand and alert.reliability == cand["rb"]
    assert alert.is_positive is (cand["isdiffpos"] in ("t", "1"))
    if cand["ssnamenr"] in (None, "null", ""):
        assert alert.solar_system is None
    else:
        assert alert.solar_system == SolarSystemObject(
            name=cand["ssnamenr"],
            distance_arcsec=_sentinel(cand["ssdistnr"]),
            mag=_sentinel(cand["ssmagnr"]),
        )
    score, r_mag = ("sgscore1", "srmag1") if version == "1.8" else ("sgscore", "srmag")
    assert alert.nearest_star == NearestStar(
        star_galaxy_score=_sentinel(cand[score]),
        distance_arcsec=_sentinel(cand["distpsnr1"]),
        r_mag=_sentinel(cand[r_mag]),
    )
    assert alert.history == _expected_history(record["prv_candidates"])
    assert [d.kind is DetectionKind.DETECTION for d in alert.history] == [
        row["candid"] is not None for row in real["prv_candidates"] or ()
    ]
    assert alert.forced_photometry == ()  # no fp_hists before 4.01
    assert alert.cutouts == Cutouts(
        *(record[k]["stampData"] for k in ("cutoutScience", "cutoutTemplate", "cutoutDifference"))
    )
    assert alert.original == packet
    assert decode_message(packet, SCHEMAS) == (alert,)


def test_ztf_packet_with_neither_schemavsn_nor_a_version_attribute_is_a_model_error() -> None:
    with (DATA / "ztf" / "alerts" / ZTF1_SOURCES[0]).open("rb") as fh:
        (real,) = fastavro.reader(fh)
    schema = json.loads(_official_ztf_schema_text("1.8"))
    del schema["version"]
    result = decode_record(
        KafkaRecord("alerts.ztf", 0, 7, None, _ztf_packet_under(json.dumps(schema), real)),
        SCHEMAS,
    )
    assert isinstance(result, DeadLetter)
    assert result.stage == DecodeStage.MODEL
    assert "alert.schemavsn" in result.reason and '"version"' in result.reason


def test_schemavsn_wins_over_the_writer_schema_version() -> None:
    # A 2.0 packet names its version both ways; the packet's own field is the one read.
    path = DATA / "ztf" / "alerts" / ZTF1_SOURCES[1]
    with path.open("rb") as fh:
        reader = fastavro.reader(fh)
        (real,) = reader
    schema = json.loads(reader.metadata["avro.schema"])
    assert (schema["version"], real["schemavsn"]) == ("2.0", "2.0")
    schema["version"] = "9.9"
    assert decode_ztf(_ztf_packet_under(json.dumps(schema), real)).schema_version == "2.0"
    assert decode_ztf(path.read_bytes()).schema_version == "2.0"


# ---------------------------------------------------------------------------------------------
# The projecting reader returns exactly what fastavro returns, for every real packet
# ---------------------------------------------------------------------------------------------


def _assert_subset(ours: Any, full: Any, where: str = "record") -> None:
    if isinstance(ours, dict):
        assert isinstance(full, dict), where
        for key, value in ours.items():
            assert key in full, f"{where}.{key}"
            _assert_subset(value, full[key], f"{where}.{key}")
    elif isinstance(ours, list):
        assert isinstance(full, list) and len(ours) == len(full), where
        for i, (a, b) in enumerate(zip(ours, full, strict=True)):
            _assert_subset(a, b, f"{where}[{i}]")
    elif isinstance(ours, float) and math.isnan(ours):
        assert isinstance(full, float) and math.isnan(full), where
    else:
        assert ours == full, where


def test_ztf_projection_equals_fastavro_on_every_packet() -> None:
    from transforms.avro_container import parse_container_header, read_long
    from transforms.schemas import container_schema

    for path in sorted((DATA / "ztf" / "alerts").glob("*/*.avro")):
        message = path.read_bytes()
        header = parse_container_header(message)
        compiled = container_schema(header.metadata["avro.schema"])
        _, pos = read_long(message, header.end, "count")
        size, pos = read_long(message, pos, "size")
        ours, stop = compiled.reader(message, pos, pos + size)
        assert stop == pos + size
        (full,) = fastavro.reader(io.BytesIO(message))
        _assert_subset(ours, full)
        assert ours["candidate"]["candid"] == full["candid"]


def test_lsst_projection_equals_fastavro_on_every_wire_packet() -> None:
    messages = [p.read_bytes() for p in sorted((DATA / "lsst").glob("**/*.bin"))]
    for relpath in sorted({r["file"] for r in LSST_ROWS if r["file"].endswith(".avro")}):
        messages += [a.original for a in _lsst_file_alerts(relpath).values()]
    for message in messages:
        compiled = SCHEMAS.get(int.from_bytes(message[1:5], "big"))
        ours, stop = compiled.reader(message, 5, len(message))
        assert stop == len(message)
        full = fastavro.schemaless_reader(
            io.BytesIO(message[5:]), fastavro.parse_schema(dict(compiled.writer)), None
        )
        _assert_subset(ours, full)


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


def _lsst_wire() -> bytes:
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
    wire = _lsst_wire()
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
# Schema registry
# ---------------------------------------------------------------------------------------------


class _Registry(BaseHTTPRequestHandler):
    schemas: ClassVar[dict[int, str]] = {}
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        schema_id = (
            int(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/schemas/ids/") else -1
        )
        if schema_id in self.schemas:
            body = json.dumps({"schema": self.schemas[schema_id]}).encode()
            self.send_response(200)
        else:
            body = b'{"error_code": 40403, "message": "Schema not found"}'
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def registry() -> Iterator[str]:
    writer = SCHEMAS.get(704).writer
    _Registry.schemas = {704: json.dumps(dict(writer))}
    _Registry.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_schema_registry_resolves_and_caches(registry: str, tmp_path: Path) -> None:
    schemas = LsstSchemas(directory=tmp_path, registry_url=registry)
    wire = _lsst_wire()
    first = decode_lsst_wire(wire, schemas)
    second = decode_lsst_wire(wire, schemas)
    assert first == second == decode_lsst_wire(wire, SCHEMAS)
    assert _Registry.hits == ["/schemas/ids/704"]


def test_schema_registry_miss_is_a_schema_dead_letter(registry: str, tmp_path: Path) -> None:
    schemas = LsstSchemas(directory=tmp_path, registry_url=registry)
    message = b"\x00" + (701).to_bytes(4, "big") + _lsst_wire()[5:]
    result = decode_record(KafkaRecord("t", 0, 0, None, message), schemas)
    assert isinstance(result, DeadLetter)
    assert result.stage == DecodeStage.SCHEMA
    assert "answered 404" in result.reason


def test_unreachable_registry_is_a_schema_dead_letter(tmp_path: Path) -> None:
    schemas = LsstSchemas(directory=tmp_path, registry_url="http://127.0.0.1:9", timeout_s=1)
    with pytest.raises(DecodeError) as err:
        decode_lsst_wire(_lsst_wire(), schemas)
    assert err.value.stage == DecodeStage.SCHEMA
    assert "unreachable" in err.value.reason


def test_schemas_pickle_without_their_cache() -> None:
    import pickle

    schemas = LsstSchemas()
    schemas.get(704)
    copy = pickle.loads(pickle.dumps(schemas))
    assert copy.directory == schemas.directory and copy._cache == {}
    assert decode_lsst_wire(_lsst_wire(), copy) == decode_lsst_wire(_lsst_wire(), schemas)
