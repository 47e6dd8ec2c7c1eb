"""What replay sends: alert files to Kafka messages in each survey's own wire form, and fresh
ids for the copies when the files are cycled.

ZTF alerts are sent as one-alert Avro containers (the packet as ZTF sends it), LSST alerts in
Confluent wire format (0x00, 4-byte schema id, Avro body). When more alerts are needed than the
files hold, they are cycled and every alert after the first pass gets fresh ids (ZTF candid,
LSST alertId/diaSourceId), spliced into the original bytes. How they are sent (the schedule,
the sending loop) is control_service/replay_engine.py. All of this is tested without Kafka.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transforms.alert_model import Survey
from transforms.avro_binary import encode_long
from transforms.avro_container import OCF_MAGIC, parse_container_header, read_long
from transforms.decode import ALERT_FILE_SUFFIXES, alert_files, decode_message
from transforms.decode_errors import DecodeError
from transforms.schemas import LsstSchemas, container_schema

# Fresh ids for cycled alerts: original id + cycle * stride. The stride is far above the
# spread of ids within one night's files and keeps ids inside a signed 64-bit long for
# millions of cycles.
ID_STRIDE = 1 << 40


class ReplayError(Exception):
    """A file or option that replay cannot use; the message says which and why."""


@dataclass(frozen=True, slots=True)
class ReplayMessage:
    """One alert ready to send: its survey, its id and its bytes in the survey's wire form."""

    survey: Survey
    alert_id: int
    value: bytes


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileProblem:
    """A file (or directory) given to replay that has nothing to send, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True, slots=True)
class LoadedFiles:
    """What :func:`load_files` found: the messages of the good files, in order, and a problem
    for each file that has none to give. ``files`` are the good files."""

    messages: tuple[ReplayMessage, ...]
    files: tuple[Path, ...]
    problems: tuple[FileProblem, ...]

    @property
    def total_files(self) -> int:
        """Files tried: the good ones and the bad ones (an empty directory counts as one)."""
        return len(self.files) + len(self.problems)


def _file_messages(path: Path, schemas: LsstSchemas) -> list[ReplayMessage]:
    """The wire-form messages of one file; ReplayError (without the path) saying why none."""
    try:
        alerts = decode_message(path.read_bytes(), schemas)
    except DecodeError as err:
        raise ReplayError(f"{err.stage}: {err.reason}") from err
    except FileNotFoundError as err:
        raise ReplayError("no such file") from err
    except OSError as err:
        raise ReplayError(f"cannot read: {err.strerror or err}") from err
    if not alerts:
        raise ReplayError("holds no alerts")
    for alert in alerts:
        if alert.survey is Survey.LSST and alert.original[:4] == OCF_MAGIC:
            raise ReplayError(
                "LSST alerts written with a non-official schema cannot be framed in Confluent "
                "wire format"
            )
    return [ReplayMessage(a.survey, a.alert_id, a.original) for a in alerts]


def load_files(paths: Sequence[Path], schemas: LsstSchemas) -> LoadedFiles:
    """Decode every alert of ``paths`` (validating them); never raises for a bad file.

    A directory stands for the alert files under it (:func:`alert_files`). A file that cannot
    be read, does not decode, holds no alerts, or holds LSST alerts of a non-official schema
    (no Confluent framing exists for them) gives a :class:`FileProblem` and no messages: a
    file is sent whole or not at all. So does a directory without alert files.
    """
    messages: list[ReplayMessage] = []
    files: list[Path] = []
    problems: list[FileProblem] = []
    for given in paths:
        expanded = alert_files(given)
        if not expanded:
            problems.append(
                FileProblem(given, f"directory holds no {' or '.join(ALERT_FILE_SUFFIXES)} files")
            )
        for path in expanded:
            try:
                messages += _file_messages(path, schemas)
            except ReplayError as err:
                problems.append(FileProblem(path, str(err)))
            else:
                files.append(path)
    return LoadedFiles(tuple(messages), tuple(files), tuple(problems))


def load_messages(paths: Sequence[Path], schemas: LsstSchemas) -> list[ReplayMessage]:
    """Every message of ``paths`` (as :func:`load_files`), for callers that need all of them.

    Raises ReplayError naming the first bad file (and how many others there are), or if there
    are no alerts at all.
    """
    loaded = load_files(paths, schemas)
    if loaded.problems:
        first, *others = loaded.problems
        more = f" (and {len(others)} more bad file{'s' * (len(others) > 1)})" if others else ""
        raise ReplayError(f"{first}{more}")
    if not loaded.messages:
        raise ReplayError("no alerts in the given files")
    return list(loaded.messages)


# --------------------------------------------------------------------------------------------
# Fresh ids: splice new id varints into the original bytes (no full re-encode)
# --------------------------------------------------------------------------------------------

# Which long fields carry the alert's identity, by record path from the top-level record.
_ID_FIELDS = {
    (): frozenset({"candid", "alertId", "diaSourceId"}),
    ("candidate",): frozenset({"candid"}),
    ("diaSource",): frozenset({"diaSourceId"}),
}
_SKIPPABLE = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})


def _skip_primitive(buf: bytes, pos: int, kind: str) -> int:
    if kind == "null":
        return pos
    if kind == "boolean":
        return pos + 1
    if kind in ("int", "long"):
        return read_long(buf, pos, "a long")[1]
    if kind == "float":
        return pos + 4
    if kind == "double":
        return pos + 8
    length, pos = read_long(buf, pos, "a length")
    return pos + length


def _skip_simple(buf: bytes, pos: int, schema: Any) -> int:
    """Skip a primitive or a union of primitives; ReplayError for anything else."""
    if isinstance(schema, dict) and schema.get("type") in _SKIPPABLE:
        schema = schema["type"]
    if isinstance(schema, str) and schema in _SKIPPABLE:
        return _skip_primitive(buf, pos, schema)
    if isinstance(schema, list) and all(isinstance(b, str) and b in _SKIPPABLE for b in schema):
        index, pos = read_long(buf, pos, "a union index")
        return _skip_primitive(buf, pos, schema[index])
    raise ReplayError(f"cannot locate the alert id past a field of type {schema!r}")


def id_pieces(body: bytes, schema: dict[str, Any]) -> tuple[tuple[bytes, ...], tuple[int, ...]]:
    """Split an Avro record body around its id varints: ``pieces[0] id0 pieces[1] id1 ...``.

    Returns the pieces and the original ids. Walks the top-level fields up to and into
    ``candidate`` (ZTF) or ``diaSource`` (LSST), the only record holding an id; every field
    before the ids must be a primitive or a union of primitives. Raises ReplayError if the
    layout is not recognised.
    """
    cuts: list[tuple[int, int]] = []
    ids: list[int] = []
    pos = 0

    def walk(record: dict[str, Any], path: tuple[str, ...]) -> None:
        nonlocal pos
        for fld in record["fields"]:
            name, kind = fld["name"], fld["type"]
            if name in _ID_FIELDS.get(path, ()) and kind == "long":
                start = pos
                value, pos = read_long(body, pos, name)
                cuts.append((start, pos))
                ids.append(value)
            elif (
                isinstance(kind, dict)
                and kind.get("type") == "record"
                and (*path, name) in _ID_FIELDS
            ):
                walk(kind, (*path, name))
                return
            else:
                pos = _skip_simple(body, pos, kind)

    try:
        walk(schema, ())
    except (DecodeError, IndexError) as err:
        raise ReplayError(f"cannot locate the alert id in the record: {err}") from err
    if len(cuts) < 2:
        raise ReplayError("the record does not have both a top-level and a detection id")
    pieces = []
    last = 0
    for start, stop in cuts:
        pieces.append(body[last:start])
        last = stop
    pieces.append(body[last:])
    return tuple(pieces), tuple(ids)


@dataclass(frozen=True, slots=True)
class IdTemplate:
    """A message with its ids cut out, ready to be rendered for another pass of the cycle.

    ``prefix``/``suffix`` frame the Avro body (wire header, or container header and sync);
    ``container`` says whether the body sits in a one-record container block, whose size
    must then be re-encoded. ``ids`` are the original values of the cut-out ids.
    """

    prefix: bytes
    pieces: tuple[bytes, ...]
    ids: tuple[int, ...]
    suffix: bytes
    container: bool

    def render(self, cycle: int) -> bytes:
        """The message with every id replaced by ``fresh_id(id, cycle)`` (cycle 0: original)."""
        parts = [self.pieces[0]]
        for original, piece in zip(self.ids, self.pieces[1:], strict=True):
            parts.append(encode_long(fresh_id(original, cycle)))
            parts.append(piece)
        body = b"".join(parts)
        if self.container:
            return b"".join(
                (self.prefix, encode_long(1), encode_long(len(body)), body, self.suffix)
            )
        return self.prefix + body


def id_template(message: ReplayMessage, schemas: LsstSchemas) -> IdTemplate:
    """Build the template of a message (one-record null-codec container, or wire format)."""
    value = message.value
    if value[:4] == OCF_MAGIC:
        header = parse_container_header(value)
        if header.metadata.get("avro.codec", b"null") != b"null":
            raise ReplayError("fresh ids need an uncompressed (null codec) container")
        schema = dict(container_schema(header.metadata["avro.schema"]).writer)
        pos = header.end
        count, pos = read_long(value, pos, "a block count")
        size, pos = read_long(value, pos, "a block size")
        if count != 1 or pos + size + 16 != len(value):
            raise ReplayError("fresh ids need a container holding exactly one alert")
        pieces, ids = id_pieces(value[pos : pos + size], schema)
        return IdTemplate(value[: header.end], pieces, ids, header.sync, container=True)
    schema = dict(schemas.get(int.from_bytes(value[1:5], "big")).writer)
    pieces, ids = id_pieces(value[5:], schema)
    return IdTemplate(value[:5], pieces, ids, b"", container=False)


def fresh_id(original: int, cycle: int) -> int:
    """The id of an alert's copy in pass ``cycle`` (0 = the original id)."""
    return original + cycle * ID_STRIDE


def cycled_messages(
    messages: Sequence[ReplayMessage], count: int, schemas: LsstSchemas
) -> Iterator[bytes]:
    """``count`` message values: the files in order, cycled with fresh ids after pass 0."""
    templates: dict[int, IdTemplate] = {}
    for i in range(count):
        cycle, index = divmod(i, len(messages))
        message = messages[index]
        if cycle == 0:
            yield message.value
            continue
        template = templates.get(index)
        if template is None:
            template = templates[index] = id_template(message, schemas)
        yield template.render(cycle)


def check_fresh_ids(messages: Sequence[ReplayMessage], count: int, schemas: LsstSchemas) -> None:
    """Raise ReplayError before anything is sent if cycling is needed and some alert cannot get
    fresh ids."""
    if count > len(messages):
        for message in messages:
            id_template(message, schemas)
