"""Sky position annotations for a whole batch at once: HEALPix, galactic and ecliptic coordinates.

The ICRS to Galactic and ICRS to mean-ecliptic-J2000 transformations are fixed rotations, so the
batch path is one 3x3 matrix product over the unit vectors of every alert, not a SkyCoord per
alert. The two matrices are taken once from astropy (by transforming the three basis vectors), so
they agree with astropy's frame definitions by construction; the tests compare the batch results
with a SkyCoord per alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import healpy as hp
import numpy as np
from numpy.typing import NDArray

from transforms.annotation_model import AnnotationFailure, Sky

STAGE = "annotate.sky"
MAX_ORDER = 29

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class SkyConfig:
    """``orders``: HEALPix orders (nside = 2**order) to keep, the first is ``sky.healpix``."""

    orders: tuple[int, ...] = (10,)

    def __post_init__(self) -> None:
        if not self.orders:
            raise ValueError("sky.orders needs at least one HEALPix order")
        for order in self.orders:
            if not 0 <= order <= MAX_ORDER:
                raise ValueError(f"sky.orders: {order} is not a HEALPix order in 0..{MAX_ORDER}")


def unit_vectors(ra_deg: FloatArray, dec_deg: FloatArray) -> FloatArray:
    """Cartesian unit vectors, shape (n, 3), of positions in degrees."""
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


def lonlat(vectors: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Longitude in [0, 360) and latitude in degrees of (n, 3) vectors."""
    x, y, z = vectors[:, 0], vectors[:, 1], vectors[:, 2]
    lon = np.degrees(np.arctan2(y, x)) % 360.0
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return lon, lat


def _matrix_from_astropy(frame: str) -> FloatArray:
    # Imported here: astropy is only needed once, to read off the rotation.
    from astropy.coordinates import SkyCoord

    basis = np.eye(3)
    icrs = SkyCoord(
        x=basis[:, 0], y=basis[:, 1], z=basis[:, 2], representation_type="cartesian", frame="icrs"
    )
    out = icrs.transform_to(frame).cartesian
    # Column i of the rotation is the image of basis vector i.
    columns = np.stack([out.x.value, out.y.value, out.z.value], axis=0)
    return np.ascontiguousarray(columns, dtype=np.float64)


@cache
def icrs_to_galactic() -> FloatArray:
    """Rotation matrix taking ICRS unit vectors to Galactic ones."""
    return _matrix_from_astropy("galactic")


@cache
def icrs_to_ecliptic() -> FloatArray:
    """Rotation matrix taking ICRS unit vectors to mean ecliptic and equinox of J2000."""
    return _matrix_from_astropy("barycentricmeanecliptic")


def rotate(vectors: FloatArray, matrix: FloatArray) -> FloatArray:
    """``vectors @ matrix.T`` written out element-wise, so an alert's result does not depend on
    the batch it came in (a BLAS product may sum in a different order for a different n)."""
    x, y, z = vectors[:, 0], vectors[:, 1], vectors[:, 2]
    return np.stack(
        [matrix[i, 0] * x + matrix[i, 1] * y + matrix[i, 2] * z for i in range(3)], axis=-1
    )


def galactic(ra_deg: FloatArray, dec_deg: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Galactic (l, b) in degrees."""
    return lonlat(rotate(unit_vectors(ra_deg, dec_deg), icrs_to_galactic()))


def ecliptic(ra_deg: FloatArray, dec_deg: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Ecliptic (lon, lat) in degrees, mean ecliptic and equinox of J2000."""
    return lonlat(rotate(unit_vectors(ra_deg, dec_deg), icrs_to_ecliptic()))


def healpix_nested(ra_deg: FloatArray, dec_deg: FloatArray, order: int) -> IntArray:
    """NESTED HEALPix index at nside = 2**order (healpy's ang2pix)."""
    return np.asarray(hp.ang2pix(1 << order, ra_deg, dec_deg, nest=True, lonlat=True), np.int64)


def valid_positions(ra_deg: FloatArray, dec_deg: FloatArray) -> NDArray[np.bool_]:
    """True where the position is finite with -90 <= dec <= 90 (ra is taken modulo 360)."""
    valid: NDArray[np.bool_] = (
        np.isfinite(ra_deg) & np.isfinite(dec_deg) & (np.abs(dec_deg) <= 90.0)
    )
    return valid


def position_failure(stage: str, ra: float, dec: float) -> AnnotationFailure:
    return AnnotationFailure(stage, f"position ra={ra!r} dec={dec!r} is not a sky position")


def annotate_sky(
    ra_deg: FloatArray, dec_deg: FloatArray, config: SkyConfig
) -> list[Sky | AnnotationFailure]:
    """One :class:`Sky` per position, or a failure for a position that is not on the sky."""
    ra = np.asarray(ra_deg, np.float64)
    dec = np.asarray(dec_deg, np.float64)
    ok = valid_positions(ra, dec)
    safe_ra = np.where(ok, ra, 0.0)
    safe_dec = np.where(ok, dec, 0.0)
    vectors = unit_vectors(safe_ra, safe_dec)
    gal_l, gal_b = lonlat(rotate(vectors, icrs_to_galactic()))
    ecl_lon, ecl_lat = lonlat(rotate(vectors, icrs_to_ecliptic()))
    pixels = [healpix_nested(safe_ra, safe_dec, order).tolist() for order in config.orders]
    primary = config.orders[0]
    out: list[Sky | AnnotationFailure] = []
    columns = zip(
        ok.tolist(),
        gal_l.tolist(),
        gal_b.tolist(),
        ecl_lon.tolist(),
        ecl_lat.tolist(),
        zip(*pixels, strict=True),
        strict=True,
    )
    for i, (good, l_, b_, elon, elat, pix) in enumerate(columns):
        if not good:
            out.append(position_failure(STAGE, float(ra[i]), float(dec[i])))
            continue
        out.append(
            Sky(
                gal_l=l_,
                gal_b=b_,
                ecl_lon=elon,
                ecl_lat=elat,
                healpix=pix[0],
                healpix_order=primary,
                healpix_orders=tuple(zip(config.orders, pix, strict=True)),
            )
        )
    return out
