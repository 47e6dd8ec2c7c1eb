"""Where the shared alert data lives, and its alerts decoded, for tests and benchmarks.

The repository is cloned with ``shared/`` beside it (developers and CI alike), so the data is
``<clone>/../shared/data``; ``ALERTFLOW_SHARED_DATA`` points elsewhere when that is not so.
"""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

from transforms.alert_model import Alert
from transforms.decode import decode_message
from transforms.schemas import LsstSchemas

_SIBLING = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data() -> Path:
    """The shared data folder; raises FileNotFoundError saying how to point at it."""
    for candidate in (_SIBLING, Path(os.environ.get("ALERTFLOW_SHARED_DATA", "")).expanduser()):
        if str(candidate) and (candidate / "ztf").is_dir() and (candidate / "lsst").is_dir():
            return candidate
    raise FileNotFoundError(
        f"shared alert data not found at {_SIBLING}; clone the repository beside shared/ "
        "or set ALERTFLOW_SHARED_DATA to the data folder"
    )


@functools.cache
def real_alerts(data: Path | None = None) -> tuple[Alert, ...]:
    """Every sample alert, decoded with the shipped schemas: the ZTF packets (ztf/alerts/*/),
    then the LSST containers (lsst/alerts/), each folder in sorted order. ``data``: the shared
    data folder (default :func:`shared_data`)."""
    data = shared_data() if data is None else data
    schemas = LsstSchemas()
    files = [
        *sorted((data / "ztf" / "alerts").glob("*/*.avro")),
        *sorted((data / "lsst" / "alerts").glob("*.avro")),
    ]
    return tuple(alert for path in files for alert in decode_message(path.read_bytes(), schemas))


def ztf_index() -> list[dict[str, str]]:
    """Rows of ztf/ztf_alerts_index.csv (paths relative to data/ztf)."""
    with (shared_data() / "ztf" / "ztf_alerts_index.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def lsst_index() -> list[dict[str, str]]:
    """Rows of lsst/lsst_alerts_index.csv (paths relative to data/lsst)."""
    with (shared_data() / "lsst" / "lsst_alerts_index.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))
