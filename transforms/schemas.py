"""Avro writer schemas for the alert streams, and fast projecting readers compiled from them.

Two jobs live here, both about schemas as versioned data (STYLE.md rule 4):

* **Resolution.** Rubin (LSST) alerts arrive in Confluent wire format with a schema id
  ``major * 100 + minor``. :class:`LsstSchemas` resolves an id to its writer schema from a local
  directory (by default the copies shipped in ``transforms/lsst_schemas``) and, when configured,
  from a Confluent-compatible schema registry (``GET {url}/schemas/ids/{id}``). ZTF packets carry
  their writer schema in the Avro container header; :func:`ztf_reader` turns the header's schema
  text into a reader once per distinct text.
* **Projection.** Decoding every field of an alert costs far more than the alert model needs:
  a ZTF packet has ~100 candidate fields and up to 30 history rows of ~60 fields each, and
  ``fastavro`` (even with a reduced reader schema, whose per-record resolution eats most of the
  saving) spends its time building dicts we would throw away. :func:`compile_projection` turns a
  writer schema plus a projection (which fields of which record to keep) into a straight-line
  Python decoder that skips unwanted fields by arithmetic on the byte offset. It returns exactly
  what ``fastavro.schemaless_reader`` returns for the kept fields (the tests check this on every
  real alert), several times faster. The decoder source is generated from the schema's structure
  only: field names enter it solely as ``repr()`` string literals, and the type vocabulary is a
  closed set, so no schema can inject code.

Every failure here raises :class:`SchemaError` (resolution, unsupported schema) or one of
:data:`DECODE_ERRORS` (bytes that do not match their schema); ``transforms.decode`` turns both
into dead letters.
"""

from __future__ import annotations

import functools
import json
import re
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro.schema import load_schema

from transforms.avro_binary import read_long

#: Where the Rubin schemas shipped with alertflow live: ``lsst.vX_Y/lsst.vX_Y.alert.avsc``.
DEFAULT_LSST_SCHEMA_DIR = Path(__file__).resolve().parent / "lsst_schemas"

#: Exceptions a compiled reader raises on bytes that do not match the schema. IndexError is
#: running off the end of the buffer; struct.error a short float; UnicodeDecodeError a bad string.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    IndexError,
    ValueError,
    struct.error,
    UnicodeDecodeError,
    OverflowError,
)

#: A projection: record short name -> the field names to keep. Records not listed are kept
#: whole; a record listed with an empty set is skipped field by field and decodes to ``{}``.
Projection = Mapping[str, frozenset[str]]

#: ``reader(buf, pos, end) -> (record, end_pos)``: decodes one record starting at ``buf[pos]``.
ProjectionReader = Callable[[bytes, int, int], tuple[dict[str, Any], int]]

# Fields of the ZTF packet that the alert model reads (transforms.decode maps them).
ZTF_PROJECTION: Projection = {
    "alert": frozenset(
        {
            "schemavsn",
            "objectId",
            "candid",
            "candidate",
            "prv_candidates",
            "fp_hists",
            "cutoutScience",
            "cutoutTemplate",
            "cutoutDifference",
        }
    ),
    "candidate": frozenset(
        {
            "jd",
            "fid",
            "candid",
            "isdiffpos",
            "ra",
            "dec",
            "magpsf",
            "sigmapsf",
            "rb",
            "drb",
            "ssdistnr",
            "ssmagnr",
            "ssnamenr",
            "sgscore1",
            "distpsnr1",
            "srmag1",
            # Their names before ZTF schema 1.8 (which added the second and third PS1 source).
            "sgscore",
            "srmag",
            "programid",
        }
    ),
    "prv_candidate": frozenset(
        {"jd", "fid", "candid", "isdiffpos", "ra", "dec", "magpsf", "sigmapsf", "diffmaglim"}
    ),
    "fp_hist": frozenset(
        {"jd", "fid", "forcediffimflux", "forcediffimfluxunc", "magzpsci", "diffmaglim"}
    ),
    "cutout": frozenset({"stampData"}),
}

