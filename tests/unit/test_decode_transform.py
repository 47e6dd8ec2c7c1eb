"""DecodeAlerts in a pipeline: complete expected outputs on both tags, and its counters."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.datapaths import shared_data
from transforms.decode import (
    DeadLetter,
    KafkaRecord,
    decode_container,
    decode_lsst_wire,
    decode_ztf,
)
from transforms.decode_alerts import DecodeAlerts
from transforms.schemas import LsstSchemas

DATA = shared_data()


def test_decode_alerts_routes_every_record() -> None:
    schemas = LsstSchemas()
    ztf = sorted((DATA / "ztf" / "alerts" / "lightcurve_ZTF21abiuvdk_v3.3").glob("*.avro"))[:2]
    ztf_bytes = [p.read_bytes() for p in ztf]
    wire = sorted((DATA / "lsst" / "alerts" / "wire_format").glob("*.bin"))[0].read_bytes()
    batch = (
        DATA / "lsst" / "simulated" / "alert_packet_fakeAlerts" / "fakeAlert_lsst.v11_1.avro"
    ).read_bytes()
    unknown_id = b"\x00" + (4242).to_bytes(4, "big") + wire[5:]
    records = [
        KafkaRecord("alerts.ztf", 0, 10, None, ztf_bytes[0]),
        KafkaRecord("alerts.ztf", 1, 11, b"k", ztf_bytes[1]),
        KafkaRecord("alerts.lsst", 0, 5, None, wire),
        KafkaRecord("alerts.lsst", 0, 6, None, batch),
        KafkaRecord("alerts.lsst", 2, 7, None, b"\x05not an alert"),
        KafkaRecord("alerts.lsst", 2, 8, None, unknown_id),
        KafkaRecord("alerts.lsst", 2, 9, None, wire[:1000]),
        KafkaRecord("alerts.lsst", 2, 10, None, None),
    ]
    expected_alerts = [
        decode_ztf(ztf_bytes[0]),
        decode_ztf(ztf_bytes[1]),
        decode_lsst_wire(wire, schemas),
        *decode_container(batch, schemas),
    ]
    expected_dead = [
        DeadLetter(
            b"\x05not an alert",
            "framing",
            "first byte 0x05 is neither the Confluent magic 0x00 (LSST) nor the start of an "
            "Avro container 'Obj\\x01' (ZTF); is this topic carrying alerts?",
            "alerts.lsst",
            2,
            7,
        ),
        DeadLetter(
            unknown_id,
            "schema",
            "unknown LSST schema id 4242 (version 42.42): no lsst.v42_42/lsst.v42_42.alert.avsc in "
            f"{schemas.directory} (known ids: {', '.join(map(str, schemas.known_ids()))}) and no "
            "schema registry configured; add the schema folder or set a registry URL",
            "alerts.lsst",
            2,
            8,
        ),
        DeadLetter(
            wire[:1000],
            "avro",
            "bytes do not match writer schema lsst.v7_1.alert (the record runs past the end of the "
            "bytes: truncated?); "
            "the packet is corrupt or labelled with the wrong schema",
            "alerts.lsst",
            2,
            9,
        ),
        DeadLetter(
            b"", "framing", "message has no value (a tombstone); not an alert", "alerts.lsst", 2, 10
        ),
    ]

    pipeline = BeamTestPipeline()
    outputs = pipeline | beam.Create(records) | "DecodeAlerts" >> DecodeAlerts(schemas)
    assert_that(outputs.alerts, equal_to(expected_alerts), label="alerts")
    assert_that(outputs[DecodeAlerts.DEAD_LETTERS], equal_to(expected_dead), label="dead letters")
    result = pipeline.run()
    result.wait_until_finish()

    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("DecodeAlerts"))["counters"]
    }
    assert counters == {
        "messages": len(records),
        "alerts_decoded": 4,
        "dead_letters_framing": 2,
        "dead_letters_schema": 1,
        "dead_letters_avro": 1,
    }
