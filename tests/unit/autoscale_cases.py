"""What the decision-engine tests share: a policy, observations built from a few numbers, the
TaskManagers of a cluster, and the JSON view of the benchmark's ineffective scale-up (which the
service's tests meet again through ``GET /api/v1/scaling``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flink_deploy.autoscaler.decide import Autoscaler
from flink_deploy.autoscaler.model import (
    Decision,
    Observation,
    Policy,
    Profile,
    ScaleDown,
    ScaleUp,
    TaskManager,
)

#: The policy the rules are tested with; ``scaler(**changes)`` replaces its top-level fields.
POLICY = Policy(
    interval_s=5.0,
    min_taskmanagers=1,
    max_taskmanagers=3,
    sustain=3,
    cooldown_up_s=30.0,
    cooldown_down_s=60.0,
    profiles=(Profile("small", 2, "3072m"), Profile("large", 4, "5120m")),
    scale_up=ScaleUp(
        lag_above=5000,
        busy_above_ms_per_s=800.0,
        backpressure_above_ms_per_s=500.0,
        profile="small",
        large_profile="large",
        large_lag_above=50000,
    ),
    scale_down=ScaleDown(lag_below=500, busy_below_ms_per_s=300.0, remove="newest"),
)

HIGH, MID, LOW = 12_345, 2_000, 100


def obs(
    lag: int | None = MID,
    busy: float | None = None,
    pressure: float | None = 0.0,
    state: str | None = "RUNNING",
    parallelism: int = 2,
    **extra: Any,
) -> Observation:
    running = state == "RUNNING"
    tasks = {
        "tasks_running": 2 if running else 0,
        "tasks_total": 2 if running else 0,
        "taskmanagers": 1,
    }
    return Observation(
        timestamp=0.0,
        lag_total=lag,
        busy_max_ms_per_s=busy,
        backpressure_max_ms_per_s=pressure,
        job_state=state,
        parallelism=parallelism if running else 0,
        **{**tasks, **extra},
    )


def tms(*profiles: str) -> list[TaskManager]:
    return [TaskManager(f"tm-{i + 1}", p) for i, p in enumerate(profiles)]


def scaler(policy: Policy = POLICY, **changes: Any) -> Autoscaler:
    return Autoscaler(replace(policy, **changes))


Steps = list[tuple[float, Observation, list[TaskManager]]]


def run(autoscaler: Autoscaler, steps: Steps) -> list[Decision]:
    return [autoscaler.decide(o, cluster, now) for now, o, cluster in steps]


def actions(decisions: list[Decision]) -> list[str]:
    return [d.action for d in decisions]


INEFFECTIVE = (
    "the last scale-up (1 -> 2 TaskManagers) took throughput from 218 to 203 alerts/s "
    "(< +10%): no scale-up for 600 s"
)


def ineffective_check(start: float) -> dict[str, Any]:
    """The JSON view of the benchmark's scale-up, decided at ``start`` + 10 on 218 alerts/s
    and judged ineffective on 200, 203 and 206 alerts/s at ``start`` + 40 (min_gain 0.1,
    ineffective_hold_s 600)."""
    return {
        "decided_at": start + 10,
        "taskmanagers_before": 1,
        "taskmanagers_after": 2,
        "parallelism_before": 2,
        "min_gain": 0.1,
        "rate_before_per_s": 218.0,
        "rate_after_per_s": 203.0,
        "observations_after": 3,
        "verdict": "ineffective",
        "reason": INEFFECTIVE,
        "judged_at": start + 40,
        "blocked_until": start + 640,
    }