# Fields of the Rubin packet that the alert model reads, under every name they had from v3.0
# (psFlux, filterName, midPointTai, decl) to v11.1 (psfFlux, band, midpointMjdTai, dec).
_LSST_SOURCE_FIELDS = frozenset(
    {
        "diaSourceId",
        "diaObjectId",
        "ssObjectId",
        "ra",
        "dec",
        "decl",
        "psfFlux",
        "psFlux",
        "psfFluxErr",
        "psFluxErr",
        "band",
        "filterName",
        "midpointMjdTai",
        "midPointTai",
        "reliability",
    }
)
LSST_PROJECTION: Projection = {
    "alert": frozenset(
        {
            "alertId",
            "diaSourceId",
            "diaSource",
            "prvDiaSources",
            "prvDiaForcedSources",
            "prvDiaNondetectionLimits",
            "ssSource",
            "ssObject",
            "diaObject",
            "cutoutDifference",
            "cutoutScience",
            "cutoutTemplate",
        }
    ),
    "diaSource": _LSST_SOURCE_FIELDS,
    "diaForcedSource": frozenset(
        {
            "diaForcedSourceId",
            "diaObjectId",
            "ra",
            "dec",
            "decl",
            "psfFlux",
            "psFlux",
            "psfFluxErr",
            "psFluxErr",
            "band",
            "filterName",
            "midpointMjdTai",
            "midPointTai",
        }
    ),
    "diaNondetectionLimit": frozenset(
        {"midpointMjdTai", "midPointTai", "band", "filterName", "diaNoise"}
    ),
    "ssSource": frozenset({"ssObjectId", "designation"}),
    "ssObject": frozenset({"ssObjectId", "designation"}),
    # Kept in the projection (not dropped from "alert") only so that its presence is known;
    # none of its ~80 fields is decoded.
    "diaObject": frozenset(),
    "MPCORB": frozenset(),
    "mpc_orbits": frozenset(),
}


