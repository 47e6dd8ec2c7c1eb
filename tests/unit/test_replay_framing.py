"""replay without Kafka: wire framing, fresh ids for cycled alerts, the send schedule, reports."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import fastavro
import pytest

from control_service import replay_engine, replay_messages
from control_service.commands import replay
from control_service.replay_engine import Schedule, plan_count
from control_service.replay_messages import (
    ID_STRIDE,
    ReplayError,
    cycled_messages,
    fresh_id,
    id_template,
    load_messages,
)
from tests.datapaths import shared_data
from transforms.alert_model import Survey
from transforms.decode import alert_files, decode_lsst_wire, decode_message, decode_ztf
from transforms.schemas import LsstSchemas

DATA = shared_data()
SCHEMAS = LsstSchemas()
ZTF_FILES = sorted((DATA / "ztf" / "alerts" / "v4.0x_2023-2025").glob("*.avro"))[:3]
ZTF_OLD = sorted((DATA / "ztf" / "alerts" / "official_samples_multiversion").glob("*_v2.0.avro"))[
    :1
]
LSST_BATCH = DATA / "lsst" / "alerts" / "lsstcam_20251231_v10_0.avro"
LSST_WIRE = sorted((DATA / "lsst" / "alerts" / "wire_format").glob("*.bin"))
LSST_V3 = DATA / "lsst" / "simulated" / "alert_packet_fakeAlerts" / "fakeAlert_lsst.v3_0.avro"


def test_ztf_files_are_sent_byte_for_byte() -> None:
    messages = load_messages(ZTF_FILES, SCHEMAS)
    assert [m.value for m in messages] == [p.read_bytes() for p in ZTF_FILES]
    assert {m.survey for m in messages} == {Survey.ZTF}


def test_lsst_batches_are_sent_as_confluent_wire_messages() -> None:
    messages = load_messages([LSST_BATCH, *LSST_WIRE], SCHEMAS)
    assert len(messages) == 27 + len(LSST_WIRE)
    for message in messages[:27]:
        assert message.value[:5] == b"\x00" + (1000).to_bytes(4, "big")
        assert decode_lsst_wire(message.value, SCHEMAS).alert_id == message.alert_id
    # Wire-format files go out unchanged.
    assert [m.value for m in messages[27:]] == [p.read_bytes() for p in LSST_WIRE]


def test_load_messages_refuses_any_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.avro"
    bad.write_bytes(b"Obj\x01garbage")
    with pytest.raises(ReplayError, match=r"bad\.avro: framing"):
        load_messages([bad], SCHEMAS)
    with pytest.raises(ReplayError, match=r"bad.avro: framing: .* \(and 1 more bad file\)$"):
        load_messages([ZTF_FILES[0], bad, tmp_path / "missing.avro"], SCHEMAS)


# ---------------------------------------------------------------------------------------------
# Loading a folder: good files are kept, bad ones reported; directories expand
# ---------------------------------------------------------------------------------------------


def _folder(tmp_path: Path) -> Path:
    """A folder as someone might point replay at: alerts at two depths, a wire message, a file
    that does not decode, an empty container and a file that is not an alert file."""
    folder = tmp_path / "alerts"
    (folder / "night2").mkdir(parents=True)
    (folder / "b.avro").write_bytes(ZTF_FILES[0].read_bytes())
    (folder / "night2" / "a.avro").write_bytes(ZTF_FILES[1].read_bytes())
    (folder / "c_bad.avro").write_bytes(b"Obj\x01garbage")
    (folder / "a.bin").write_bytes(LSST_WIRE[0].read_bytes())
    empty = io.BytesIO()
    fastavro.writer(empty, fastavro.reader(io.BytesIO(ZTF_FILES[2].read_bytes())).writer_schema, [])
    (folder / "d_empty.avro").write_bytes(empty.getvalue())
    (folder / "README.md").write_text("not an alert file")
    return folder


def test_a_directory_stands_for_the_alert_files_under_it_sorted(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    assert alert_files(folder) == [
        folder / "a.bin",
        folder / "b.avro",
        folder / "c_bad.avro",
        folder / "d_empty.avro",
        folder / "night2" / "a.avro",
    ]
    assert alert_files(ZTF_FILES[0]) == [ZTF_FILES[0]]
    shared = DATA / "ztf" / "alerts" / "official_samples_multiversion"
    assert alert_files(shared) == sorted(shared.glob("*.avro"))


def test_load_files_keeps_the_good_files_and_names_each_bad_one(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (tmp_path / "empty").mkdir()
    loaded = replay_messages.load_files(
        [folder, tmp_path / "missing.avro", tmp_path / "empty", ZTF_FILES[2]], SCHEMAS
    )
    good = [folder / "a.bin", folder / "b.avro", folder / "night2" / "a.avro", ZTF_FILES[2]]
    assert loaded.files == tuple(good)
    assert [m.value for m in loaded.messages] == [p.read_bytes() for p in good]
    assert [(p.path, p.reason.split(":")[0]) for p in loaded.problems] == [
        (folder / "c_bad.avro", "framing"),
        (folder / "d_empty.avro", "holds no alerts"),
        (tmp_path / "missing.avro", "no such file"),
        (tmp_path / "empty", "directory holds no .avro or .bin files"),
    ]
    assert str(loaded.problems[0]) == (
        f"{folder / 'c_bad.avro'}: framing: container header truncated or corrupt"
    )
    assert loaded.total_files == 8


@pytest.mark.parametrize(
    "path", [*ZTF_FILES, *ZTF_OLD, LSST_WIRE[0], LSST_WIRE[-1], LSST_V3], ids=lambda p: p.name
)
def test_fresh_ids_change_only_the_ids(path: Path) -> None:
    (message,) = load_messages([path], SCHEMAS)[:1]
    template = id_template(message, SCHEMAS)
    fresh = template.render(3)
    (original,) = decode_message(message.value, SCHEMAS)
    (copy,) = decode_message(fresh, SCHEMAS)
    assert copy.alert_id == fresh_id(original.alert_id, 3) == original.alert_id + 3 * ID_STRIDE
    assert copy.source_id == fresh_id(original.source_id, 3)
    assert copy.object_id == original.object_id
    assert (copy.ra, copy.dec, copy.mag, copy.flux, copy.history) == (
        original.ra,
        original.dec,
        original.mag,
        original.flux,
        original.history,
    )
    assert template.render(0) == message.value


def test_fresh_ids_give_records_fastavro_reads_with_only_ids_changed() -> None:
    (message,) = load_messages(ZTF_FILES[:1], SCHEMAS)
    fresh = id_template(message, SCHEMAS).render(1)
    (before,) = fastavro.reader(io.BytesIO(message.value))
    (after,) = fastavro.reader(io.BytesIO(fresh))
    assert after["candid"] == after["candidate"]["candid"] == before["candid"] + ID_STRIDE
    after["candid"] = after["candidate"]["candid"] = before["candid"]
    assert after == before


def test_cycling_sends_originals_first_then_fresh_ids() -> None:
    messages = load_messages(ZTF_FILES, SCHEMAS)
    values = list(cycled_messages(messages, 7, SCHEMAS))
    assert values[:3] == [m.value for m in messages]
    ids = [decode_ztf(v).alert_id for v in values]
    assert ids[3:6] == [m.alert_id + ID_STRIDE for m in messages]
    assert ids[6] == messages[0].alert_id + 2 * ID_STRIDE
    assert len(set(ids)) == 7


@pytest.mark.parametrize(
    ("schedule", "due"),
    [
        (Schedule(), [0.0, 0.0, 0.0, 0.0, 0.0]),
        (Schedule(rate=2.0), [0.0, 0.5, 1.0, 1.5, 2.0]),
        (Schedule(visit_size=2, visit_interval=39.0), [0.0, 0.0, 39.0, 39.0, 78.0]),
        (Schedule(rate=4.0, visit_size=2, visit_interval=10.0), [0.0, 0.25, 10.0, 10.25, 20.0]),
    ],
)
def test_schedule(schedule: Schedule, due: list[float]) -> None:
    assert [schedule.due(i) for i in range(5)] == due


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0.0},
        {"rate": -1.0},
        {"visit_size": 10},
        {"visit_interval": 39.0},
        {"visit_size": 0, "visit_interval": 1.0},
        {"visit_size": 5, "visit_interval": -1.0},
    ],
)
def test_schedule_rejects_bad_options(kwargs: dict[str, float]) -> None:
    with pytest.raises(ReplayError):
        Schedule(**kwargs)  # type: ignore[arg-type]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    replay.register(parser.add_subparsers())
    return parser.parse_args(["replay", *argv])


def test_cli_options_and_defaults() -> None:
    args = _args("a.avro", "b.bin")
    assert args.func is replay.run
    assert (args.bootstrap, args.topic, args.rate, args.visit_size, args.visit_interval) == (
        "127.0.0.1:9092",
        None,
        None,
        None,
        None,
    )
    args = _args(
        "a.avro",
        "--rate",
        "1100",
        "--visit-size",
        "10000",
        "--visit-interval",
        "39",
        "--visits",
        "3",
        "--topic",
        "t",
    )
    assert (args.rate, args.visit_size, args.visit_interval, args.topic) == (
        1100.0,
        10000,
        39.0,
        "t",
    )
    assert plan_count(args, available=144) == 30000
    assert plan_count(_args("a.avro"), available=144) == 144
    assert plan_count(_args("a.avro", "--count", "5000"), available=144) == 5000


def test_mixed_surveys_need_a_topic_and_nothing_is_sent() -> None:
    err = io.StringIO()
    code = replay.run(
        _args(str(ZTF_FILES[0]), str(LSST_WIRE[0]), "--bootstrap", "127.0.0.1:1"), err=err
    )
    assert code == 2
    assert "give --topic" in err.getvalue()


class _RecordingProducer:
    """What the CLI's sending loop needs of confluent-kafka's Producer: it records each message
    and reports it delivered. No Kafka: these tests are about which files are sent and reported."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes]] = []
        self._pending: list[Any] = []

    def produce(self, topic: str, value: bytes, timestamp: int, on_delivery: Any) -> None:
        self.produced.append((topic, value))
        self._pending.append(on_delivery)

    def poll(self, _timeout: float) -> int:
        pending, self._pending = self._pending, []
        for on_delivery in pending:
            on_delivery(None, None)
        return len(pending)

    def flush(self, _timeout: float) -> int:
        self.poll(0)
        return 0


