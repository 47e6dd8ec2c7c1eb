"""Avro's zig-zag varint, against fastavro's own encoder, at the edges of a 64-bit long."""

from __future__ import annotations

import io

import pytest
from fastavro import schemaless_writer

from transforms.avro_binary import encode_long, read_long

EDGES = [
    0,
    1,
    -1,
    63,
    -64,
    64,
    2**31 - 1,
    -(2**31),
    2**62 - 1,
    2**62,
    -(2**62) - 1,
    2**63 - 1,
    -(2**63),
]


def fastavro_long(value: int) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, "long", value)
    return out.getvalue()


@pytest.mark.parametrize("value", EDGES)
def test_round_trip_matches_fastavro(value: int) -> None:
    encoded = fastavro_long(value)
    assert encode_long(value) == encoded
    # 10 bytes for the longs beyond +-2**62: read too, not taken for an overlong varint
    assert read_long(b"\x07" + encoded + b"\x07", 1) == (value, 1 + len(encoded))


def test_truncated_and_overlong() -> None:
    with pytest.raises(IndexError):
        read_long(b"\x80\x80", 0)
    with pytest.raises(ValueError, match="longer than 64 bits"):
        read_long(b"\xff" * 10 + b"\x01", 0)
