"""Annotation throughput on real alerts: batched numpy path versus a naive per-alert baseline.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_annotate.py [--alerts 10000] [--naive 300] [--batch 1000]
        [--repeats 5] [--out FILE]

Every real ZTF and LSST alert in the shared data folder is decoded once and cycled to
``--alerts`` alerts. For each annotator, one pass runs the batched path over all of them in
batches of ``--batch`` and the naive baseline over the first ``--naive`` (it is slow; its rate is
per alert all the same), in the same pass so both see the same machine state; the figure is the
median over ``--repeats`` passes. Baselines:

* sky: one astropy ``SkyCoord`` per alert (galactic, mean ecliptic) and healpy per alert;
* crossmatch: ``brute_force_nearest`` (haversine to every source) per alert per catalogue;
* dust: one ``SkyCoord`` per alert to galactic, then the map lookup;
* lightcurve: the same function called with one alert at a time;
* tags: rules are per alert by nature; only its cost is shown.

The whole stage (``annotate_batch`` with every annotator) is compared with the decode-only rate
of the same alerts' original bytes (``decode_message``), measured in the same run. One core.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import astropy.units as u  # noqa: E402
import healpy as hp  # noqa: E402
import numpy as np  # noqa: E402
from astropy.coordinates import SkyCoord  # noqa: E402

from tests.datapaths import real_alerts  # noqa: E402
from transforms.alert_model import Alert  # noqa: E402
from transforms.annotate import crossmatch, dust, lightcurve, sky, tags  # noqa: E402
from transforms.annotate.transform import (  # noqa: E402
    AnnotateConfig,
    Annotator,
    annotate_batch,
    load_annotators,
    only,
)
from transforms.decode import decode_message  # noqa: E402
from transforms.schemas import LsstSchemas  # noqa: E402


def _rate(fn: Callable[[], int]) -> float:
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start)


def _batches(alerts: Sequence[Alert], size: int) -> list[Sequence[Alert]]:
    return [alerts[i : i + size] for i in range(0, len(alerts), size)]


def _positions(batch: Sequence[Alert]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([a.ra for a in batch]), np.array([a.dec for a in batch])


def run(data: Path | None, n_alerts: int, n_naive: int, batch_size: int, repeats: int) -> str:
    schemas = LsstSchemas()
    real = real_alerts(data)
    alerts = [real[i % len(real)] for i in range(n_alerts)]
    naive = alerts[:n_naive]
    originals = [a.original for a in real]
    batches = _batches(alerts, batch_size)
    config = AnnotateConfig(max_batch_size=batch_size)
    loaded = load_annotators(config)
    dust_map = loaded.dust_map
    assert dust_map is not None
    inputs_only = only(AnnotateConfig(), Annotator.CROSSMATCH, Annotator.LIGHTCURVE)
    partial = annotate_batch(alerts[:batch_size], load_annotators(inputs_only))
    tag_inputs = [(r.alert, r.annotations) for r in partial]  # type: ignore[union-attr]

    def sky_batched() -> int:
        for b in batches:
            sky.annotate_sky(*_positions(b), config.sky)
        return len(alerts)

    def sky_naive() -> int:
        for a in naive:
            c = SkyCoord(a.ra * u.deg, a.dec * u.deg)
            g, e = c.galactic, c.barycentricmeanecliptic
            _ = (g.l.deg, g.b.deg, e.lon.deg, e.lat.deg)  # the conversions are the work
            hp.ang2pix(1 << config.sky.orders[0], a.ra, a.dec, nest=True, lonlat=True)
        return len(naive)

    def xm_batched() -> int:
        for b in batches:
            crossmatch.annotate_crossmatch(loaded.catalogs, *_positions(b))
        return len(alerts)

    def xm_naive() -> int:
        for a in naive:
            for catalog in loaded.catalogs:
                crossmatch.brute_force_nearest(catalog, a.ra, a.dec)
        return len(naive)

    def dust_batched() -> int:
        for b in batches:
            dust.annotate_dust(dust_map, *_positions(b))
        return len(alerts)

    def dust_naive() -> int:
        for a in naive:
            g = SkyCoord(a.ra * u.deg, a.dec * u.deg).galactic
            dust_map.values[hp.ang2pix(dust_map.nside, g.l.deg, g.b.deg, lonlat=True)]
        return len(naive)

    def lc_batched() -> int:
        for b in batches:
            lightcurve.annotate_lightcurves(b, config.lightcurve)
        return len(alerts)

    def lc_naive() -> int:
        for a in naive:
            lightcurve.annotate_lightcurves([a], config.lightcurve)
        return len(naive)

    def tags_only() -> int:
        for a, ann in tag_inputs:
            tags.tag_alert(a, ann, config.tags)
        return len(tag_inputs)

    def whole() -> int:
        for b in batches:
            annotate_batch(b, loaded)
        return len(alerts)

    def decode_only() -> int:
        for m in originals:
            decode_message(m, schemas)
        return len(originals)

    rows: list[tuple[str, str, Callable[[], int] | None, Callable[[], int]]] = [
        ("sky", "SkyCoord + healpy per alert", sky_naive, sky_batched),
        ("crossmatch (3 catalogues)", "brute force per alert", xm_naive, xm_batched),
        ("dust", "SkyCoord per alert + lookup", dust_naive, dust_batched),
        ("lightcurve", "same function, one alert per call", lc_naive, lc_batched),
        ("tags", "(per alert by nature)", None, tags_only),
        ("whole stage (all five)", "decode only, same alerts", decode_only, whole),
    ]
    results: dict[str, tuple[list[float], list[float]]] = {r[0]: ([], []) for r in rows}
    for _ in range(repeats):
        for name, _, base, fast in rows:
            if base is not None:
                results[name][0].append(_rate(base))
            results[name][1].append(_rate(fast))
    lines = [
        "| annotator | baseline | baseline alerts/s | alertflow alerts/s | alertflow µs/alert "
        "| ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, label, base, _ in rows:
        fast_rate = statistics.median(results[name][1])
        if base is None:
            lines.append(f"| {name} | {label} | - | {fast_rate:,.0f} | {1e6 / fast_rate:.1f} | - |")
            continue
        base_rate = statistics.median(results[name][0])
        lines.append(
            f"| {name} | {label} | {base_rate:,.0f} | {fast_rate:,.0f} | "
            f"{1e6 / fast_rate:.1f} | {fast_rate / base_rate:.2f} |"
        )
    cpus = os.cpu_count()
    lines.append("")
    lines.append(
        f"{len(real)} real alerts cycled to {n_alerts:,}; batches of {batch_size}; naive "
        f"baselines over {n_naive} alerts; median of {repeats} passes; Python "
        f"{platform.python_version()}, numpy {np.__version__}, healpy {hp.__version__}, "
        f"{platform.machine()} ({cpus} logical CPUs), one core."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="default: the shared data folder")
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    table = run(args.data, args.alerts, args.naive, args.batch, args.repeats)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
