"""Cone cross-match of a batch of alerts against catalogues loaded once from files.

Each catalogue is sorted by NESTED HEALPix index at an order whose pixels are at least four times
the match radius across, so every source within the radius of an alert lies in the alert's pixel
or one of its (up to eight) neighbours. A batch is matched in one pass of numpy: the candidate
(alert, source) pairs of those nine buckets are expanded with ``np.repeat``, their exact angular
separations computed from unit vectors (``atan2(|a x b|, a . b)``, accurate at small angles), and
the nearest source within the radius is kept per alert (ties go to the lower catalogue row, like
``argmin`` over the catalogue). :func:`brute_force_nearest` is the reference the tests and the
benchmark compare against.

Catalogues come from configuration (:class:`CatalogSpec`): Parquet, CSV, or the OpenNGC SQLite
database, with ``ra``/``dec``, an id and chosen columns. The default configuration reads the
shared catalogues from ``$ALERTFLOW_CATALOG_DIR`` or ``../shared/data/catalogs`` beside the
clone; nothing is copied into the repository.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from transforms.annotate.sky import position_failure, unit_vectors, valid_positions
from transforms.annotation_model import (
    AnnotationFailure,
    CatalogFields,
    CatalogMatch,
    CatalogValue,
    CrossMatch,
)

STAGE = "annotate.crossmatch"
MAX_RADIUS_ARCSEC = 3600.0
_MAX_BUCKET_ORDER = 16
_BUCKET_MARGIN = 4.0
_ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0
_REPO = Path(__file__).resolve().parents[2]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class CatalogFormat(StrEnum):
    PARQUET = "parquet"
    CSV = "csv"
    OPENNGC = "openngc"  # the OpenNGC SQLite database (table ``objects``, ra/dec in radians)


class CatalogKind(StrEnum):
    """What a match means to the tag rules."""

    GALAXY = "galaxy"
    STAR = "star"
    VARIABLE_STAR = "variable_star"
    OTHER = "other"


def catalog_dir() -> Path:
    """``$ALERTFLOW_CATALOG_DIR`` if set, else ``catalogs`` in ``$ALERTFLOW_SHARED_DATA``, else
    ``shared/data/catalogs`` beside the clone."""
    env = os.environ.get("ALERTFLOW_CATALOG_DIR")
    if env:
        return Path(env).expanduser()
    shared = os.environ.get("ALERTFLOW_SHARED_DATA")
    if shared:
        return Path(shared).expanduser() / "catalogs"
    return _REPO.parent / "shared" / "data" / "catalogs"


@dataclass(frozen=True, slots=True)
class CatalogSpec:
    """One catalogue to match against.

    ``id_column`` None numbers the rows from 0 (GCVS as shipped has no identifier column).
    ``columns`` are copied into each match. ``major_axis_column``/``minor_axis_column`` (arcmin,
    full axes) and ``pa_column`` (degrees east of north) enable the ``inside_galaxy`` flag.
    ``include_types`` keeps only rows whose ``type_column`` value is listed.
    """

    name: str
    path: str
    radius_arcsec: float
    format: CatalogFormat = CatalogFormat.PARQUET
    kind: CatalogKind = CatalogKind.OTHER
    id_column: str | None = "id"
    ra_column: str = "ra"
    dec_column: str = "dec"
    angles_in_radians: bool = False
    columns: tuple[str, ...] = ()
    major_axis_column: str | None = None
    minor_axis_column: str | None = None
    pa_column: str | None = None
    type_column: str | None = None
    include_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"catalogue name {self.name!r} must be an identifier (a-z, 0-9, _)")
        if not 0.0 < self.radius_arcsec <= MAX_RADIUS_ARCSEC:
            raise ValueError(
                f"catalogue {self.name!r}: radius_arcsec {self.radius_arcsec} must be in "
                f"(0, {MAX_RADIUS_ARCSEC}]"
            )
        reserved = {"id", "sep_arcsec", "inside_galaxy"} & set(self.columns)
        if reserved:
            raise ValueError(f"catalogue {self.name!r}: column names {sorted(reserved)} clash")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CatalogSpec:
        """From YAML-shaped data; unknown keys are an error, not ignored."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"catalogue config: unknown keys {sorted(unknown)}; known {sorted(known)}"
            )
        values = dict(data)
        for key in ("columns", "include_types"):
            if key in values:
                values[key] = tuple(values[key])
        if "format" in values:
            values["format"] = CatalogFormat(values["format"])
        if "kind" in values:
            values["kind"] = CatalogKind(values["kind"])
        return cls(**values)