class SchemaError(Exception):
    """A writer schema cannot be found, fetched, parsed or compiled. ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Projection compiler
# --------------------------------------------------------------------------------------------

_FLOAT = struct.Struct("<f").unpack_from
_DOUBLE = struct.Struct("<d").unpack_from
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# Python refuses more than 20 statically nested blocks; deeper schemas are refused up front.
_MAX_NESTING = 16


class _Compiler:
    """Emits the source of one projecting reader. Private: use :func:`compile_projection`."""

    def __init__(self, projection: Projection) -> None:
        self._projection = projection
        self._named: dict[str, Any] = {}
        self._lines: list[str] = []
        self._n = 0
        self.constants: dict[str, Any] = {}

    def source(self, schema: Any) -> str:
        self._emit(1, "end_ = end")
        self._read(schema, 1, "out", "")
        self._emit(1, "if pos > end_: raise ValueError('record runs past the end of its bytes')")
        self._emit(1, "return out, pos")
        return "def reader(buf, pos, end):\n" + "\n".join(self._lines) + "\n"

    def _emit(self, indent: int, line: str) -> None:
        if indent > _MAX_NESTING:
            raise SchemaError(f"schema nests deeper than {_MAX_NESTING} levels")
        self._lines.append("    " * indent + line)

    def _var(self) -> str:
        self._n += 1
        return f"v{self._n}"

    def _resolve(self, schema: Any, namespace: str) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            for name in (schema, f"{namespace}.{schema}" if namespace else schema):
                if name in self._named:
                    return self._named[name]
            raise SchemaError(f"schema references undefined type {schema!r}")
        return schema

    def _register(self, schema: dict[str, Any], namespace: str) -> tuple[str, str]:
        """Records a named type; returns (full name, namespace for its children)."""
        name = schema.get("name")
        if not isinstance(name, str) or not name:
            raise SchemaError(f"named {schema.get('type')} type has no name")
        ns = schema.get("namespace", namespace) or ""
        full = name if "." in name or not ns else f"{ns}.{name}"
        self._named.setdefault(full, schema)
        self._named.setdefault(name.rsplit(".", 1)[-1], schema)
        return full, full.rsplit(".", 1)[0] if "." in full else ""

    def _constant(self, value: Any) -> str:
        key = f"c{len(self.constants)}"
        self.constants[key] = value
        return key

    def _array_header(self, indent: int, count: str) -> None:
        # A negative block count is followed by the block's byte size (Avro spec); the
        # count <= remaining bytes check bounds the loop on hostile input, since every item of
        # the types in use takes at least one byte.
        self._emit(indent, f"{count}, pos = _read_long(buf, pos)")
        self._emit(indent, f"if {count} == 0: break")
        self._emit(indent, f"if {count} < 0: {count} = -{count}; _, pos = _read_long(buf, pos)")
        self._emit(
            indent,
            f"if {count} > end_ - pos: raise ValueError('block count exceeds the bytes left')",
        )

    def _read(self, schema: Any, ind: int, target: str, ns: str) -> None:
        schema = self._resolve(schema, ns)
        if isinstance(schema, list):
            u = self._var()
            self._emit(ind, f"{u} = buf[pos]; pos += 1")
            for i, branch in enumerate(schema):
                self._emit(ind, f"{'if' if i == 0 else 'elif'} {u} == {2 * i}:")
                self._read(branch, ind + 1, target, ns)
            self._emit(ind, f"else: raise ValueError('union index byte %d out of range' % {u})")
            return
        if isinstance(schema, dict):
            kind = schema.get("type")
            if kind in {"record", "error"}:
                full, child_ns = self._register(schema, ns)
                keep = self._projection.get(full.rsplit(".", 1)[-1])
                rec = self._var()
                self._emit(ind, f"{rec} = {{}}")
                for fld in schema.get("fields", []):
                    if keep is None or fld["name"] in keep:
                        self._read(fld["type"], ind, f"{rec}[{fld['name']!r}]", child_ns)
                    else:
                        self._skip(fld["type"], ind, child_ns)
                self._emit(ind, f"{target} = {rec}")
            elif kind in {"array", "map"}:
                out, count, item = self._var(), self._var(), self._var()
                self._emit(ind, f"{out} = []" if kind == "array" else f"{out} = {{}}")
                self._emit(ind, "while True:")
                self._array_header(ind + 1, count)
                self._emit(ind + 1, f"for _ in range({count}):")
                if kind == "map":
                    key = self._var()
                    self._read("string", ind + 2, key, ns)
                    self._read(schema["values"], ind + 2, item, ns)
                    self._emit(ind + 2, f"{out}[{key}] = {item}")
                else:
                    self._read(schema["items"], ind + 2, item, ns)
                    self._emit(ind + 2, f"{out}.append({item})")
                self._emit(ind, f"{target} = {out}")
            elif kind == "enum":
                self._register(schema, ns)
                symbols = self._constant(tuple(schema["symbols"]))
                idx = self._var()
                self._emit(ind, f"{idx}, pos = _read_long(buf, pos)")
                self._emit(ind, f"if {idx} < 0: raise ValueError('negative enum index')")
                self._emit(ind, f"{target} = {symbols}[{idx}]")
            elif kind == "fixed":
                self._register(schema, ns)
                size = int(schema["size"])
                self._emit(ind, f"{target} = buf[pos:pos + {size}]; pos += {size}")
            elif kind in _PRIMITIVES:
                # {"type": "long", "logicalType": ...}: the projection returns the raw value.
                self._read(kind, ind, target, ns)
            else:
                raise SchemaError(f"unsupported Avro type {kind!r}")
            return
        if schema == "null":
            self._emit(ind, f"{target} = None")
        elif schema == "boolean":
            self._emit(ind, f"{target} = buf[pos] == 1; pos += 1")
        elif schema in ("int", "long"):
            self._emit(ind, f"{target}, pos = _read_long(buf, pos)")
        elif schema == "float":
            self._emit(ind, f"{target} = _FLOAT(buf, pos)[0]; pos += 4")
        elif schema == "double":
            self._emit(ind, f"{target} = _DOUBLE(buf, pos)[0]; pos += 8")
        elif schema in ("bytes", "string"):
            n = self._var()
            self._emit(ind, f"{n}, pos = _read_long(buf, pos)")
            self._emit(
                ind, f"if {n} < 0 or pos + {n} > end_: raise ValueError('bad length %d' % {n})"
            )
            decode = ".decode()" if schema == "string" else ""
            self._emit(ind, f"{target} = buf[pos:pos + {n}]{decode}; pos += {n}")
        else:
            raise SchemaError(f"unsupported Avro type {schema!r}")

    def _skip(self, schema: Any, ind: int, ns: str) -> None:
        schema = self._resolve(schema, ns)
        if isinstance(schema, list):
            # The common ["null", float|double] case in one branch-light step.
            if len(schema) == 2 and schema[0] == "null" and schema[1] in ("float", "double"):
                width = 5 if schema[1] == "float" else 9
                self._emit(ind, f"if buf[pos] == 2: pos += {width}")
                self._emit(ind, "elif buf[pos] == 0: pos += 1")
                self._emit(
                    ind, "else: raise ValueError('union index byte %d out of range' % buf[pos])"
                )
                return
            u = self._var()
            self._emit(ind, f"{u} = buf[pos]; pos += 1")
            for i, branch in enumerate(schema):
                self._emit(ind, f"{'if' if i == 0 else 'elif'} {u} == {2 * i}:")
                self._emit(ind + 1, "pass")
                self._skip(branch, ind + 1, ns)
            self._emit(ind, f"else: raise ValueError('union index byte %d out of range' % {u})")
            return
        if isinstance(schema, dict):
            kind = schema.get("type")
            if kind in {"record", "error"}:
                _, child_ns = self._register(schema, ns)
                for fld in schema.get("fields", []):
                    self._skip(fld["type"], ind, child_ns)
            elif kind in {"array", "map"}:
                count = self._var()
                self._emit(ind, "while True:")
                self._array_header(ind + 1, count)
                self._emit(ind + 1, f"for _ in range({count}):")
                self._emit(ind + 2, "pass")
                if kind == "map":
                    self._skip("string", ind + 2, ns)
                    self._skip(schema["values"], ind + 2, ns)
                else:
                    self._skip(schema["items"], ind + 2, ns)
            elif kind == "enum":
                self._register(schema, ns)
                self._skip("long", ind, ns)
            elif kind == "fixed":
                self._register(schema, ns)
                self._emit(ind, f"pos += {int(schema['size'])}")
            elif kind in _PRIMITIVES:
                self._skip(kind, ind, ns)
            else:
                raise SchemaError(f"unsupported Avro type {kind!r}")
            return
        if schema == "null":
            return
        if schema == "boolean":
            self._emit(ind, "pos += 1")
        elif schema in ("int", "long"):
            self._emit(ind, "while buf[pos] & 0x80: pos += 1")
            self._emit(ind, "pos += 1")
        elif schema == "float":
            self._emit(ind, "pos += 4")
        elif schema == "double":
            self._emit(ind, "pos += 8")
        elif schema in ("bytes", "string"):
            n = self._var()
            self._emit(ind, f"{n}, pos = _read_long(buf, pos)")
            self._emit(ind, f"if {n} < 0: raise ValueError('negative length %d' % {n})")
            self._emit(ind, f"pos += {n}")
        else:
            raise SchemaError(f"unsupported Avro type {schema!r}")


def compile_projection(schema: Any, projection: Projection) -> ProjectionReader:
    """Compile a writer schema into a reader that decodes only the projected fields.

    ``schema`` is a writer schema as JSON-like data (named types defined inline at first use and
    referenced by name afterwards, as in an OCF header or ``fastavro.schema.load_schema``).
    The returned ``reader(buf, pos, end)`` decodes one record from ``buf[pos:end]`` and returns
    ``(record, next_pos)``; ``record`` equals fastavro's result restricted to the kept fields
    (logical types are returned raw). On bytes that do not match the schema it raises one of
    :data:`DECODE_ERRORS`; the caller must also check ``next_pos == end`` to catch trailing bytes.
    Raises :class:`SchemaError` if the schema is malformed or uses unsupported constructs.
    """
    compiler = _Compiler(projection)
    try:
        source = compiler.source(schema)
    except (KeyError, TypeError, AttributeError, RecursionError) as err:
        raise SchemaError(f"malformed Avro schema ({type(err).__name__}: {err})") from err
    namespace: dict[str, Any] = {
        "_read_long": read_long,
        "_FLOAT": _FLOAT,
        "_DOUBLE": _DOUBLE,
        **compiler.constants,
    }
    try:
        # The generated code is a pure function of the schema's structure (see module docstring).
        exec(compile(source, "<alertflow projection reader>", "exec"), namespace)
    except (SyntaxError, RecursionError, MemoryError) as err:
        raise SchemaError(f"schema too complex to compile ({type(err).__name__})") from err
    reader: ProjectionReader = namespace["reader"]
    return reader


# --------------------------------------------------------------------------------------------
# ZTF: writer schema embedded in each packet
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A writer schema and its projecting reader, cached per distinct schema.

    ``name`` is the top-level record's full name (``ztf.alert``, ``lsst.v9_0.alert``);
    ``writer`` is the schema as JSON-like data (used to re-encode and for fastavro baselines);
    ``version`` is the top-level ``"version"`` attribute of the schema if it has one as a string
    (ZTF schemas name their version there: packets of ZTF 1.x have no ``schemavsn`` field).
    """

    name: str
    writer: Mapping[str, Any]
    reader: ProjectionReader
    version: str | None = None


