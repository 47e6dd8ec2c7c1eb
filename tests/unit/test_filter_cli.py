"""``alertflow filters check|test -f`` (offline) through a local argparse parser, on the real
alert files; the argument rules of ``filters test``."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from control_service.commands import filters as filters_command
from tests.datapaths import shared_data
from transforms.decode import decode_message
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "filters"


def run_cli(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="alertflow")
    filters_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_check_examples_ok() -> None:
    paths = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    code, out, err = run_cli("filters", "check", *paths)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"{paths[0]}: ok (1 filter: bright-young-transients)"
    assert len(out.splitlines()) == len(paths)


def test_check_reports_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: alertflow/v1\nkind: Filter\nmetadata: {name: bad, owner: me}\n"
        "spec:\n  where: |\n    mag < 18 and\n    reliabilty > 0.5\n"
    )
    code, out, err = run_cli("filters", "check", str(bad))
    assert code == 1 and out == ""
    assert (
        err == f"{bad}:7:5: spec.where: unknown field 'reliabilty'; did you mean 'reliability'?\n"
    )


def test_check_missing_file(tmp_path: Path) -> None:
    code, _, err = run_cli("filters", "check", str(tmp_path / "nope.yaml"))
    assert (
        code == 1 and err == f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory\n"
    )


def test_test_prints_matches_and_summary() -> None:
    data = shared_data()
    files = sorted((data / "lsst" / "alerts").glob("*.avro")) + sorted(
        (data / "ztf" / "alerts" / "lightcurve_ZTF21abiuvdk_v3.3").glob("*.avro")
    )
    schemas = LsstSchemas(DEFAULT_LSST_SCHEMA_DIR)
    alerts = [a for path in files for a in decode_message(path.read_bytes(), schemas)]
    code, out, err = run_cli(
        "filters",
        "test",
        "-f",
        str(EXAMPLES / "target-list-cones.yaml"),
        "--alerts",
        *map(str, files),
    )
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert {r["filter"] for r in records} == {"target-list-cones"}
    assert records and all(r["fields"]["ra"] is not None for r in records)
    matched = len(records)
    summary = err.splitlines()
    assert summary[0].startswith(
        f"{len(alerts)} alerts from {len(files)} file(s), 1 filter(s); per-alert cost p50 "
    )
    assert summary[1] == (
        f"target-list-cones: evaluated {len(alerts)}, matched {matched}, "
        f"fraction {matched / len(alerts):.2%}, errors 0"
    )
    # The cones are around objects of this sample, so the filter passes far more than 5%.
    assert summary[2].startswith("warning: target-list-cones passes ")


def test_test_runs_the_annotators_a_filter_needs(tmp_path: Path) -> None:
    """A filter on an annotation field, against astropy's galactic latitude of each alert."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    doc = tmp_path / "high-b.yaml"
    doc.write_text(
        "apiVersion: alertflow/v1\nkind: Filter\nmetadata: {name: high-b, owner: t}\n"
        "spec:\n  annotations: [sky]\n  where: sky.gal_b > 30\n  output: {topic: t}\n"
    )
    files = sorted((shared_data() / "ztf" / "alerts").glob("*/*.avro"))
    code, out, err = run_cli("filters", "test", "-f", str(doc), "--alerts", *map(str, files))
    assert code == 0, err
    got = {json.loads(line)["alert_id"] for line in out.splitlines()}
    alerts = [a for f in files for a in decode_message(f.read_bytes(), LsstSchemas())]
    b = SkyCoord([a.ra for a in alerts] * u.deg, [a.dec for a in alerts] * u.deg).galactic.b.deg
    expected = {a.alert_id for a, lat in zip(alerts, b, strict=True) if lat > 30}
    assert got == expected and 0 < len(expected) < len(alerts)


def test_test_bad_alert_file_is_reported(tmp_path: Path) -> None:
    junk = tmp_path / "junk.avro"
    junk.write_bytes(b"not an alert")
    code, out, err = run_cli(
        "filters", "test", "-f", str(EXAMPLES / "solar-system-objects.yaml"), "--alerts", str(junk)
    )
    assert code == 1 and out == ""
    assert err.splitlines()[0].startswith(f"{junk}: ")


def test_test_takes_a_name_or_a_file_never_both(tmp_path: Path) -> None:
    alerts = str(tmp_path / "a.avro")
    flt = str(EXAMPLES / "solar-system-objects.yaml")
    for argv, message in (
        (("filters", "test"), "give NAME (on the service) or -f FILE"),
        (("filters", "test", "x", "-f", flt, "--alerts", alerts), "not both"),
        (("filters", "test", "-f", flt), "-f FILE needs --alerts"),
        (("filters", "test", "x", "--alerts", alerts), "--alerts goes with -f FILE"),
    ):
        code, out, err = run_cli(*argv)
        assert (code, out) == (2, "") and message in err, argv
