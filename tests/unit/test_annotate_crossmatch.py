"""crossmatch: HEALPix-bucketed matches equal a brute-force nearest neighbour over the catalogue."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from tests.datapaths import real_alerts
from transforms.annotate.catalogs import (
    CatalogFormat,
    CatalogSpec,
    CrossMatchConfig,
    load_catalog,
    load_catalogs,
)
from transforms.annotate.crossmatch import (
    annotate_crossmatch,
    brute_force_nearest,
    inside_ellipse,
    nearest_matches,
)
from transforms.annotation_model import AnnotationFailure, CrossMatch

MAS_ARCSEC = 1e-3


def _probe_positions(catalog_ra: np.ndarray, catalog_dec: np.ndarray, radius: float):
    """Real alert positions plus seeded positions scattered around catalogue sources (so most
    probes have several candidates) and near the poles and the RA wrap."""
    rng = np.random.default_rng(20260101)
    alerts = real_alerts()
    pick = rng.integers(0, len(catalog_ra), 400)
    spread = rng.normal(0.0, 0.8 * radius / 3600.0, (2, pick.size))
    cos_dec = np.maximum(np.cos(np.radians(catalog_dec[pick])), 0.05)
    ra = np.concatenate(
        [
            [a.ra for a in alerts],
            (catalog_ra[pick] + spread[0] / cos_dec) % 360.0,
            rng.uniform(0.0, 360.0, 100),
            [0.0, 359.99999, 180.0, 45.0],
        ]
    )
    dec = np.concatenate(
        [
            [a.dec for a in alerts],
            np.clip(catalog_dec[pick] + spread[1], -90.0, 90.0),
            rng.uniform(-90.0, 90.0, 100),
            [89.99999, -89.99999, 0.0, 90.0],
        ]
    )
    return ra, dec


def _brute_force(catalog, ra: np.ndarray, dec: np.ndarray) -> list[tuple[int, float]]:
    """Haversine to every source of the catalogue, argmin per probe, in chunks of probes."""
    ra2, dec2 = np.radians(catalog.ra)[None, :], np.radians(catalog.dec)[None, :]
    cos2 = np.cos(dec2)
    out: list[tuple[int, float]] = []
    for lo in range(0, len(ra), 64):
        ra1 = np.radians(ra[lo : lo + 64])[:, None]
        dec1 = np.radians(dec[lo : lo + 64])[:, None]
        h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * cos2 * np.sin((ra2 - ra1) / 2) ** 2
        seps = 2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))) * 206264.80624709636
        rows = np.argmin(seps, axis=1)
        best = seps[np.arange(len(rows)), rows]
        for row, sep in zip(rows.tolist(), best.tolist(), strict=True):
            ok = sep <= catalog.spec.radius_arcsec
            out.append((row, sep) if ok else (-1, float("nan")))
    return out


def test_library_brute_force_agrees_with_the_test_one(catalogs) -> None:
    catalog = catalogs[0]
    ra, dec = _probe_positions(catalog.ra, catalog.dec, catalog.spec.radius_arcsec)
    mine = _brute_force(catalog, ra[:300], dec[:300])
    theirs = [brute_force_nearest(catalog, r, d) for r, d in zip(ra[:300], dec[:300], strict=True)]
    assert [r for r, _ in mine] == [r for r, _ in theirs]


@pytest.fixture(scope="module")
def catalogs():
    return load_catalogs(CrossMatchConfig())


def test_default_catalogues_load(catalogs) -> None:
    assert [(c.spec.name, len(c)) for c in catalogs] == [
        ("ngc", 10791),
        ("gaia", 62793),
        ("gcvs", 59099),
    ]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_nearest_equals_brute_force(catalogs, which: int) -> None:
    catalog = catalogs[which]
    ra, dec = _probe_positions(catalog.ra, catalog.dec, catalog.spec.radius_arcsec)
    rows, seps = nearest_matches(catalog, ra, dec)
    expected = _brute_force(catalog, ra, dec)
    assert rows.tolist() == [row for row, _ in expected]
    hit = rows >= 0
    assert hit.sum() > 200
    np.testing.assert_allclose(
        seps[hit], [sep for row, sep in expected if row >= 0], atol=MAS_ARCSEC, rtol=0
    )


def test_separations_agree_with_astropy_within_1_mas(catalogs) -> None:
    catalog = catalogs[0]
    ra, dec = _probe_positions(catalog.ra, catalog.dec, catalog.spec.radius_arcsec)
    rows, seps = nearest_matches(catalog, ra, dec)
    hit = np.flatnonzero(rows >= 0)
    probe = SkyCoord(ra[hit] * u.deg, dec[hit] * u.deg)
    source = SkyCoord(catalog.ra[rows[hit]] * u.deg, catalog.dec[rows[hit]] * u.deg)
    np.testing.assert_allclose(seps[hit], probe.separation(source).arcsec, atol=MAS_ARCSEC, rtol=0)


def test_real_alerts_known_host(catalogs) -> None:
    """ZTF21abiuvdk (SN 2021rhu) sits in NGC 7814."""
    alert = next(a for a in real_alerts() if a.object_id == "ZTF21abiuvdk")
    (result,) = annotate_crossmatch(catalogs, np.array([alert.ra]), np.array([alert.dec]))
    assert isinstance(result, CrossMatch)
    ngc = result.get("ngc")
    assert ngc is not None
    assert ngc.id == "NGC7814"
    assert ngc.column("type") == "G"
    assert ngc.column("redshift") == pytest.approx(0.003505)
    assert ngc.inside_galaxy is True
    assert 7.0 < ngc.sep_arcsec < 9.0
    assert result.get("gaia") is None


def test_user_csv_and_parquet_catalogues(tmp_path: Path) -> None:
    csv = tmp_path / "mine.csv"
    csv.write_text(
        "id,ra,dec,kind,zmag\nA,10.0,20.0,agn,17.5\nB,10.001,20.0,qso,\nC,200,-30,agn,18\n"
    )
    spec = CatalogSpec.from_mapping(
        {
            "name": "mine",
            "path": str(csv),
            "format": "csv",
            "radius_arcsec": 5.0,
            "columns": ["kind", "zmag"],
        }
    )
    catalog = load_catalog(spec)
    probe_ra = np.array([10.0008, 10.0, 50.0, float("nan")])
    probe_dec = np.array([20.0, 20.0, 0.0, 0.0])
    near_b, on_a, nothing, bad = annotate_crossmatch([catalog], probe_ra, probe_dec)
    assert isinstance(near_b, CrossMatch) and isinstance(on_a, CrossMatch)
    b = near_b.get("mine")
    assert b is not None and b.id == "B" and b.columns == (("kind", "qso"), ("zmag", None))
    a = on_a.get("mine")
    assert a is not None and a.id == "A" and a.sep_arcsec == 0.0 and a.inside_galaxy is None
    assert nothing == CrossMatch((("mine", None),))
    assert isinstance(bad, AnnotationFailure) and bad.stage == "annotate.crossmatch"
    assert catalog.column_types == (("kind", "str"), ("zmag", "float"))

    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "mine.parquet"
    pq.write_table(pa.table({"name": ["X"], "RA": [10.0], "DEC": [20.0]}), parquet)
    spec2 = CatalogSpec("p", str(parquet), 1.0, id_column="name", ra_column="RA", dec_column="DEC")
    assert load_catalog(spec2).ids == ["X"]


def test_bad_catalogue_config_fails_at_start(tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("ra,dec\n1,2\n")
    with pytest.raises(ValueError, match="no columns \\['id'\\]"):
        load_catalog(CatalogSpec("c", str(csv), 1.0, format=CatalogFormat.CSV))
    with pytest.raises(FileNotFoundError, match="ALERTFLOW_CATALOG_DIR"):
        load_catalog(CatalogSpec("c", str(tmp_path / "none.parquet"), 1.0))
    with pytest.raises(ValueError, match="radius_arcsec"):
        CatalogSpec("c", "x", 0.0)
    with pytest.raises(ValueError, match="unknown keys"):
        CatalogSpec.from_mapping({"name": "c", "path": "x", "radius_arcsec": 1, "radius": 2})
    with pytest.raises(ValueError, match="unique"):
        CrossMatchConfig((CatalogSpec("c", "x", 1.0), CatalogSpec("c", "y", 1.0)))


@pytest.mark.parametrize(
    ("d_north", "d_east", "pa", "inside"),
    [
        (0.0, 0.0, 0.0, True),
        (50.0, 0.0, 0.0, True),  # along a north-south major axis (a = 60")
        (0.0, 50.0, 0.0, False),  # across it (b = 30")
        (0.0, 50.0, 90.0, True),  # major axis turned to the east
        (50.0, 0.0, 90.0, False),
        (0.0, 70.0, 90.0, False),
    ],
)
def test_inside_ellipse(d_north: float, d_east: float, pa: float, inside: bool) -> None:
    dec0 = 30.0
    ra = np.array([100.0 + d_east / 3600.0 / np.cos(np.radians(dec0))])
    dec = np.array([dec0 + d_north / 3600.0])
    flag = inside_ellipse(
        ra,
        dec,
        np.array([100.0]),
        np.array([dec0]),
        np.array([2.0]),
        np.array([1.0]),
        np.array([pa]),
    )
    assert flag.tolist() == [inside]
