"""The effectiveness of a scale-up (rule 8 of decide.py): the throughput before and after,
the verdict, what it blocks, and when a scale-up cannot be measured."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from flink_deploy.autoscaler.decide import Autoscaler
from flink_deploy.autoscaler.model import Observation, ScaleUpCheck, TaskManager
from tests.unit.autoscale_cases import (
    HIGH,
    LOW,
    POLICY,
    actions,
    ineffective_check,
    obs,
    run,
    scaler,
    tms,
)

# --- scale-up effectiveness ------------------------------------------------------------------

GAIN = replace(POLICY, scale_up=replace(POLICY.scale_up, min_gain=0.1, ineffective_hold_s=600.0))


def gain_scaler(**changes: Any) -> Autoscaler:
    """POLICY with min_gain 0.1 and ineffective_hold_s 600 (and ``changes``)."""
    return scaler(GAIN, **changes)


def loaded(
    rate: float | None,
    parallelism: int = 2,
    lag: int | None = HIGH,
    fresh: bool | None = True,
    **extra: Any,
) -> Observation:
    """A running job with ``lag`` whose committed offsets grew ``rate`` alerts/s."""
    return obs(
        lag=lag,
        parallelism=parallelism,
        records_out_per_s=rate,
        checkpointed_since_restore=fresh,
        **extra,
    )


ONE, TWO, THREE = tms("small"), tms("small", "small"), tms("small", "small", "small")

# 1 -> 2 TaskManagers at t=10 on the benchmark's 218 alerts/s (the first observation's rate
# is not counted: nothing fresh before it), the restart, the stale lag, and the first fresh
# observation after it, whose rate spans the stale offsets (not counted either).
SCALE_UP_AT_10 = [
    (0, loaded(999.0), ONE),
    (5, loaded(218.0), ONE),
    (10, loaded(218.0), ONE),
    (15, loaded(None, state="RESTARTING"), TWO),
    (20, loaded(0.0, parallelism=4, fresh=False), TWO),
    (25, loaded(1_800.0, parallelism=4), TWO),
]


def after(
    *rates: float, start: float = 30, cluster: list[TaskManager] = TWO, **kwargs: Any
) -> list[tuple[float, Observation, list[TaskManager]]]:
    kwargs.setdefault("parallelism", 4)
    return [(start + 5 * i, loaded(rate, **kwargs), cluster) for i, rate in enumerate(rates)]


def check_of(autoscaler: Autoscaler) -> ScaleUpCheck:
    assert autoscaler.last_scale_up is not None
    return autoscaler.last_scale_up


@pytest.mark.parametrize(
    ("rates", "verdict", "reason"),
    [
        (
            (200.0, 203.0, 206.0),
            "ineffective",  # the benchmark: one TaskManager was as good
            "the last scale-up (1 -> 2 TaskManagers) took throughput from 218 to 203 alerts/s "
            "(< +10%): no scale-up for 600 s",
        ),
        (
            (230.0, 240.0, 240.0),
            "ineffective",
            "the last scale-up (1 -> 2 TaskManagers) took throughput from 218 to 237 alerts/s "
            "(< +10%): no scale-up for 600 s",
        ),
        (
            (239.8, 239.8, 239.8),
            "effective",  # exactly +10%
            "the last scale-up (1 -> 2 TaskManagers) took throughput from 218 to 240 alerts/s "
            "(>= +10%): effective",
        ),
        (
            (250.0, 262.0, 274.0),
            "effective",
            "the last scale-up (1 -> 2 TaskManagers) took throughput from 218 to 262 alerts/s "
            "(>= +10%): effective",
        ),
    ],
)
def test_effectiveness_verdict(rates: tuple[float, ...], verdict: str, reason: str) -> None:
    for max_taskmanagers in (3, 2):  # at 2, an effective verdict is not followed by an up
        autoscaler = gain_scaler(max_taskmanagers=max_taskmanagers)
        decisions = run(autoscaler, [*SCALE_UP_AT_10, *after(*rates[:2])])
        assert actions(decisions) == ["hold", "hold", "up"] + ["hold"] * 5
        # the up-streak restarted after the stale lag: at 35 s it is sustained, but waits
        waiting = "but waiting for the verdict on the last scale-up (1 -> 2 TaskManagers)"
        assert decisions[-1].reason == (
            f"lag 12,345 > 5,000 for 3 observations, {waiting}: 2 of 3 observations"
            if max_taskmanagers == 3
            else "lag 12,345 > 5,000 for 3 observations, but already at max_taskmanagers 2"
        )
        measuring = check_of(autoscaler)
        assert (measuring.verdict, measuring.rate_before, measuring.rates_after) == (
            "measuring",
            218.0,
            rates[:2],
        )
        [last] = run(autoscaler, after(rates[2], start=40))
        check = check_of(autoscaler)
        if verdict == "ineffective":
            assert (check.verdict, check.reason, check.judged_at) == (verdict, reason, 40)
            assert (check.rates_after, check.blocked_until) == (rates, 640)
            assert (last.action, last.reason) == (
                "hold",
                "lag 12,345 > 5,000 for 4 observations, "
                + (
                    f"but {reason} (600 s left)"
                    if max_taskmanagers == 3
                    else f"but already at max_taskmanagers 2; {reason}"
                ),
            )
        elif max_taskmanagers == 2:
            assert (check.verdict, check.reason, check.judged_at) == (verdict, reason, 40)
            assert (check.rates_after, check.blocked_until) == (rates, None)
            assert last.reason == (
                "lag 12,345 > 5,000 for 4 observations, but already at "
                f"max_taskmanagers 2; {reason}"
            )
        else:  # the verdict lets the waiting scale-up go, and ends its reason ...
            assert (last.action, last.reason) == (
                "up",
                "lag 12,345 > 5,000 for 4 observations; adding a small TaskManager "
                f"(2 -> 3); {reason}",
            )
            # ... and that scale-up is measured in turn, from the rates at 2 TaskManagers
            assert (check.verdict, check.taskmanagers_after) == ("measuring", 3)
            assert check.rate_before == pytest.approx(sum(rates) / 3)


def test_ineffective_blocks_scale_ups_for_the_hold_only() -> None:
    autoscaler = gain_scaler()
    run(autoscaler, [*SCALE_UP_AT_10, *after(200.0, 203.0, 206.0)])  # ineffective at 40
    decisions = run(
        autoscaler,
        [(635, loaded(203.0, parallelism=4), TWO), (640, loaded(203.0, parallelism=4), TWO)],
    )
    assert actions(decisions) == ["hold", "up"]
    assert decisions[0].reason.endswith("no scale-up for 600 s (5 s left)")
    # bounds repair is never blocked: a lost TaskManager is replaced at once
    blocked = gain_scaler()
    run(blocked, [*SCALE_UP_AT_10, *after(200.0, 203.0, 206.0)])
    [repair] = run(blocked, [(100, loaded(203.0), [])])
    assert (repair.action, repair.target_count) == ("up", 1)


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        # the load ends before sustain rates are measured (the drain was quick)
        (
            after(0.0, start=35, lag=LOW),
            "the last scale-up (1 -> 2 TaskManagers) was not measured: the load ended (lag 100 "
            "<= 500) after 1 of 3 observations",
        ),
        (
            after(260.0, start=35, lag=500),  # lag_below itself is not loaded
            "the last scale-up (1 -> 2 TaskManagers) was not measured: the load ended (lag 500 "
            "<= 500) after 1 of 3 observations",
        ),
        # the driver failed to add: the same TaskManagers, nothing to measure
        (
            after(250.0, start=35, cluster=ONE, parallelism=2),
            "the last scale-up (1 -> 2 TaskManagers) was not measured: 1 TaskManagers now, not 2",
        ),
        (
            after(None, start=35, lag=None, busy=900.0),  # Kafka unreachable
            "the last scale-up (1 -> 2 TaskManagers) was not measured: the lag or the job's "
            "checkpoints became unknown",
        ),
        (
            after(250.0, start=35, fresh=None),
            "the last scale-up (1 -> 2 TaskManagers) was not measured: the lag or the job's "
            "checkpoints became unknown",
        ),
    ],
)
def test_unknown_when_it_cannot_be_measured(tail: list[Any], reason: str) -> None:
    autoscaler = gain_scaler()
    decisions = run(autoscaler, [*SCALE_UP_AT_10, *after(250.0), *tail])  # 1 rate, then ...
    check = check_of(autoscaler)
    assert (check.verdict, check.reason, check.blocked_until) == ("unknown", reason, None)
    assert decisions[-1].reason.endswith(f"; {reason}")
    assert autoscaler._blocked(1_000) is None and autoscaler._measuring() is None


def test_rates_from_before_the_rescale_are_not_counted() -> None:
    """The TaskManager is added, but the job still runs at the old parallelism (a Pod starting,
    Flink's resource stabilization): those rates are the old capacity, and an up waits."""
    autoscaler = gain_scaler(cooldown_up_s=0)
    old = [(t, loaded(218.0), TWO) for t in range(15, 40, 5)]
    decisions = run(autoscaler, [*SCALE_UP_AT_10[:3], *old])
    assert actions(decisions) == ["hold", "hold", "up"] + ["hold"] * 5
    assert decisions[-1].reason == (
        "lag 12,345 > 5,000 for 5 observations, but waiting for the "
        "verdict on the last scale-up (1 -> 2 TaskManagers): the "
        "job not rescaled yet: parallelism 2"
    )
    assert check_of(autoscaler).rates_after == ()
    # never rescaled: after ineffective_hold_s the check gives up and the load decides again
    [late] = run(autoscaler, [(611, loaded(218.0), TWO)])
    assert late.action == "up"
    assert late.reason.endswith(
        "; the last scale-up (1 -> 2 TaskManagers) was not measured: "
        "no result within ineffective_hold_s (600 s)"
    )


@pytest.mark.parametrize(
    "streak",
    [
        [loaded(None)] * 3,  # no rate known (the Observer's first, Kafka failing)
        [loaded(218.0, fresh=None)] * 3,  # the checkpoint state unknown: rates not trusted
        [loaded(218.0, lag=LOW, busy=900.0)] * 3,  # busy, but no backlog: not the capacity
    ],
)
def test_no_rate_before_means_unknown_and_nothing_waits(streak: list[Observation]) -> None:
    autoscaler = gain_scaler(cooldown_up_s=0)
    decisions = run(autoscaler, [(5 * i, o, ONE) for i, o in enumerate(streak)])
    assert actions(decisions) == ["hold", "hold", "up"]
    check = check_of(autoscaler)
    assert (check.verdict, check.rate_before) == ("unknown", None)
    assert check.reason == (
        "the last scale-up (1 -> 2 TaskManagers) was not measured: no "
        "throughput counted before it (no loaded observation with a fresh "
        "rate)"
    )
    again = run(autoscaler, [(15 + 5 * i, o, TWO) for i, o in enumerate(streak)])
    assert actions(again) == ["hold", "hold", "up"]


def test_without_min_gain_nothing_is_measured() -> None:
    autoscaler = scaler(cooldown_up_s=0)
    decisions = run(autoscaler, [*SCALE_UP_AT_10, *after(200.0, 203.0, 206.0)])
    assert actions(decisions) == ["hold", "hold", "up"] + ["hold"] * 4 + ["up", "hold"]
    assert decisions[7].timestamp == 35  # sustained again at once: nothing waits
    assert autoscaler.last_scale_up is None


def test_a_policy_without_min_gain_ends_the_check() -> None:
    measuring = gain_scaler()
    run(measuring, [*SCALE_UP_AT_10, *after(200.0)])
    measuring.replace_policy(POLICY)
    assert check_of(measuring).verdict == "unknown"
    assert check_of(measuring).reason.endswith("not measured: the new policy has no min_gain")
    blocked = gain_scaler()
    run(blocked, [*SCALE_UP_AT_10, *after(200.0, 203.0, 206.0)])
    blocked.replace_policy(POLICY)
    decisions = run(blocked, after(203.0, 203.0, 203.0, start=45))
    assert actions(decisions) == ["hold", "hold", "up"]
    assert check_of(blocked).verdict == "ineffective"  # the last verdict stays visible


def test_check_as_json() -> None:
    autoscaler = gain_scaler()
    run(autoscaler, [*SCALE_UP_AT_10, *after(200.0, 203.0, 206.0)])
    assert check_of(autoscaler).to_dict() == ineffective_check(0)
