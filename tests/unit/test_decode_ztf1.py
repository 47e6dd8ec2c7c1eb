"""ZTF 1.x packets decode, with the writer schema's version as the packet's schema version."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from tests.unit.test_decode import DATA, SCHEMAS
from transforms import alert_model as model
from transforms.decode import DeadLetter, KafkaRecord, decode_message, decode_record, decode_ztf
from transforms.decode_errors import DecodeStage

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


def _expected_history(rows: list[dict[str, Any]] | None) -> tuple[model.Detection, ...]:
    history = []
    for row in rows or ():
        band = {1: "g", 2: "r", 3: "i"}[row["fid"]]
        mjd = row["jd"] - 2400000.5
        if row["candid"] is None or row["magpsf"] is None:
            history.append(
                model.Detection(
                    model.DetectionKind.UPPER_LIMIT, mjd, band, limiting_mag=row["diffmaglim"]
                )
            )
            continue
        history.append(
            model.Detection(
                model.DetectionKind.DETECTION,
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
    assert alert.survey is model.Survey.ZTF
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
        assert alert.solar_system == model.SolarSystemObject(
            name=cand["ssnamenr"],
            distance_arcsec=_sentinel(cand["ssdistnr"]),
            mag=_sentinel(cand["ssmagnr"]),
        )
    score, r_mag = ("sgscore1", "srmag1") if version == "1.8" else ("sgscore", "srmag")
    assert alert.nearest_star == model.NearestStar(
        star_galaxy_score=_sentinel(cand[score]),
        distance_arcsec=_sentinel(cand["distpsnr1"]),
        r_mag=_sentinel(cand[r_mag]),
    )
    assert alert.history == _expected_history(record["prv_candidates"])
    assert [d.kind is model.DetectionKind.DETECTION for d in alert.history] == [
        row["candid"] is not None for row in real["prv_candidates"] or ()
    ]
    assert alert.forced_photometry == ()  # no fp_hists before 4.01
    assert alert.cutouts == model.Cutouts(
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
