"""Avro writer schemas for the alert streams, resolved and compiled once (STYLE.md rule 4).

Rubin (LSST) alerts arrive in Confluent wire format with a schema id ``major * 100 + minor``.
:class:`LsstSchemas` resolves an id to its writer schema from a local directory (by default the
copies shipped in ``transforms/lsst_schemas``) and, when configured, from a Confluent-compatible
schema registry (``GET {url}/schemas/ids/{id}``). ZTF packets carry their writer schema in the
Avro container header; :func:`container_schema` turns the header's schema text into a reader
once per distinct text. Each is compiled with the projection of its survey
(:data:`ZTF_PROJECTION`, :data:`LSST_PROJECTION`: the fields the alert model reads) by
``transforms.avro_projection``.

Every failure here raises :class:`SchemaError` (resolution, unsupported schema); the compiled
readers raise one of ``avro_projection.DECODE_ERRORS`` on bytes that do not match their schema.
``transforms.decode`` turns both into dead letters.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro.schema import load_schema

from transforms.avro_projection import (
    Projection,
    ProjectionReader,
    SchemaError,
    compile_projection,
)

#: Where the Rubin schemas shipped with alertflow live: ``lsst.vX_Y/lsst.vX_Y.alert.avsc``.
DEFAULT_LSST_SCHEMA_DIR = Path(__file__).resolve().parent / "lsst_schemas"

# Fields of the ZTF packet that the alert model reads (transforms.packets maps them).
ZTF_PROJECTION: Projection = {
    "alert": frozenset(
        {
            "schemavsn",
            "objectId",
            "candid",
            "candidate",
            "prv_candidates",
            "fp_hists",
            "cutoutScience",
            "cutoutTemplate",
            "cutoutDifference",
        }
    ),
    "candidate": frozenset(
        {
            "jd",
            "fid",
            "candid",
            "isdiffpos",
            "ra",
            "dec",
            "magpsf",
            "sigmapsf",
            "rb",
            "drb",
            "ssdistnr",
            "ssmagnr",
            "ssnamenr",
            "sgscore1",
            "distpsnr1",
            "srmag1",
            # Their names before ZTF schema 1.8 (which added the second and third PS1 source).
            "sgscore",
            "srmag",
            "programid",
        }
    ),
    "prv_candidate": frozenset(
        {"jd", "fid", "candid", "isdiffpos", "ra", "dec", "magpsf", "sigmapsf", "diffmaglim"}
    ),
    "fp_hist": frozenset(
        {"jd", "fid", "forcediffimflux", "forcediffimfluxunc", "magzpsci", "diffmaglim"}
    ),
    "cutout": frozenset({"stampData"}),
}

# Fields of the Rubin packet that the alert model reads, under every name they had from v3.0
# (psFlux, filterName, midPointTai, decl) to v11.1 (psfFlux, band, midpointMjdTai, dec): the
# photometry every source row has, and what only the triggering source or forced photometry has.
_LSST_PHOTOMETRY_FIELDS = frozenset(
    {
        "diaObjectId",
        "ra",
        "dec",
        "decl",
        "psfFlux",
        "psFlux",
        "psfFluxErr",
        "psFluxErr",
        "band",
        "filterName",
        "midpointMjdTai",
        "midPointTai",
    }
)
LSST_PROJECTION: Projection = {
    "alert": frozenset(
        {
            "alertId",
            "diaSourceId",
            "diaSource",
            "prvDiaSources",
            "prvDiaForcedSources",
            "prvDiaNondetectionLimits",
            "ssSource",
            "ssObject",
            "diaObject",
            "cutoutDifference",
            "cutoutScience",
            "cutoutTemplate",
        }
    ),
    "diaSource": _LSST_PHOTOMETRY_FIELDS | {"diaSourceId", "ssObjectId", "reliability"},
    "diaForcedSource": _LSST_PHOTOMETRY_FIELDS | {"diaForcedSourceId"},
    "diaNondetectionLimit": frozenset(
        {"midpointMjdTai", "midPointTai", "band", "filterName", "diaNoise"}
    ),
    "ssSource": frozenset({"ssObjectId", "designation"}),
    "ssObject": frozenset({"ssObjectId", "designation"}),
    # Kept in the projection (not dropped from "alert") only so that its presence is known;
    # none of its ~80 fields is decoded.
    "diaObject": frozenset(),
    "MPCORB": frozenset(),
    "mpc_orbits": frozenset(),
}


# --------------------------------------------------------------------------------------------
# ZTF: writer schema embedded in each packet
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A writer schema and its projecting reader, cached per distinct schema.

    ``name`` is the top-level record's full name (``ztf.alert``, ``lsst.v9_0.alert``);
    ``writer`` is the schema as JSON-like data (used to re-encode and for fastavro baselines);
    ``version`` is the top-level ``"version"`` attribute of the schema if it has one as a string
    (ZTF schemas name their version there: packets of ZTF 1.x have no ``schemavsn`` field).
    """

    name: str
    writer: Mapping[str, Any]
    reader: ProjectionReader
    version: str | None = None


def _record_name(schema: Any) -> str:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaError("the writer schema's top level is not an Avro record")
    name = str(schema.get("name", ""))
    ns = schema.get("namespace")
    return name if "." in name or not ns else f"{ns}.{name}"


