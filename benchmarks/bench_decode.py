"""Decode throughput of real ZTF and LSST packets: alertflow versus plain fastavro, same run.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_decode.py [--repeats 7] [--data ../shared/data] [--out FILE]

Measures alerts/s on one core (this process, one thread) as the median of ``--repeats`` passes
over every real packet in the data folder, the baselines first in each pass so both see the same
machine state:

* ZTF: every real ZTF packet (one-alert Avro containers). Baseline: a naive
  ``fastavro.reader`` per message (parses the embedded schema and builds every field).
  alertflow: ``decode_ztf`` to the full alert model. Goal: ratio >= 2.
* LSST: every real Rubin packet in Confluent wire format (the original wire-format messages plus
  the batched files re-framed as wire messages). Baseline: ``fastavro.schemaless_reader`` on the
  body with the parsed writer schema reused. alertflow: ``decode_lsst_wire`` to the full alert
  model. Goal: ratio >= 0.8.

Prints a markdown table; ``--out`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import fastavro  # noqa: E402
from fastavro import parse_schema, schemaless_reader  # noqa: E402

from transforms.decode import decode_container, decode_lsst_wire, decode_ztf  # noqa: E402
from transforms.schemas import LsstSchemas  # noqa: E402


def _default_data() -> Path:
    env = os.environ.get("ALERTFLOW_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _rate(fn: Callable[[], int]) -> float:
    """Alerts/s of one call of ``fn``, which returns how many alerts it decoded."""
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start)


def _ztf_messages(data: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((data / "ztf" / "alerts").glob("*/*.avro"))]


def _lsst_messages(data: Path, schemas: LsstSchemas) -> list[bytes]:
    messages = [
        p.read_bytes() for p in sorted((data / "lsst" / "alerts" / "wire_format").glob("*.bin"))
    ]
    for path in sorted((data / "lsst" / "alerts").glob("*.avro")):
        messages.extend(alert.original for alert in decode_container(path, schemas))
    return messages


def run(data: Path, repeats: int) -> str:
    schemas = LsstSchemas()
    ztf = _ztf_messages(data)
    lsst = _lsst_messages(data, schemas)
    writers = {}
    for message in lsst:
        schema_id = int.from_bytes(message[1:5], "big")
        if schema_id not in writers:
            writers[schema_id] = parse_schema(dict(schemas.get(schema_id).writer))

    def ztf_naive() -> int:
        for message in ztf:
            for _ in fastavro.reader(io.BytesIO(message)):
                pass
        return len(ztf)

    def ztf_ours() -> int:
        for message in ztf:
            decode_ztf(message)
        return len(ztf)

    def lsst_fastavro() -> int:
        for message in lsst:
            schemaless_reader(
                io.BytesIO(message[5:]), writers[int.from_bytes(message[1:5], "big")], None
            )
        return len(lsst)

    def lsst_ours() -> int:
        for message in lsst:
            decode_lsst_wire(message, schemas)
        return len(lsst)

    # Warm caches (parsed/compiled schemas) outside the timed passes, for both sides.
    ztf_ours(), lsst_ours(), lsst_fastavro()
    results: dict[str, list[float]] = {name: [] for name in ("zb", "zo", "lb", "lo")}
    for _ in range(repeats):
        for key, fn in (
            ("zb", ztf_naive),
            ("zo", ztf_ours),
            ("lb", lsst_fastavro),
            ("lo", lsst_ours),
        ):
            results[key].append(_rate(fn))
    med = {key: statistics.median(values) for key, values in results.items()}

    def size(messages: Sequence[bytes]) -> int:
        return int(statistics.median(len(m) for m in messages))

    rows = [
        "| survey | packets | median bytes | baseline | baseline alerts/s | alertflow alerts/s "
        "| ratio | goal |",
        "|---|---|---|---|---|---|---|---|",
        f"| ZTF | {len(ztf)} | {size(ztf)} | naive `fastavro.reader` per message | "
        f"{med['zb']:,.0f} | {med['zo']:,.0f} | {med['zo'] / med['zb']:.2f} | >= 2 |",
        f"| LSST | {len(lsst)} | {size(lsst)} | `fastavro.schemaless_reader` on the body | "
        f"{med['lb']:,.0f} | {med['lo']:,.0f} | {med['lo'] / med['lb']:.2f} | >= 0.8 |",
    ]
    machine = (
        f"Python {platform.python_version()}, fastavro {fastavro.__version__}, "
        f"{platform.machine()} ({os.cpu_count()} logical CPUs), one core, "
        f"median of {repeats} passes"
    )
    return "\n".join(rows) + f"\n\n{machine}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_default_data())
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    table = run(args.data, args.repeats)
    print(table)
    if args.out:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