def _record_name(schema: Any) -> str:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaError("the writer schema's top level is not an Avro record")
    name = str(schema.get("name", ""))
    ns = schema.get("namespace")
    return name if "." in name or not ns else f"{ns}.{name}"


@functools.lru_cache(maxsize=64)
def container_schema(schema_text: bytes) -> CompiledSchema:
    """Parse and compile the writer schema from an Avro container header, once per text.

    The projection is chosen from the schema's name: ``ztf.alert`` gets :data:`ZTF_PROJECTION`,
    ``lsst.vX_Y.alert`` gets :data:`LSST_PROJECTION`; a ZTF schema of any version (1.x has no
    ``schemavsn``, ``drb`` came in 3.3, ``fp_hists`` in 4.01) compiles: the projection skips
    the fields a version lacks. The schema's ``"version"`` attribute is kept. The cache is
    bounded so that a stream of garbage schemas cannot grow memory without limit. Raises
    :class:`SchemaError`.
    """
    try:
        writer = json.loads(schema_text)
    except (ValueError, UnicodeDecodeError) as err:
        raise SchemaError(f"container header's avro.schema is not valid JSON: {err}") from err
    name = _record_name(writer)
    if name == "ztf.alert":
        projection = ZTF_PROJECTION
    elif LSST_VERSION_PATTERN.fullmatch(name):
        projection = LSST_PROJECTION
    else:
        raise SchemaError(
            f"container schema is {name!r}; expected 'ztf.alert' or 'lsst.vX_Y.alert'"
        )
    version = writer.get("version")
    return CompiledSchema(
        name=name,
        writer=writer,
        reader=compile_projection(writer, projection),
        version=version if isinstance(version, str) and version else None,
    )


