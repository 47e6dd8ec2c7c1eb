"""The sky tests of the filter functions ``cone`` and ``healpix_in``, column-wise and per alert.

Positions are in degrees. :func:`in_cone` compares squared chord lengths of unit vectors, so it
keeps full precision at arcsecond radii without trigonometry per alert; :func:`ang2pix_nest` is
HEALPix's NESTED pixel index, computed with numpy as healpy does (the tests compare the two).
The ``*_scalar`` forms serve the per-alert interpreter (``transforms.filters.reference``).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import numpy.typing as npt


def unit_vectors(ra_deg: Any, dec_deg: Any) -> tuple[Any, Any, Any]:
    """Cartesian unit vectors of positions in degrees (numpy broadcasting)."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)


def chord2_limit(radius_arcsec: Any) -> Any:
    """Squared chord length of a cone radius; -1 (nothing inside) for a negative radius.

    Comparing squared chords instead of angles keeps full precision at arcsecond radii, where
    ``1 - cos(r)`` would lose it, and costs no trigonometry per alert.
    """
    radius = np.minimum(np.asarray(radius_arcsec, dtype=np.float64) / 3600.0, 180.0)
    chord = 2.0 * np.sin(np.radians(radius) / 2.0)
    return np.where(radius < 0, -1.0, chord * chord)


def in_cone(vectors: tuple[Any, Any, Any], ra0: Any, dec0: Any, radius_arcsec: Any) -> Any:
    """Whether positions (as unit ``vectors``) lie within ``radius_arcsec`` of (ra0, dec0)."""
    x, y, z = vectors
    x0, y0, z0 = unit_vectors(ra0, dec0)
    dx, dy, dz = x - x0, y - y0, z - z0
    return dx * dx + dy * dy + dz * dz <= chord2_limit(radius_arcsec)


def _spread_bits(v: npt.NDArray[Any]) -> npt.NDArray[Any]:
    # Interleave: bit k of v goes to bit 2k (v < 2**29).
    v = v.astype(np.uint64)
    v = (v | (v << np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v << np.uint64(2))) & np.uint64(0x3333333333333333)
    v = (v | (v << np.uint64(1))) & np.uint64(0x5555555555555555)
    return v


def ang2pix_nest(nside: int, ra_deg: Any, dec_deg: Any) -> npt.NDArray[Any]:
    """HEALPix NESTED pixel index of positions in degrees (Gorski et al. 2005, as in healpy)."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    theta = np.radians(90.0 - dec)
    z = np.cos(theta)
    sth = np.sin(theta)
    za = np.abs(z)
    tt = np.mod(np.radians(ra), 2.0 * np.pi) * (2.0 / np.pi)  # in [0, 4)
    tt = np.where(tt >= 4.0, 0.0, tt)
    ns = np.int64(nside)
    # Equatorial region.
    temp1 = nside * (0.5 + tt)
    temp2 = nside * z * 0.75
    jp = (temp1 - temp2).astype(np.int64)
    jm = (temp1 + temp2).astype(np.int64)
    ifp = jp // ns
    ifm = jm // ns
    face_eq = np.where(ifp == ifm, ifp | 4, np.where(ifp < ifm, ifp, ifm + 8))
    ix_eq = jm & (ns - 1)
    iy_eq = ns - (jp & (ns - 1)) - 1
    # Polar caps (sin(theta) form keeps precision near the poles, as healpy does).
    ntt = np.minimum(tt.astype(np.int64), 3)
    tp = tt - ntt
    tmp = nside * sth / np.sqrt((1.0 + za) / 3.0)
    jp_p = np.minimum((tp * tmp).astype(np.int64), ns - 1)
    jm_p = np.minimum(((1.0 - tp) * tmp).astype(np.int64), ns - 1)
    north = z > 0
    face_p = np.where(north, ntt, ntt + 8)
    ix_p = np.where(north, ns - jm_p - 1, jp_p)
    iy_p = np.where(north, ns - jp_p - 1, jm_p)
    polar = za > 2.0 / 3.0
    face = np.where(polar, face_p, face_eq)
    ix = np.where(polar, ix_p, ix_eq)
    iy = np.where(polar, iy_p, iy_eq)
    sub = _spread_bits(ix) | (_spread_bits(iy) << np.uint64(1))
    pixels: npt.NDArray[Any] = face.astype(np.int64) * ns * ns + sub.astype(np.int64)
    return pixels


@functools.lru_cache(maxsize=65536)
def _unit_scalar(ra_deg: float, dec_deg: float) -> tuple[float, float, float]:
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    return math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)


def in_cone_scalar(ra: float, dec: float, ra0: float, dec0: float, radius_arcsec: float) -> bool:
    """:func:`in_cone` for one position, in plain floats (the per-alert interpreter's)."""
    if radius_arcsec < 0:
        return False
    x, y, z = _unit_scalar(ra, dec)
    x0, y0, z0 = _unit_scalar(ra0, dec0)
    chord = 2.0 * math.sin(math.radians(min(radius_arcsec / 3600.0, 180.0)) / 2.0)
    dx, dy, dz = x - x0, y - y0, z - z0
    return dx * dx + dy * dy + dz * dz <= chord * chord


@functools.lru_cache(maxsize=65536)
def pixel_scalar(nside: int, ra: float, dec: float) -> int:
    """:func:`ang2pix_nest` of one position, cached."""
    return int(ang2pix_nest(nside, ra, dec))
