"""Avro object container files (OCF): the header, the blocks, and one-record containers.

A ZTF Kafka message is a container holding one alert with its writer schema in the header; a
backfill file is a container of many. This module reads the framing only (the records inside
the blocks are read by ``transforms.schemas``' projecting readers) and raises
:class:`~transforms.decode_errors.DecodeError` (stage FRAMING) on anything malformed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from transforms import avro_binary
from transforms.decode_errors import DecodeError, DecodeStage

OCF_MAGIC = b"Obj\x01"
SYNC_SIZE = 16
#: The block codecs read here.
CODECS = (b"null", b"deflate")


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
    if pos + SYNC_SIZE > len(buf):
        raise DecodeError(DecodeStage.FRAMING, "container truncated before the sync marker")
    return ContainerHeader(metadata=metadata, sync=buf[pos : pos + SYNC_SIZE], end=pos + SYNC_SIZE)


def container_codec(header: ContainerHeader) -> bytes:
    """The container's codec; DecodeError(FRAMING) if it is not one of :data:`CODECS`."""
    codec = header.metadata.get("avro.codec", b"null")
    if codec not in CODECS:
        raise DecodeError(
            DecodeStage.FRAMING,
            f"container codec {codec!r} is not supported (null, deflate); rewrite the file",
        )
    return codec


def container_blocks(
    buf: bytes, header: ContainerHeader, codec: bytes
) -> Iterator[tuple[int, bytes]]:
    """(record count, record bytes) of each block after ``header``, decompressed with ``codec``
    (from :func:`container_codec`).

    Raises DecodeError(FRAMING) at a truncated or corrupt block, naming how many records the
    blocks before it held (the alerts decoded before the failure, when the caller reads every
    record of each block before asking for the next).
    """
    pos = header.end
    records = 0
    while pos < len(buf):
        count, pos = read_long(buf, pos, "a block count")
        size, pos = read_long(buf, pos, "a block size")
        if count < 0 or size < 0 or pos + size + SYNC_SIZE > len(buf):
            raise DecodeError(
                DecodeStage.FRAMING,
                f"container block after {records} alerts is truncated or corrupt",
            )
        data = buf[pos : pos + size]
        pos += size
        if buf[pos : pos + SYNC_SIZE] != header.sync:
            raise DecodeError(
                DecodeStage.FRAMING,
                f"sync marker mismatch after {records} alerts: the container is corrupt",
            )
        pos += SYNC_SIZE
        if codec == b"deflate":
            try:
                data = zlib.decompress(data, -15)
            except zlib.error as err:
                raise DecodeError(
                    DecodeStage.FRAMING, f"deflate block after {records} alerts: {err}"
                ) from err
        yield count, data
        records += count


def one_record_container(header: bytes, codec: bytes, body: bytes, sync: bytes) -> bytes:
    """A container of the one record ``body`` under the header bytes ``header``."""
    payload = body
    if codec == b"deflate":
        compressor = zlib.compressobj(wbits=-15)
        payload = compressor.compress(body) + compressor.flush()
    return b"".join(
        (header, avro_binary.encode_long(1), avro_binary.encode_long(len(payload)), payload, sync)
    )
