"""The catalogues the cross-match annotator matches against: configuration, loading, index.

Catalogues come from configuration (:class:`CatalogSpec`): Parquet, CSV, or the OpenNGC SQLite
database, with ``ra``/``dec``, an id and chosen columns. The default configuration reads the
shared catalogues from ``$ALERTFLOW_CATALOG_DIR`` or ``../shared/data/catalogs`` beside the
clone; nothing is copied into the repository. :func:`load_catalog` reads one, keeps the valid
positions and sorts it by NESTED HEALPix index at an order whose pixels are at least four match
radii across (:func:`bucket_order`), the index ``transforms.annotate.crossmatch`` searches.
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

from transforms.annotate.sky import unit_vectors, valid_positions
from transforms.annotation_model import CatalogFields, CatalogValue

MAX_RADIUS_ARCSEC = 3600.0
_MAX_BUCKET_ORDER = 16
_BUCKET_MARGIN = 4.0
ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0
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
    radius = radius_arcsec / ARCSEC_PER_RAD
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