def _run_cli(monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, list[bytes], str, str]:
    """``alertflow replay ARGV`` with a recording producer: exit code, values sent, out, err."""
    producers: list[_RecordingProducer] = []
    monkeypatch.setattr(
        replay, "kafka_producer", lambda _b: producers.append(_RecordingProducer()) or producers[-1]
    )
    out, err = io.StringIO(), io.StringIO()
    code = replay.run(_args(*argv, "--no-progress"), out=out, err=err)
    sent = [value for producer in producers for _topic, value in producer.produced]
    return code, sent, out.getvalue(), err.getvalue()


def test_cli_sends_the_good_files_of_a_folder_and_exits_1_naming_the_bad(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path)
    code, sent, out, err = _run_cli(monkeypatch, str(folder), "--topic", "t")
    good = [folder / "a.bin", folder / "b.avro", folder / "night2" / "a.avro"]
    assert code == 1
    assert sent == [p.read_bytes() for p in good]
    assert out.startswith("replay: sent 3 alerts")
    assert err.splitlines() == [
        f"replay: {folder / 'c_bad.avro'}: framing: container header truncated or corrupt",
        f"replay: {folder / 'd_empty.avro'}: holds no alerts",
        "replay: sent 3 of 5 files; not sent: 2 bad files, each named above",
    ]


