"""sky: galactic/ecliptic coordinates against astropy SkyCoord per alert, HEALPix against healpy."""

from __future__ import annotations

import astropy.units as u
import healpy as hp
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from tests.datapaths import real_alerts
from transforms.annotate.sky import SkyConfig, annotate_sky, ecliptic, galactic
from transforms.annotation_model import AnnotationFailure, Sky

MAS = 1.0 / 3.6e6  # degrees


def _angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


def test_galactic_and_ecliptic_match_astropy_per_alert_within_1_mas() -> None:
    alerts = real_alerts()
    assert len(alerts) == 517
    results = annotate_sky(
        np.array([a.ra for a in alerts]), np.array([a.dec for a in alerts]), SkyConfig()
    )
    # One vectorised SkyCoord: astropy's own frame machinery, element by element.
    coord = SkyCoord([a.ra for a in alerts] * u.deg, [a.dec for a in alerts] * u.deg, frame="icrs")
    gal = coord.galactic
    ecl = coord.barycentricmeanecliptic
    assert all(isinstance(s, Sky) for s in results)
    sky = [s for s in results if isinstance(s, Sky)]
    assert _angle_diff(np.array([s.gal_l for s in sky]), gal.l.deg).max() < MAS
    assert np.abs(np.array([s.gal_b for s in sky]) - gal.b.deg).max() < MAS
    assert _angle_diff(np.array([s.ecl_lon for s in sky]), ecl.lon.deg).max() < MAS
    assert np.abs(np.array([s.ecl_lat for s in sky]) - ecl.lat.deg).max() < MAS


@pytest.mark.parametrize("orders", [(10,), (6, 12, 29), (0,)])
def test_healpix_equals_healpy_per_alert(orders: tuple[int, ...]) -> None:
    alerts = real_alerts()
    results = annotate_sky(
        np.array([a.ra for a in alerts]), np.array([a.dec for a in alerts]), SkyConfig(orders)
    )
    for alert, sky in zip(alerts, results, strict=True):
        assert isinstance(sky, Sky)
        expected = tuple(
            (o, int(hp.ang2pix(2**o, alert.ra, alert.dec, nest=True, lonlat=True))) for o in orders
        )
        assert sky.healpix_orders == expected
        assert (sky.healpix_order, sky.healpix) == expected[0]


def test_batch_helpers_agree_with_astropy_at_the_poles_and_the_wrap() -> None:
    ra = np.array([0.0, 359.9999999, 180.0, 266.40499, 12.3])
    dec = np.array([90.0, -89.9999, 0.0, -28.93617, -90.0])
    coord = SkyCoord(ra * u.deg, dec * u.deg)
    _, b = galactic(ra, dec)
    _, lat = ecliptic(ra, dec)
    np.testing.assert_allclose(b, coord.galactic.b.deg, atol=MAS, rtol=0)
    np.testing.assert_allclose(lat, coord.barycentricmeanecliptic.lat.deg, atol=MAS, rtol=0)


@pytest.mark.parametrize(
    ("ra", "dec"), [(float("nan"), 10.0), (10.0, float("inf")), (10.0, 90.5), (10.0, -91.0)]
)
def test_positions_off_the_sky_are_failures_not_values(ra: float, dec: float) -> None:
    good, bad = annotate_sky(np.array([10.0, ra]), np.array([20.0, dec]), SkyConfig())
    assert isinstance(good, Sky)
    assert isinstance(bad, AnnotationFailure)
    assert bad.stage == "annotate.sky"
    assert "not a sky position" in bad.reason


def test_config_rejects_bad_orders() -> None:
    with pytest.raises(ValueError, match="HEALPix order"):
        SkyConfig((30,))
    with pytest.raises(ValueError, match="at least one"):
        SkyConfig(())
