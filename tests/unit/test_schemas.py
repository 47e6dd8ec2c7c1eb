"""The projecting readers and the schema sources: equal to fastavro on every real packet; the
schema registry resolves, caches and fails as dead letters; LsstSchemas pickles lean."""

from __future__ import annotations

import io
import json
import math
import pickle
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import fastavro
import pytest

from tests.unit.test_decode import DATA, LSST_ROWS, SCHEMAS, lsst_file_alerts, lsst_wire
from transforms.avro_container import parse_container_header, read_long
from transforms.decode import DeadLetter, KafkaRecord, decode_lsst_wire, decode_record
from transforms.decode_errors import DecodeError, DecodeStage
from transforms.schemas import LsstSchemas, container_schema

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
        messages += [a.original for a in lsst_file_alerts(relpath).values()]
    for message in messages:
        compiled = SCHEMAS.get(int.from_bytes(message[1:5], "big"))
        ours, stop = compiled.reader(message, 5, len(message))
        assert stop == len(message)
        full = fastavro.schemaless_reader(
            io.BytesIO(message[5:]), fastavro.parse_schema(dict(compiled.writer)), None
        )
        _assert_subset(ours, full)


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
    wire = lsst_wire()
    first = decode_lsst_wire(wire, schemas)
    second = decode_lsst_wire(wire, schemas)
    assert first == second == decode_lsst_wire(wire, SCHEMAS)
    assert _Registry.hits == ["/schemas/ids/704"]


def test_schema_registry_miss_is_a_schema_dead_letter(registry: str, tmp_path: Path) -> None:
    schemas = LsstSchemas(directory=tmp_path, registry_url=registry)
    message = b"\x00" + (701).to_bytes(4, "big") + lsst_wire()[5:]
    result = decode_record(KafkaRecord("t", 0, 0, None, message), schemas)
    assert isinstance(result, DeadLetter)
    assert result.stage == DecodeStage.SCHEMA
    assert "answered 404" in result.reason


def test_unreachable_registry_is_a_schema_dead_letter(tmp_path: Path) -> None:
    schemas = LsstSchemas(directory=tmp_path, registry_url="http://127.0.0.1:9", timeout_s=1)
    with pytest.raises(DecodeError) as err:
        decode_lsst_wire(lsst_wire(), schemas)
    assert err.value.stage == DecodeStage.SCHEMA
    assert "unreachable" in err.value.reason


def test_schemas_pickle_without_their_cache() -> None:
    schemas = LsstSchemas()
    schemas.get(704)
    copy = pickle.loads(pickle.dumps(schemas))
    assert copy.directory == schemas.directory and copy._cache == {}
    assert decode_lsst_wire(lsst_wire(), copy) == decode_lsst_wire(lsst_wire(), schemas)