def test_cli_sends_a_folder_of_good_files_and_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = DATA / "ztf" / "alerts" / "official_samples_multiversion"
    code, sent, out, err = _run_cli(monkeypatch, str(folder))
    assert (code, err) == (0, "")
    assert sent == [p.read_bytes() for p in sorted(folder.glob("*.avro"))]
    assert len(sent) == 15 and out.startswith("replay: sent 15 alerts")


def test_cli_exits_2_and_sends_nothing_when_no_file_is_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.avro"
    bad.write_bytes(b"Obj\x01garbage")
    code, sent, out, err = _run_cli(monkeypatch, str(bad), str(tmp_path / "missing.bin"))
    assert (code, sent, out) == (2, [], "")
    assert err.splitlines() == [
        f"replay: {bad}: framing: container header truncated or corrupt",
        f"replay: {tmp_path / 'missing.bin'}: no such file",
        "replay: nothing to send: 2 bad files, each named above",
    ]


def test_summary_and_progress_lines() -> None:
    assert replay_engine.format_summary(2200, 242_000_000, 2.0, 0) == (
        "replay: sent 2200 alerts, 242000000 bytes in 2.00 s: 1,100 alerts/s, 121.0 MB/s; "
        "0 delivery failures"
    )
    assert replay.format_progress(5, 10, 1.0, width=10) == "[#####.....] 5/10 alerts, 5 alerts/s"
