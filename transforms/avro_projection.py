"""Projecting Avro readers: a writer schema compiled into a decoder of only the fields wanted.

Decoding every field of an alert costs far more than the alert model needs: a ZTF packet has
~100 candidate fields and up to 30 history rows of ~60 fields each, and ``fastavro`` (even with
a reduced reader schema, whose per-record resolution eats most of the saving) spends its time
building dicts we would throw away. :func:`compile_projection` turns a writer schema plus a
projection (which fields of which record to keep) into a straight-line Python decoder that
skips unwanted fields by arithmetic on the byte offset. It returns exactly what
``fastavro.schemaless_reader`` returns for the kept fields (the tests check this on every real
alert), several times faster. The decoder source is generated from the schema's structure only:
field names enter it solely as ``repr()`` string literals, and the type vocabulary is a closed
set, so no schema can inject code.

A schema that cannot be compiled raises :class:`SchemaError`; bytes that do not match their
schema raise one of :data:`DECODE_ERRORS`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from transforms.avro_binary import read_long

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


class SchemaError(Exception):
    """A writer schema cannot be found, fetched, parsed or compiled. ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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

    def _union(self, branches: list[Any], ind: int, each: Callable[[Any], None]) -> None:
        """A union: the branch index byte, then ``each(branch)`` under its test. Each branch
        starts with ``pass``, since skipping a null writes no statement."""
        u = self._var()
        self._emit(ind, f"{u} = buf[pos]; pos += 1")
        for i, branch in enumerate(branches):
            self._emit(ind, f"{'if' if i == 0 else 'elif'} {u} == {2 * i}:")
            self._emit(ind + 1, "pass")
            each(branch)
        self._emit(ind, f"else: raise ValueError('union index byte %d out of range' % {u})")

    def _read(self, schema: Any, ind: int, target: str, ns: str) -> None:
        schema = self._resolve(schema, ns)
        if isinstance(schema, list):
            self._union(schema, ind, lambda branch: self._read(branch, ind + 1, target, ns))
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
            self._union(schema, ind, lambda branch: self._skip(branch, ind + 1, ns))
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
