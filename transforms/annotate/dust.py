"""Galactic reddening E(B-V) at each alert from a HEALPix dust map (RING, Galactic frame).

The map is read once per process; a batch is one Galactic rotation (``sky.galactic``), one
``ang2pix`` and one fancy index. The value is the map's pixel value (no interpolation), which is
what the tests compare with a direct healpy lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import healpy as hp
import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from transforms.annotate.catalogs import catalog_dir
from transforms.annotate.sky import galactic, position_failure, valid_positions
from transforms.annotation_model import AnnotationFailure, Dust

STAGE = "annotate.dust"
DUST_MAPS = {
    "SFD": "dust_healpix/dust_ebv_SFD_healpix_lowres.fits",
    "Planck13": "dust_healpix/dust_ebv_Planck13_healpix_lowres.fits",
}


@dataclass(frozen=True, slots=True)
class DustConfig:
    """``map_name`` labels the result; ``path`` defaults to that map in the catalogue folder."""

    map_name: str = "SFD"
    path: str | None = None

    def __post_init__(self) -> None:
        if self.path is None and self.map_name not in DUST_MAPS:
            raise ValueError(f"dust: unknown map {self.map_name!r}; known {sorted(DUST_MAPS)}")

    def resolved_path(self) -> Path:
        return Path(self.path) if self.path else catalog_dir() / DUST_MAPS[self.map_name]


@dataclass(frozen=True, slots=True, eq=False)
class DustMap:
    name: str
    nside: int
    nest: bool
    values: NDArray[np.float64]


@cache
def load_dust_map(config: DustConfig) -> DustMap:
    """Read the map's first table column; its header says NSIDE and the ordering."""
    path = config.resolved_path()
    if not path.is_file():
        raise FileNotFoundError(f"dust map {path} not found; set ALERTFLOW_CATALOG_DIR or path")
    with fits.open(path) as hdul:
        header = hdul[1].header
        values = np.asarray(hdul[1].data.field(0), dtype=np.float64).ravel()
    nside = int(header["NSIDE"])
    if values.size != hp.nside2npix(nside):
        raise ValueError(f"dust map {path}: {values.size} values for NSIDE {nside}")
    nest = str(header.get("ORDERING", "RING")).strip().upper() == "NESTED"
    return DustMap(config.map_name, nside, nest, values)


def ebv_at(
    dust: DustMap, ra_deg: NDArray[np.float64], dec_deg: NDArray[np.float64]
) -> NDArray[np.float64]:
    """E(B-V) of the map pixel containing each (valid) position."""
    gal_l, gal_b = galactic(ra_deg, dec_deg)
    pixels = hp.ang2pix(dust.nside, gal_l, gal_b, nest=dust.nest, lonlat=True)
    ebv: NDArray[np.float64] = dust.values[pixels]
    return ebv


def annotate_dust(
    dust: DustMap, ra_deg: NDArray[np.float64], dec_deg: NDArray[np.float64]
) -> list[Dust | AnnotationFailure]:
    ra = np.asarray(ra_deg, np.float64)
    dec = np.asarray(dec_deg, np.float64)
    ok = valid_positions(ra, dec)
    values = ebv_at(dust, np.where(ok, ra, 0.0), np.where(ok, dec, 0.0))
    return [
        Dust(value, dust.name) if good else position_failure(STAGE, float(r), float(d))
        for good, value, r, d in zip(ok.tolist(), values.tolist(), ra, dec, strict=True)
    ]
