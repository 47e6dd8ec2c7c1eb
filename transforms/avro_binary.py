"""Avro's binary encoding of ``int`` and ``long``: the zig-zag varint, read and written here only.

:func:`read_long` is what the generated projection readers (transforms.schemas) call for every
int, long, length, count and union index, so it stays a plain function of a few operations;
callers that want their own error (the container framing, the replayer) wrap it.
"""

from __future__ import annotations

#: Bytes of the longest varint of a 64-bit long.
MAX_VARINT_BYTES = 10


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``buf[pos]`` -> (value, next position). IndexError if ``buf``
    ends inside it; ValueError if it is longer than :data:`MAX_VARINT_BYTES`."""
    b = buf[pos]
    pos += 1
    result = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise ValueError("varint longer than 64 bits")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
    return (result >> 1) ^ -(result & 1), pos


def encode_long(value: int) -> bytes:
    """The zig-zag varint of a long (the inverse of :func:`read_long`)."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag & ~0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)
