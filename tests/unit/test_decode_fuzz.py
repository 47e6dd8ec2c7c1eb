"""Random and mutated bytes never raise out of the decoder; failures are dead letters.

Bounded and deterministic: hypothesis runs derandomized, with no example database.
"""

from __future__ import annotations

import functools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.datapaths import shared_data
from transforms.decode import DeadLetter, KafkaRecord, decode_record
from transforms.decode_errors import DecodeStage
from transforms.schemas import LsstSchemas

SCHEMAS = LsstSchemas()
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@functools.cache
def _packets() -> tuple[bytes, ...]:
    data = shared_data()
    return (
        sorted((data / "lsst" / "alerts" / "wire_format").glob("*704*.bin"))[0].read_bytes(),
        sorted((data / "lsst" / "alerts" / "wire_format").glob("*701*.bin"))[0].read_bytes(),
        sorted((data / "ztf" / "alerts" / "v4.0x_2023-2025").glob("*.avro"))[0].read_bytes(),
        sorted((data / "ztf" / "alerts" / "night_20210720_v3.5_no_cutouts").glob("*.avro"))[
            0
        ].read_bytes(),
    )


def _decode(value: bytes) -> tuple | DeadLetter:
    result = decode_record(KafkaRecord("fuzz", 0, 1, None, value), SCHEMAS)
    if isinstance(result, DeadLetter):
        assert result.stage in set(DecodeStage)
        assert result.reason.strip()
        assert result.original == value
    return result


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_dead_letters(value: bytes) -> None:
    assert isinstance(_decode(value), DeadLetter)


@FUZZ
@given(st.sampled_from([*sorted(SCHEMAS.known_ids()), 0, 9999]), st.binary(max_size=4096))
def test_random_bodies_under_every_schema_id_are_dead_letters(schema_id: int, body: bytes) -> None:
    assert isinstance(_decode(b"\x00" + schema_id.to_bytes(4, "big") + body), DeadLetter)


@FUZZ
@given(
    st.sampled_from([b"Obj\x01", b"Obj\x01\x04\x14avro.codec\x08null"]), st.binary(max_size=4096)
)
def test_random_containers_are_dead_letters(prefix: bytes, rest: bytes) -> None:
    assert isinstance(_decode(prefix + rest), DeadLetter)


@FUZZ
@given(
    st.integers(0, 3),
    st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8
    ),
)
def test_mutated_real_packets_never_raise(which: int, mutations: list[tuple[float, int]]) -> None:
    packet = bytearray(_packets()[which])
    # Mutations land anywhere; they are concentrated in the first 4 kB where the framing,
    # schema and detection fields live (the rest is mostly cutout bytes).
    for where, byte in mutations:
        span = len(packet) if where > 0.5 else min(len(packet), 4096)
        packet[int(where * span) % len(packet)] = byte
    result = _decode(bytes(packet))
    assert isinstance(result, (tuple, DeadLetter))


@FUZZ
@given(st.integers(0, 3), st.floats(0, 1, exclude_max=True))
def test_truncated_real_packets_are_dead_letters(which: int, keep: float) -> None:
    packet = _packets()[which]
    assert isinstance(_decode(packet[: int(keep * len(packet))]), DeadLetter)


@FUZZ
@given(st.integers(0, 3), st.binary(min_size=1, max_size=64))
def test_real_packets_with_trailing_garbage_are_dead_letters(which: int, tail: bytes) -> None:
    assert isinstance(_decode(_packets()[which] + tail), DeadLetter)
