"""The dry run of a filter (``POST /api/v1/filters/{name}/test``, ``filters test``) on the
control service's reference alerts: what running the annotators the filter names costs.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_dry_run.py [--repeats 7]

The reference set is the service's default (the real LSST and ZTF alerts of the shared data
folder, at most 2,000), decoded once. The first runner loads the annotators (catalogues and
dust map) once for the service; after that, each dry run annotates with only what its filter
names. Timed, median over ``--repeats``, in the same run on the same alerts: the dry run of
``examples/filters/nuclear-transients.yaml`` (crossmatch and dust) against the baseline of
``bright-young-transients.yaml``, which names no annotator.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from control_service.config import load_config  # noqa: E402
from control_service.filters_api import ReferenceAlerts  # noqa: E402
from transforms.filters.document import load_filter_file  # noqa: E402
from transforms.filters.model import FilterSet  # noqa: E402

FILTER = REPO / "examples" / "filters" / "nuclear-transients.yaml"
BASELINE = REPO / "examples" / "filters" / "bright-young-transients.yaml"


def median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    config = load_config(env={})
    reference = ReferenceAlerts(config.reference_alerts, config.reference_max_alerts)
    started = time.perf_counter()
    alerts = reference.alerts()
    decoded_s = time.perf_counter() - started
    filter_set = FilterSet(0, load_filter_file(str(FILTER)))
    started = time.perf_counter()
    reference.runner(filter_set)
    loaded_s = time.perf_counter() - started
    dry_run = median_ms(lambda: reference.runner(filter_set).evaluate(alerts), args.repeats)
    plain = FilterSet(0, load_filter_file(str(BASELINE)))
    baseline = median_ms(lambda: reference.runner(plain).evaluate(alerts), args.repeats)
    print(f"reference alerts: {len(alerts)}, decoded once in {decoded_s:.2f} s")
    print(f"annotators loaded once, on the first dry run: {loaded_s:.2f} s")
    print(f"dry run of {FILTER.name} (crossmatch, dust): median {dry_run:.1f} ms")
    print(
        f"baseline, {BASELINE.name} (no annotator): median {baseline:.1f} ms "
        f"(dry run / baseline = {dry_run / baseline:.1f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
