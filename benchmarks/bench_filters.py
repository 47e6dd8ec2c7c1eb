"""Filter evaluation throughput: 1, 10, 100, 1000 filters on real alerts, with a same-run baseline.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_filters.py [--batch 10000] [--repeats 5] [--out FILE]

The filters are generated (seeded) the way users write them: 100 users with 10 filters each,
mixed shapes (bright/real/young cuts, target-list cones, HEALPix regions, band and magnitude
windows, solar-system, fast risers, S/N cuts, star-galaxy cuts, LSST-only regions), with round
parameter values from small grids, as people choose them. Every filter goes through the real
YAML loader and validator.

Measured on one core (this process, one thread), on every real alert in shared/data cycled to
``--batch`` alerts:

* alertflow: ``compile_filter_set(...).evaluate(batch)``, column extraction included; median of
  ``--repeats`` passes. Reported as alerts/s and as the ratio to the 1-filter rate.
* baseline: the same filters as per-alert Python closures (``compile_row_predicate``: one
  closure tree per filter, called for each alert and each filter), on a slice of the batch sized
  so each measurement takes about the same time. Reported as alerts/s, and alertflow / baseline.

Prints a markdown table; ``--out`` writes the report (with the command) to a file.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.datapaths import shared_data  # noqa: E402
from transforms.alert_model import Alert  # noqa: E402
from transforms.decode import decode_message  # noqa: E402
from transforms.filters.compile import compile_filter_set, scoped_expression  # noqa: E402
from transforms.filters.document import load_filters  # noqa: E402
from transforms.filters.model import Filter, FilterSet  # noqa: E402
from transforms.filters.reference import compile_row_predicate  # noqa: E402
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas  # noqa: E402

COUNTS = (1, 10, 100, 1000)

NOTES = """\
What is measured: `compile_filter_set(FilterSet(...)).evaluate(batch)` on one core, column
extraction from the alert model included (annotation columns are not used by these filters).
The filters are generated (seeded) as 100 users x 10 filters in ten shapes: bright/real/young
cuts, target lists of 1-20 cones, HEALPix regions of 5-200 pixels, band and magnitude windows,
solar-system cuts, fast risers, S/N cuts, star/galaxy cuts, LSST-only |dec| bands and
magnitude-jump cuts, with round parameter values as people choose them; all go through the YAML
loader and validator. The baseline is the same filters as per-alert Python closure trees
(`compile_row_predicate`, the reference interpreter of the tests), called for every alert and
every filter, measured on a slice of the same batch in the same run.