def default_catalogs(directory: Path | None = None) -> tuple[CatalogSpec, ...]:
    """The shared catalogues: OpenNGC galaxies, Gaia DR3 bright stars, GCVS."""
    root = catalog_dir() if directory is None else directory
    return (
        CatalogSpec(
            name="ngc",
            path=str(root / "openngc" / "ongc.db"),
            radius_arcsec=180.0,
            format=CatalogFormat.OPENNGC,
            kind=CatalogKind.GALAXY,
            id_column="name",
            angles_in_radians=True,
            columns=("type", "redshift", "bmag", "hubble", "majax"),
            major_axis_column="majax",
            minor_axis_column="minax",
            pa_column="pa",
            type_column="type",
            include_types=("G", "GPair", "GTrpl", "GGroup"),
        ),
        CatalogSpec(
            name="gaia",
            path=str(root / "gaia_dr3_bright" / "gaia_dr3_hip2_G_le_8.parquet"),
            radius_arcsec=30.0,
            kind=CatalogKind.STAR,
            id_column="source_id",
            columns=("mag",),
        ),
        CatalogSpec(
            name="gcvs",
            path=str(root / "gcvs" / "gcvs_positions_vartype.parquet"),
            radius_arcsec=3.0,
            kind=CatalogKind.VARIABLE_STAR,
            id_column=None,
            columns=("VarType",),
        ),
    )