# --------------------------------------------------------------------------------------------
# LSST: schema ids resolved from a directory or a registry
# --------------------------------------------------------------------------------------------

#: ``lsst.v9_0.alert`` -> groups (9, 0).
LSST_VERSION_PATTERN = re.compile(r"lsst\.v(\d+)_(\d+)\.alert")


def lsst_schema_id(major: int, minor: int) -> int:
    """The Confluent schema id Rubin uses for schema version major.minor (7.4 -> 704)."""
    return major * 100 + minor


def lsst_version(schema_id: int) -> str:
    """The schema version string for an id (704 -> '7.4')."""
    return f"{schema_id // 100}.{schema_id % 100}"


class LsstSchemas:
    """Resolves Rubin schema ids to compiled writer schemas; thread-safe, cached.

    Lookup order for an id: the local directory (``lsst.vX_Y/lsst.vX_Y.alert.avsc`` with the
    named types beside it), then the registry if ``registry_url`` is set. Successful lookups are
    cached for the life of the object; failures are not cached for the registry (it may come
    back), and are cheap for the directory. The object pickles without its cache, so Beam ships
    only the directory and URL to the workers.
    """

    def __init__(
        self,
        directory: Path | str = DEFAULT_LSST_SCHEMA_DIR,
        registry_url: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.directory = Path(directory)
        self.registry_url = registry_url.rstrip("/") if registry_url else None
        self.timeout_s = timeout_s
        self._cache: dict[int, CompiledSchema] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "registry_url": self.registry_url,
            "timeout_s": self.timeout_s,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def known_ids(self) -> list[int]:
        """Schema ids available in the local directory, ascending."""
        ids = []
        for child in self.directory.glob("lsst.v*_*"):
            match = re.fullmatch(r"lsst\.v(\d+)_(\d+)", child.name)
            if match and (child / f"{child.name}.alert.avsc").is_file():
                ids.append(lsst_schema_id(int(match[1]), int(match[2])))
        return sorted(ids)

    def get(self, schema_id: int) -> CompiledSchema:
        """The compiled schema for ``schema_id``. Raises :class:`SchemaError` with the remedy."""
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._cache.get(schema_id)
            if cached is None:
                cached = self._load(schema_id)
                self._cache[schema_id] = cached
        return cached

    def _load(self, schema_id: int) -> CompiledSchema:
        major, minor = divmod(schema_id, 100)
        name = f"lsst.v{major}_{minor}"
        path = self.directory / name / f"{name}.alert.avsc"
        if path.is_file():
            try:
                writer = load_schema(str(path), _write_hint=False)
            except (ValueError, KeyError, OSError) as err:
                raise SchemaError(f"schema file {path} does not load: {err}") from err
        elif self.registry_url is not None:
            writer = self._fetch(schema_id)
        else:
            raise SchemaError(
                f"unknown LSST schema id {schema_id} (version {lsst_version(schema_id)}): "
                f"no {name}/{name}.alert.avsc in {self.directory} (known ids: "
                f"{', '.join(map(str, self.known_ids())) or 'none'}) and no schema registry "
                "configured; add the schema folder or set a registry URL"
            )
        record_name = _record_name(writer)
        assert isinstance(writer, dict), "_record_name accepts only a record"
        return CompiledSchema(
            name=record_name,
            writer=writer,
            reader=compile_projection(writer, LSST_PROJECTION),
        )

    def _fetch(self, schema_id: int) -> Any:
        """The schema the registry has under ``schema_id``, as JSON data (not checked here)."""
        url = f"{self.registry_url}/schemas/ids/{schema_id}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                payload = json.load(response)
            schema = payload["schema"]
            return json.loads(schema) if isinstance(schema, str) else schema
        except urllib.error.HTTPError as err:
            raise SchemaError(
                f"schema registry {self.registry_url} answered {err.code} for schema id "
                f"{schema_id}; register the schema or check the id"
            ) from err
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise SchemaError(
                f"schema registry {self.registry_url} unreachable for schema id {schema_id}: "
                f"{err}; the message can be replayed from the dead-letter topic"
            ) from err
        except (ValueError, KeyError, TypeError) as err:
            raise SchemaError(
                f"schema registry {self.registry_url} sent no usable schema for id "
                f"{schema_id}: {err}"
            ) from err