Reading it: the goal of issue 4 is >= 1,100 alerts/s per core with 1,000 filters (the LSST
peak-visit rate). A single filter is cheaper as a closure (it short-circuits per alert and
extracts no columns); from 10 filters on the column-wise set wins, by a factor that grows with
the number of filters, because shared sub-expressions (the same fields, the same cuts) are
computed once per batch. The cost that does not shrink with sharing: the history summary (one
Python pass over each alert's history, about 15 us per alert), one numpy pass per distinct cone
(only over the alerts in its declination band, found by binary search) and one `isin` per
HEALPix region. The machine is shared with other work, so absolute rates move between runs; the
ratios are the stable part.
"""


def real_alerts() -> list[Alert]:
    data = shared_data()
    schemas = LsstSchemas(DEFAULT_LSST_SCHEMA_DIR)
    files = sorted((data / "ztf" / "alerts").glob("*/*.avro")) + sorted(
        (data / "lsst" / "alerts").glob("*.avro")
    )
    return [a for path in files for a in decode_message(path.read_bytes(), schemas)]


def _where(
    shape: int, rng: np.random.Generator, positions: list[tuple[float, float]]
) -> tuple[str, str]:
    """(where, extra spec lines) for one generated filter of the given shape."""
    pick = lambda values: values[int(rng.integers(len(values)))]  # noqa: E731
    if shape == 0:
        return (
            f"is_positive and mag < {pick([17, 17.5, 18, 18.5, 19])} and reliability > "
            f"{pick([0.5, 0.7, 0.8, 0.9])}"
            f" and history.age_days < {pick([1, 2, 3, 5, 10])}"
            " and solar_system.name is null",
            "",
        )
    if shape == 1:
        cones = []
        for _ in range(int(rng.integers(1, 21))):
            ra, dec = (
                positions[int(rng.integers(len(positions)))]
                if rng.random() < 0.3
                else (float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1)))))
            )
            cones.append(f"cone({ra:.5f}, {dec:.5f}, {pick([2, 5, 10, 30])})")
        return " or ".join(cones), ""
    if shape == 2:
        nside = pick([32, 64, 128])
        pixels = sorted(
            {int(p) for p in rng.integers(0, 12 * nside * nside, int(rng.integers(5, 200)))}
        )
        return f"healpix_in({nside}, {pixels})", ""
    if shape == 3:
        bands = pick([["'g'"], ["'r'"], ["'g'", "'r'"], ["'i'", "'z'"]])
        low = pick([14, 15, 16, 17])
        return f"band in [{', '.join(bands)}] and mag between {low} and {low + pick([2, 3, 4])}", ""
    if shape == 4:
        return f"solar_system.name is not null and solar_system.mag < {pick([18, 19, 20])}", ""
    if shape == 5:
        return (
            f"is_positive and history.rise_rate > {pick([0.05, 0.1, 0.2, 0.5])} and mag_err < 0.2",
            "",
        )
    if shape == 6:
        return (
            f"(flux is null or flux / flux_err > {pick([5, 10, 20])}) and reliability > "
            f"{pick([0.5, 0.8])}",
            "",
        )
    if shape == 7:
        return (
            f"nearest_star.star_galaxy_score < {pick([0.3, 0.5])} and "
            f"nearest_star.distance_arcsec < {pick([1, 2, 5])}"
            f" and mag < {pick([18, 19, 20])}",
            "",
        )
    if shape == 8:
        return (
            f"abs(dec) < {pick([5, 10, 20])} and reliability > {pick([0.1, 0.5])}",
            "  surveys: [lsst]\n",
        )
    return (
        f"abs(mag - history.previous_mag) > {pick([0.5, 1, 2])} and history.n_detections >= "
        f"{pick([2, 3, 5])}",
        "",
    )


def generated_filters(count: int, alerts: list[Alert], seed: int = 20261128) -> tuple[Filter, ...]:
    """``count`` filters: users of 10 filters each, shapes cycling through all ten."""
    rng = np.random.default_rng(seed)
    positions = [(a.ra, a.dec) for a in alerts]
    docs = []
    for i in range(count):
        where, extra = _where(i % 10, rng, positions)
        docs.append(
            "apiVersion: alertflow/v1\nkind: Filter\nmetadata: "
            f"{{name: user{i // 10}-f{i % 10}, owner: user{i // 10}}}\n"
            f'spec:\n{extra}  where: "{where}"\n'
        )
    return load_filters("---\n".join(docs))


def time_evaluator(
    filters: tuple[Filter, ...], batch: list[Alert], repeats: int
) -> tuple[float, float, int]:
    """(alerts/s, compile seconds, slots) of the compiled set; median of ``repeats``."""
    t0 = time.perf_counter()
    compiled = compile_filter_set(FilterSet(1, filters))
    compile_s = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        compiled.evaluate(batch)
        runs.append(time.perf_counter() - t0)
    return len(batch) / statistics.median(runs), compile_s, compiled.slot_count


def time_baseline(
    filters: tuple[Filter, ...], batch: list[Alert], budget_calls: int = 400_000
) -> float:
    """Alerts/s of per-alert closures, every filter on every alert of a slice of the batch."""
    predicates = [compile_row_predicate(scoped_expression(f)) for f in filters]
    n = max(50, min(len(batch), budget_calls // len(filters)))
    sample = batch[:n]
    t0 = time.perf_counter()
    for alert in sample:
        for predicate in predicates:
            predicate(alert)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    alerts = real_alerts()
    batch = [alerts[i % len(alerts)] for i in range(args.batch)]
    all_filters = generated_filters(max(COUNTS), alerts)
    rows = []
    base_rate = None
    for count in COUNTS:
        filters = all_filters[:count]
        rate, compile_s, slots = time_evaluator(filters, batch, args.repeats)
        base_rate = base_rate or rate
        baseline = time_baseline(filters, batch)
        rows.append((count, slots, compile_s, rate, rate / base_rate, baseline, rate / baseline))
        print(f"{count} filters: {rate:,.0f} alerts/s", file=sys.stderr)

    lines = [
        "| filters | distinct sub-expressions | compile s | alertflow alerts/s | ratio to 1 filter "
        "| per-alert closures alerts/s | alertflow / closures |",
        "|---|---|---|---|---|---|---|",
    ]
    for count, slots, compile_s, rate, ratio, baseline, speedup in rows:
        lines.append(
            f"| {count:,} | {slots:,} | {compile_s:.3f} | {rate:,.0f} | {ratio:.3f} | "
            f"{baseline:,.0f} | {speedup:,.1f} |"
        )
    table = "\n".join(lines)
    machine = (
        f"Python {platform.python_version()}, numpy {np.__version__}, {platform.machine()} "
        f"({os.cpu_count()} logical CPUs), one core; {len(alerts)} real alerts cycled to a batch "
        "of "
        f"{len(batch):,}; median of {args.repeats} passes."
    )
    print(table)
    print(machine)
    if args.out:
        command = "    .venv/bin/python benchmarks/bench_filters.py " + " ".join(
            ["--batch", str(args.batch), "--repeats", str(args.repeats), "--out", str(args.out)]
        )
        args.out.write_text(
            "# Filter evaluation throughput (issue 4)\n\nCommand (from the repository root):\n\n"
            f"{command}\n\n{table}\n\n{machine}\n\n{NOTES}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