@dataclass(frozen=True, slots=True)
class CrossMatchConfig:
    catalogs: tuple[CatalogSpec, ...] = field(default_factory=default_catalogs)

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.catalogs]
        if len(set(names)) != len(names):
            raise ValueError(f"crossmatch: catalogue names must be unique, got {names}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CrossMatchConfig:
        """``{"defaults": true, "catalogs": [...]}``: the shared catalogues plus the user's."""
        unknown = set(data) - {"defaults", "catalogs"}
        if unknown:
            raise ValueError(f"crossmatch config: unknown keys {sorted(unknown)}")
        base = default_catalogs() if data.get("defaults", True) else ()
        extra = tuple(CatalogSpec.from_mapping(item) for item in data.get("catalogs", ()))
        return cls(catalogs=base + extra)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Catalog:
    """A loaded catalogue: positions in degrees, unit vectors, ids, chosen columns, bucket index.

    ``order`` is the bucket HEALPix order; ``sorted_pixels`` the bucket of each row in bucket
    order and ``row_of`` the catalogue row at each position of that order.
    """

    spec: CatalogSpec
    ids: list[str]
    ra: FloatArray
    dec: FloatArray
    vectors: FloatArray
    columns: dict[str, list[CatalogValue]]
    column_types: tuple[tuple[str, str], ...]
    major_arcmin: FloatArray | None
    minor_arcmin: FloatArray | None
    pa_deg: FloatArray | None
    order: int
    sorted_pixels: IntArray
    row_of: IntArray

    def __len__(self) -> int:
        return len(self.ids)


def _type_name(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    return "str"


def _read_table(spec: CatalogSpec) -> pa.Table:
    path = Path(spec.path)
    if not path.is_file():
        raise FileNotFoundError(
            f"catalogue {spec.name!r}: no file {path}; set ALERTFLOW_CATALOG_DIR or the path"
        )
    if spec.format is CatalogFormat.PARQUET:
        return pq.read_table(path)
    if spec.format is CatalogFormat.CSV:
        return pacsv.read_csv(path)
    uri = f"file:{path}?mode=ro"
    with sqlite3.connect(uri, uri=True) as con:
        cursor = con.execute("select * from objects where ra is not null and dec is not null")
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    data = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    return pa.table(data)


def _clean(value: Any) -> CatalogValue:
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value  # type: ignore[no-any-return]


def _float_column(table: pa.Table, name: str | None) -> FloatArray | None:
    if name is None:
        return None
    values = table.column(name).to_pylist()
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def bucket_order(radius_arcsec: float) -> int:
    """Deepest HEALPix order whose pixel size is at least four match radii."""
    radius = radius_arcsec / _ARCSEC_PER_RAD
    for order in range(_MAX_BUCKET_ORDER, -1, -1):
        if hp.nside2resol(1 << order) >= _BUCKET_MARGIN * radius:
            return order
    return 0


def load_catalog(spec: CatalogSpec) -> Catalog:
    """Read, filter and index one catalogue; raises ValueError naming a missing column."""
    table = _read_table(spec)
    wanted = [spec.ra_column, spec.dec_column, *spec.columns]
    wanted += [
        c
        for c in (
            spec.id_column,
            spec.major_axis_column,
            spec.minor_axis_column,
            spec.pa_column,
            spec.type_column,
        )
        if c is not None
    ]
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise ValueError(
            f"catalogue {spec.name!r} ({spec.path}) has no columns {missing}; "
            f"it has {table.column_names}"
        )
    if spec.type_column is not None and spec.include_types:
        types = [_clean(v) for v in table.column(spec.type_column).to_pylist()]
        keep = np.array([t in spec.include_types for t in types], dtype=bool)
        table = table.filter(pa.array(keep))
    ra = np.asarray(table.column(spec.ra_column).to_numpy(zero_copy_only=False), np.float64)
    dec = np.asarray(table.column(spec.dec_column).to_numpy(zero_copy_only=False), np.float64)
    if spec.angles_in_radians:
        ra, dec = np.degrees(ra), np.degrees(dec)
    good = valid_positions(ra, dec)
    if not good.all():
        table = table.filter(pa.array(good))
        ra, dec = ra[good], dec[good]
    ra = ra % 360.0
    if spec.id_column is None:
        ids = [str(i) for i in range(len(ra))]
    else:
        ids = [str(_clean(v)) for v in table.column(spec.id_column).to_pylist()]
    columns = {name: [_clean(v) for v in table.column(name).to_pylist()] for name in spec.columns}
    column_types = tuple((name, _type_name(table.schema.field(name).type)) for name in spec.columns)
    order = bucket_order(spec.radius_arcsec)
    pixels = np.asarray(hp.ang2pix(1 << order, ra, dec, nest=True, lonlat=True), np.int64)
    row_of = np.argsort(pixels, kind="stable").astype(np.int64)
    return Catalog(
        spec=spec,
        ids=ids,
        ra=ra,
        dec=dec,
        vectors=unit_vectors(ra, dec),
        columns=columns,
        column_types=column_types,
        major_arcmin=_float_column(table, spec.major_axis_column),
        minor_arcmin=_float_column(table, spec.minor_axis_column),
        pa_deg=_float_column(table, spec.pa_column),
        order=order,
        sorted_pixels=pixels[row_of],
        row_of=row_of,
    )


@cache
def load_catalogs(config: CrossMatchConfig) -> tuple[Catalog, ...]:
    """Every configured catalogue, loaded once per process and shared by all DoFn instances."""
    return tuple(load_catalog(spec) for spec in config.catalogs)


def catalog_fields(catalogs: Sequence[Catalog]) -> tuple[CatalogFields, ...]:
    """What ``record.field_paths`` needs to list the cross-match paths."""
    return tuple(
        CatalogFields(c.spec.name, c.column_types, c.spec.major_axis_column is not None)
        for c in catalogs
    )


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------


def separation_arcsec(a: FloatArray, b: FloatArray) -> FloatArray:
    """Angular separation in arcsec between rows of two (n, 3) unit-vector arrays."""
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    dot = np.einsum("ij,ij->i", a, b)
    separation: FloatArray = np.arctan2(cross, dot) * _ARCSEC_PER_RAD
    return separation


def nearest_matches(
    catalog: Catalog, ra_deg: FloatArray, dec_deg: FloatArray
) -> tuple[IntArray, FloatArray]:
    """Per position: the catalogue row of the nearest source within the radius (-1 if none)
    and its separation in arcsec (NaN if none). Positions must be valid sky positions."""
    n = len(ra_deg)
    rows = np.full(n, -1, np.int64)
    seps = np.full(n, np.nan)
    if n == 0 or len(catalog) == 0:
        return rows, seps
    nside = 1 << catalog.order
    own = np.asarray(hp.ang2pix(nside, ra_deg, dec_deg, nest=True, lonlat=True), np.int64)
    around = np.asarray(hp.get_all_neighbours(nside, ra_deg, dec_deg, nest=True, lonlat=True))
    cells = np.sort(np.vstack([own[None, :], around.astype(np.int64)]), axis=0)
    # At low orders a pixel can be its own neighbour's neighbour: count each bucket once.
    repeated = np.zeros_like(cells, dtype=bool)
    repeated[1:] = cells[1:] == cells[:-1]
    cells[repeated] = -1
    starts = np.searchsorted(catalog.sorted_pixels, cells, side="left")
    ends = np.searchsorted(catalog.sorted_pixels, cells, side="right")
    counts = np.where(cells >= 0, ends - starts, 0).ravel()
    total = int(counts.sum())
    if total == 0:
        return rows, seps
    alert_of_cell = np.tile(np.arange(n, dtype=np.int64), cells.shape[0])
    pair_alert = np.repeat(alert_of_cell, counts)
    first_pair = np.cumsum(counts) - counts
    position = np.repeat(starts.ravel() - first_pair, counts) + np.arange(total)
    pair_row = catalog.row_of[position]
    alert_vectors = unit_vectors(np.asarray(ra_deg, np.float64), np.asarray(dec_deg, np.float64))
    pair_sep = separation_arcsec(alert_vectors[pair_alert], catalog.vectors[pair_row])
    within = pair_sep <= catalog.spec.radius_arcsec
    pair_alert, pair_row, pair_sep = pair_alert[within], pair_row[within], pair_sep[within]
    ordering = np.lexsort((pair_row, pair_sep, pair_alert))
    pair_alert, pair_row, pair_sep = pair_alert[ordering], pair_row[ordering], pair_sep[ordering]
    first = np.ones(len(pair_alert), dtype=bool)
    first[1:] = pair_alert[1:] != pair_alert[:-1]
    rows[pair_alert[first]] = pair_row[first]
    seps[pair_alert[first]] = pair_sep[first]
    return rows, seps


def brute_force_nearest(catalog: Catalog, ra: float, dec: float) -> tuple[int, float]:
    """The reference: haversine separation to every source, argmin, within the radius;
    (-1, nan) if none. Independent of the bucket index and of the unit-vector formula."""
    ra1, dec1 = np.radians(ra), np.radians(dec)
    ra2, dec2 = np.radians(catalog.ra), np.radians(catalog.dec)
    h = (
        np.sin((dec2 - dec1) / 2.0) ** 2
        + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2.0) ** 2
    )
    seps = 2.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))) * _ARCSEC_PER_RAD
    row = int(np.argmin(seps))
    if seps[row] <= catalog.spec.radius_arcsec:
        return row, float(seps[row])
    return -1, float("nan")