@functools.lru_cache(maxsize=64)
def container_schema(schema_text: bytes) -> CompiledSchema:
    """Parse and compile the writer schema from an Avro container header, once per text.

    The projection is chosen from the schema's name: ``ztf.alert`` gets :data:`ZTF_PROJECTION`,
    ``lsst.vX_Y.alert`` gets :data:`LSST_PROJECTION`; a ZTF schema of any version (1.x has no
    ``schemavsn``, ``drb`` came in 3.3, ``fp_hists`` in 4.01) compiles: the projection skips
    the fields a version lacks. The schema's ``"version"`` attribute is kept. The cache is
    bounded so that a stream of garbage schemas cannot grow memory without limit. Raises
    :class:`SchemaError`.
    """
    try:
        writer = json.loads(schema_text)
    except (ValueError, UnicodeDecodeError) as err:
        raise SchemaError(f"container header's avro.schema is not valid JSON: {err}") from err
    name = _record_name(writer)
    if name == "ztf.alert":
        projection = ZTF_PROJECTION
    elif LSST_VERSION_PATTERN.fullmatch(name):
        projection = LSST_PROJECTION
    else:
        raise SchemaError(
            f"container schema is {name!r}; expected 'ztf.alert' or 'lsst.vX_Y.alert'"
        )
    version = writer.get("version")
    return CompiledSchema(
        name=name,
        writer=writer,
        reader=compile_projection(writer, projection),
        version=version if isinstance(version, str) and version else None,
    )


# --------------------------------------------------------------------------------------------
# LSST: schema ids resolved from a directory or a registry
# --------------------------------------------------------------------------------------------

#: ``lsst.v9_0.alert`` -> groups (9, 0).
LSST_VERSION_PATTERN = re.compile(r"lsst\.v(\d+)_(\d+)\.alert")


def lsst_schema_id(major: int, minor: int) -> int:
    """The Confluent schema id Rubin uses for schema version major.minor (7.4 -> 704)."""
    return major * 100 + minor


def lsst_version(schema_id: int) -> str:
    """The schema version string for an id (704 -> '7.4')."""
    return f"{schema_id // 100}.{schema_id % 100}"


class LsstSchemas:
    """Resolves Rubin schema ids to compiled writer schemas; thread-safe, cached.

    Lookup order for an id: the local directory (``lsst.vX_Y/lsst.vX_Y.alert.avsc`` with the
    named types beside it), then the registry if ``registry_url`` is set. Successful lookups are
    cached for the life of the object; failures are not cached for the registry (it may come
    back), and are cheap for the directory. The object pickles without its cache, so Beam ships
    only the directory and URL to the workers.
    """

    def __init__(
        self,
        directory: Path | str = DEFAULT_LSST_SCHEMA_DIR,
        registry_url: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.directory = Path(directory)
        self.registry_url = registry_url.rstrip("/") if registry_url else None
        self.timeout_s = timeout_s
        self._cache: dict[int, CompiledSchema] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "registry_url": self.registry_url,
            "timeout_s": self.timeout_s,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def known_ids(self) -> list[int]:
        """Schema ids available in the local directory, ascending."""
        ids = []
        for child in self.directory.glob("lsst.v*_*"):
            match = re.fullmatch(r"lsst\.v(\d+)_(\d+)", child.name)
            if match and (child / f"{child.name}.alert.avsc").is_file():
                ids.append(lsst_schema_id(int(match[1]), int(match[2])))
        return sorted(ids)

    def get(self, schema_id: int) -> CompiledSchema:
        """The compiled schema for ``schema_id``. Raises :class:`SchemaError` with the remedy."""
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._cache.get(schema_id)
            if cached is None:
                cached = self._load(schema_id)
                self._cache[schema_id] = cached
        return cached

    def _load(self, schema_id: int) -> CompiledSchema:
        major, minor = divmod(schema_id, 100)
        name = f"lsst.v{major}_{minor}"
        path = self.directory / name / f"{name}.alert.avsc"
        if path.is_file():
            try:
                writer = load_schema(str(path), _write_hint=False)
            except (ValueError, KeyError, OSError) as err:
                raise SchemaError(f"schema file {path} does not load: {err}") from err
        elif self.registry_url is not None:
            writer = self._fetch(schema_id)
        else:
            raise SchemaError(
                f"unknown LSST schema id {schema_id} (version {lsst_version(schema_id)}): "
                f"no {name}/{name}.alert.avsc in {self.directory} (known ids: "
                f"{', '.join(map(str, self.known_ids())) or 'none'}) and no schema registry "
                "configured; add the schema folder or set a registry URL"
            )
        record_name = _record_name(writer)
        assert isinstance(writer, dict), "_record_name accepts only a record"
        return CompiledSchema(
            name=record_name,
            writer=writer,
            reader=compile_projection(writer, LSST_PROJECTION),
        )

    def _fetch(self, schema_id: int) -> Any:
        """The schema the registry has under ``schema_id``, as JSON data (not checked here)."""
        url = f"{self.registry_url}/schemas/ids/{schema_id}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                payload = json.load(response)
            schema = payload["schema"]
            return json.loads(schema) if isinstance(schema, str) else schema
        except urllib.error.HTTPError as err:
            raise SchemaError(
                f"schema registry {self.registry_url} answered {err.code} for schema id "
                f"{schema_id}; register the schema or check the id"
            ) from err
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise SchemaError(
                f"schema registry {self.registry_url} unreachable for schema id {schema_id}: "
                f"{err}; the message can be replayed from the dead-letter topic"
            ) from err
        except (ValueError, KeyError, TypeError) as err:
            raise SchemaError(
                f"schema registry {self.registry_url} sent no usable schema for id "
                f"{schema_id}: {err}"
            ) from err
