"""dust: E(B-V) equals a direct healpy lookup of the map at astropy's galactic coordinates."""

from __future__ import annotations

import astropy.units as u
import healpy as hp
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from tests.datapaths import real_alerts
from transforms.annotate.catalogs import catalog_dir
from transforms.annotate.dust import DUST_MAPS, DustConfig, annotate_dust, load_dust_map
from transforms.annotation_model import AnnotationFailure, Dust


@pytest.mark.parametrize("map_name", ["SFD", "Planck13"])
def test_ebv_equals_direct_healpy_lookup(map_name: str) -> None:
    alerts = real_alerts()
    ra = np.array([a.ra for a in alerts])
    dec = np.array([a.dec for a in alerts])
    results = annotate_dust(load_dust_map(DustConfig(map_name)), ra, dec)
    direct = hp.read_map(str(catalog_dir() / DUST_MAPS[map_name]))
    gal = SkyCoord(ra * u.deg, dec * u.deg).galactic
    pixels = hp.ang2pix(64, gal.l.deg, gal.b.deg, lonlat=True)
    expected = [Dust(float(v), map_name) for v in direct[pixels]]
    assert results == expected
    assert len({d.ebv for d in expected}) > 20  # the sample spans many pixels


def test_bad_position_and_unknown_map() -> None:
    (result,) = annotate_dust(load_dust_map(DustConfig()), np.array([1.0]), np.array([95.0]))
    assert isinstance(result, AnnotationFailure) and result.stage == "annotate.dust"
    with pytest.raises(ValueError, match="unknown map"):
        DustConfig("Schlegel")