def inside_ellipse(
    ra_deg: FloatArray,
    dec_deg: FloatArray,
    centre_ra: FloatArray,
    centre_dec: FloatArray,
    major_arcmin: FloatArray,
    minor_arcmin: FloatArray,
    pa_deg: FloatArray,
) -> NDArray[np.bool_]:
    """Whether each position lies inside the ellipse of full axes major x minor (arcmin) at
    position angle pa (east of north) around each centre. A missing minor axis or PA makes it a
    circle of the major axis; a missing major axis is False (callers report None)."""
    ra1, dec1 = np.radians(centre_ra), np.radians(centre_dec)
    ra2, dec2 = np.radians(ra_deg), np.radians(dec_deg)
    dra = ra2 - ra1
    # Position angle of the alert seen from the centre, east of north.
    theta = np.arctan2(
        np.sin(dra) * np.cos(dec2),
        np.cos(dec1) * np.sin(dec2) - np.sin(dec1) * np.cos(dec2) * np.cos(dra),
    )
    rho = separation_arcsec(unit_vectors(centre_ra, centre_dec), unit_vectors(ra_deg, dec_deg))
    circle = ~np.isfinite(minor_arcmin) | ~np.isfinite(pa_deg)
    a = major_arcmin * 30.0  # semi-axis in arcsec
    b = np.where(circle, a, minor_arcmin * 30.0)
    delta = theta - np.radians(np.where(circle, 0.0, pa_deg))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (rho * np.cos(delta) / a) ** 2 + (rho * np.sin(delta) / b) ** 2
    inside: NDArray[np.bool_] = np.isfinite(major_arcmin) & (major_arcmin > 0) & (value <= 1.0)
    return inside


