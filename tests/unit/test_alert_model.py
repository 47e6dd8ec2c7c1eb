"""The alert model: immutable, typed, flux-to-magnitude rules, JSON view for inspect."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle

import pytest

from transforms.alert_model import (
    Alert,
    Cutouts,
    Detection,
    DetectionKind,
    NearestStar,
    SolarSystemObject,
    Survey,
    flux_err_to_mag_err,
    flux_to_mag,
    to_json_dict,
)


def _alert(**changes: object) -> Alert:
    base = Alert(
        survey=Survey.LSST,
        alert_id=7,
        source_id=7,
        object_id="11",
        ra=10.5,
        dec=-20.25,
        mjd=60924.3,
        band="i",
        mag=20.0,
        mag_err=0.1,
        flux=363.078,
        flux_err=33.4,
        reliability=0.9,
        is_positive=True,
        solar_system=SolarSystemObject(ss_object_id=5),
        nearest_star=NearestStar(0.9, 1.5, 15.0),
        history=(Detection(DetectionKind.DETECTION, 60900.0, "i", mag=21.0, mag_err=0.2),),
        forced_photometry=(Detection(DetectionKind.FORCED, 60901.0, "i", flux=-5.0),),
        schema_version="9.0",
        cutouts=Cutouts(b"\x01" * 10, None, b"\x02" * 3),
        original=b"\x00" * 100,
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("flux", "mag"),
    [
        (1.0, 31.4),
        (10.0, 28.9),
        (3631e9, 31.4 - 2.5 * math.log10(3631e9)),  # 3631 Jy is AB mag ~0
        (0.0, None),
        (-60413.03, None),
        (None, None),
        (float("nan"), None),
        (float("inf"), None),
    ],
)
def test_flux_to_mag(flux: float | None, mag: float | None) -> None:
    if mag is None:
        assert flux_to_mag(flux) is None
    else:
        assert flux_to_mag(flux) == pytest.approx(mag, abs=1e-12)


@pytest.mark.parametrize(
    ("flux", "err", "expected"),
    [
        (100.0, 10.0, 2.5 / math.log(10) * 0.1),
        (-1.0, 1.0, None),
        (100.0, None, None),
        (None, 1.0, None),
    ],
)
def test_flux_err_to_mag_err(flux: float | None, err: float | None, expected: float | None) -> None:
    got = flux_err_to_mag_err(flux, err)
    assert got == (None if expected is None else pytest.approx(expected))


def test_alert_is_frozen_and_slotted() -> None:
    alert = _alert()
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.ra = 1.0  # type: ignore[misc]
    assert not hasattr(alert, "__dict__")
    assert not hasattr(alert.history[0], "__dict__")


def test_alert_pickles_round_trip() -> None:
    # Beam moves alerts between workers with pickle-based coders.
    alert = _alert()
    assert pickle.loads(pickle.dumps(alert)) == alert


def test_repr_leaves_out_bytes() -> None:
    text = repr(_alert())
    assert "original" not in text and "cutouts" not in text


def test_json_view_has_no_bytes_and_is_strict_json() -> None:
    data = to_json_dict(_alert(mag_err=float("nan")))
    text = json.dumps(data, allow_nan=False)
    assert "\\u0000" not in text and 'original"' not in text
    assert data["original_bytes"] == 100
    assert data["cutout_bytes"] == {"science": 10, "template": None, "difference": 3}
    assert data["mag_err"] is None
    assert data["survey"] == "lsst"
    assert data["history"][0]["kind"] == "detection"
    assert data["forced_photometry"][0]["flux"] == -5.0
    assert data["solar_system"]["ss_object_id"] == 5
    assert data["nearest_star"] == {"star_galaxy_score": 0.9, "distance_arcsec": 1.5, "r_mag": 15.0}


def test_json_view_without_optional_parts() -> None:
    data = to_json_dict(_alert(cutouts=None, solar_system=None, nearest_star=None, original=b""))
    assert data["cutout_bytes"] is None and data["solar_system"] is None
    assert data["nearest_star"] is None and data["original_bytes"] == 0


# ---------------------------------------------------------------------------------------------
# alertflow inspect: one JSON line per alert, errors on stderr
# ---------------------------------------------------------------------------------------------


def _inspect(*argv: str) -> tuple[int, str, str]:
    import argparse
    import io

    from control_service.commands import inspect

    parser = argparse.ArgumentParser()
    inspect.register(parser.add_subparsers())
    args = parser.parse_args(["inspect", *argv])
    out, err = io.StringIO(), io.StringIO()
    return args.func(args, out=out, err=err), out.getvalue(), err.getvalue()


def test_inspect_prints_one_json_line_per_alert() -> None:
    from tests.datapaths import shared_data

    data = shared_data()
    ztf = sorted((data / "ztf" / "alerts" / "night_20210720_v3.5_no_cutouts").glob("*.avro"))[0]
    batch = data / "lsst" / "alerts" / "lsstcam_20251231_v10_0.avro"
    code, out, err = _inspect(str(ztf), str(batch))
    assert (code, err) == (0, "")
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1 + 27
    assert lines[0]["survey"] == "ztf" and lines[0]["cutout_bytes"] is None
    assert lines[0]["original_bytes"] == ztf.stat().st_size
    assert {line["survey"] for line in lines[1:]} == {"lsst"}
    assert all(line["schema_version"] == "10.0" for line in lines[1:])


def test_inspect_reports_bad_files_and_keeps_going(tmp_path: object) -> None:
    from pathlib import Path

    from tests.datapaths import shared_data

    bad = Path(str(tmp_path)) / "bad.bin"
    bad.write_bytes(b"\x00\x00\x00\x27\x0f" + b"\x01" * 20)
    good = sorted((shared_data() / "lsst" / "alerts" / "wire_format").glob("*.bin"))[0]
    code, out, err = _inspect(str(bad), str(Path(str(tmp_path)) / "missing.avro"), str(good))
    assert code == 1
    assert len(out.splitlines()) == 1
    assert "bad.bin: schema: unknown LSST schema id 9999" in err
    assert "missing.avro: cannot read" in err


def test_inspect_annotate_adds_the_annotations_and_reports_rejections(tmp_path: object) -> None:
    """``--annotate`` (issue 13): each line carries the broker's annotation record; the Galactic
    position equals astropy's and E(B-V) a direct healpy lookup there. An alert an annotator
    rejects is reported with its stage, the others are printed, the exit code is 1."""
    from pathlib import Path

    import astropy.units as u
    import fastavro
    import healpy as hp
    import numpy as np
    from astropy.coordinates import SkyCoord

    from tests.datapaths import shared_data
    from transforms.annotate.catalogs import catalog_dir
    from transforms.annotate.dust import DUST_MAPS

    batch = shared_data() / "lsst" / "alerts" / "lsstcam_20251231_v10_0.avro"
    code, out, err = _inspect("--annotate", str(batch))
    lines = [json.loads(line) for line in out.splitlines()]
    assert (code, err, len(lines)) == (0, "", 27)
    gal = SkyCoord([a["ra"] for a in lines] * u.deg, [a["dec"] for a in lines] * u.deg).galactic
    sky = [line["annotations"]["sky"] for line in lines]
    assert np.allclose([s["gal_l"] for s in sky], gal.l.deg, rtol=0, atol=1e-8)
    assert np.allclose([s["gal_b"] for s in sky], gal.b.deg, rtol=0, atol=1e-8)
    direct = hp.read_map(str(catalog_dir() / DUST_MAPS["SFD"]))
    pixels = hp.ang2pix(64, gal.l.deg, gal.b.deg, lonlat=True)
    assert [line["annotations"]["dust"]["ebv"] for line in lines] == [
        float(v) for v in direct[pixels]
    ]
    assert all(line["annotations"]["lightcurve"] is not None for line in lines)

    code, out, _ = _inspect("--annotate", "--annotators", "dust", str(batch))
    first = json.loads(out.splitlines()[0])["annotations"]
    assert first["dust"] is not None and (first["crossmatch"], first["lightcurve"]) == (None, None)

    with batch.open("rb") as fh:
        reader = fastavro.reader(fh)
        schema, records = reader.writer_schema, list(reader)
    records[0]["diaSource"]["dec"] = 95.0  # off the sphere: the sky annotator rejects it
    bad = Path(str(tmp_path)) / "off-sky.avro"
    with bad.open("wb") as fh:
        fastavro.writer(fh, schema, records)
    code, out, err = _inspect("--annotate", str(bad))
    assert code == 1 and len(out.splitlines()) == 26
    rejected = f"alert {records[0]['diaSource']['diaSourceId']}: annotate.sky: position"
    assert err.startswith(f"{bad}: {rejected}") and err.count("\n") == 1
