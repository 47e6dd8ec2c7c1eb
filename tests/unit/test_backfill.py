"""Backfill over every real alert file on Beam's local runner equals the local reference, and
a file that does not decode becomes a dead letter."""

from __future__ import annotations

import json
from pathlib import Path

from control_service.cli import main
from flink_deploy.settings import REPO_ROOT
from tests.datapaths import shared_data
from transforms.decode import decode_message
from transforms.filters.document import load_filter_file
from transforms.filters.model import FilterSet
from transforms.local import match_locally
from transforms.schemas import LsstSchemas


def test_backfill_equals_the_local_reference(tmp_path: Path) -> None:
    data = shared_data()
    files = [
        *sorted((data / "ztf" / "alerts").glob("*/*.avro")),
        *sorted((data / "lsst" / "alerts").glob("*.avro")),
    ]
    junk = tmp_path / "junk.avro"
    junk.write_bytes(b"not an alert")
    examples = REPO_ROOT / "examples" / "filters"
    out = tmp_path / "out"
    assert (
        main(
            [
                "backfill",
                "--filters",
                str(examples),
                "--alerts",
                *map(str, files),
                str(junk),
                "--out",
                str(out),
            ]
        )
        == 0
    )

    got = {
        (json.loads(line)["filter"], json.loads(line)["alert_id"])
        for path in out.glob("*.jsonl")
        if path.stem != "deadletters"
        for line in path.read_text().splitlines()
    }
    filter_set = FilterSet(
        0, tuple(f for p in sorted(examples.glob("*.yaml")) for f in load_filter_file(str(p)))
    )
    alerts = [a for f in files for a in decode_message(f.read_bytes(), LsstSchemas())]
    expected = {(m.filter_name, m.alert.alert_id) for m in match_locally(filter_set, alerts)[0]}
    assert got == expected and expected
    dead = [json.loads(line) for line in (out / "deadletters.jsonl").read_text().splitlines()]
    assert [d["topic"] for d in dead] == [str(junk)] and dead[0]["reason"]