def match_catalog(
    catalog: Catalog, ra_deg: FloatArray, dec_deg: FloatArray
) -> list[CatalogMatch | None]:
    """The nearest match (or None) for each valid position, as records."""
    rows, seps = nearest_matches(catalog, ra_deg, dec_deg)
    hit = np.flatnonzero(rows >= 0)
    inside: list[bool | None] = [None] * len(rows)
    if catalog.major_arcmin is not None and len(hit):
        r = rows[hit]
        nan = np.full(len(r), np.nan)
        flags = inside_ellipse(
            ra_deg[hit],
            dec_deg[hit],
            catalog.ra[r],
            catalog.dec[r],
            catalog.major_arcmin[r],
            nan if catalog.minor_arcmin is None else catalog.minor_arcmin[r],
            nan if catalog.pa_deg is None else catalog.pa_deg[r],
        )
        has_axes = np.isfinite(catalog.major_arcmin[r])
        for i, flag, known in zip(hit.tolist(), flags.tolist(), has_axes.tolist(), strict=True):
            inside[i] = flag if known else None
    out: list[CatalogMatch | None] = []
    names = catalog.spec.columns
    for i, (row, sep) in enumerate(zip(rows.tolist(), seps.tolist(), strict=True)):
        if row < 0:
            out.append(None)
            continue
        out.append(
            CatalogMatch(
                catalog=catalog.spec.name,
                id=catalog.ids[row],
                sep_arcsec=sep,
                columns=tuple((name, catalog.columns[name][row]) for name in names),
                inside_galaxy=inside[i],
            )
        )
    return out


def annotate_crossmatch(
    catalogs: Sequence[Catalog], ra_deg: FloatArray, dec_deg: FloatArray
) -> list[CrossMatch | AnnotationFailure]:
    """One :class:`CrossMatch` per position (every catalogue), or a failure for a bad position."""
    ra = np.asarray(ra_deg, np.float64)
    dec = np.asarray(dec_deg, np.float64)
    ok = valid_positions(ra, dec)
    good = np.flatnonzero(ok)
    ra_ok, dec_ok = ra[good] % 360.0, dec[good]
    per_catalog = [match_catalog(catalog, ra_ok, dec_ok) for catalog in catalogs]
    out: list[CrossMatch | AnnotationFailure] = [
        position_failure(STAGE, float(r), float(d)) for r, d in zip(ra, dec, strict=True)
    ]
    for j, i in enumerate(good.tolist()):
        out[i] = CrossMatch(
            tuple(
                (c.spec.name, matches[j]) for c, matches in zip(catalogs, per_catalog, strict=True)
            )
        )
    return out
