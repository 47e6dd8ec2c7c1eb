"""The decision engine, rule by rule: tables of observations in, decisions out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from flink_deploy.autoscaler.decide import Autoscaler, Decision, ScaleUpCheck, TaskManager
from flink_deploy.autoscaler.observe import Observation
from flink_deploy.autoscaler.policy import load_policy

POLICY = """\
interval_s: 5
min_taskmanagers: 1
max_taskmanagers: 3
sustain: 3
cooldown_up_s: 30
cooldown_down_s: 60
profiles:
  small: {slots: 2, process_memory: 3072m}
  large: {slots: 4, process_memory: 5120m}
scale_up:
  lag_above: 5000
  busy_above_ms_per_s: 800
  backpressure_above_ms_per_s: 500
  profile: small
  large_profile: large
  large_lag_above: 50000
scale_down:
  lag_below: 500
  busy_below_ms_per_s: 300
"""

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


def scaler(text: str = POLICY, **changes: Any) -> Autoscaler:
    for key, value in changes.items():
        text = (
            "\n".join(
                f"{key}: {value}" if line.startswith(f"{key}:") else line
                for line in text.splitlines()
            )
            + "\n"
        )
    return Autoscaler(load_policy(text))


def run(
    autoscaler: Autoscaler,
    steps: list[tuple[float, Observation, list[TaskManager]]],
) -> list[Decision]:
    return [autoscaler.decide(o, cluster, now) for now, o, cluster in steps]


def actions(decisions: list[Decision]) -> list[str]:
    return [d.action for d in decisions]


# --- load triggers, sustain ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("observation", "reason"),
    [
        (
            obs(lag=HIGH),
            "lag 12,345 > 5,000 for 3 observations; adding a small TaskManager (1 -> 2)",
        ),
        (
            obs(busy=950.0),
            "busy 950 ms/s > 800 ms/s for 3 observations; adding a small TaskManager (1 -> 2)",
        ),
        (
            obs(pressure=600.0),
            "backpressure 600 ms/s > 500 ms/s for 3 observations; adding a "
            "small TaskManager (1 -> 2)",
        ),
        (
            obs(lag=HIGH, busy=950.0),
            "lag 12,345 > 5,000, busy 950 ms/s > 800 ms/s for 3 "
            "observations; adding a small TaskManager (1 -> 2)",
        ),
    ],
)
def test_each_up_trigger_after_sustain(observation: Observation, reason: str) -> None:
    decisions = run(scaler(), [(t, observation, tms("small")) for t in (0, 5, 10)])
    assert actions(decisions) == ["hold", "hold", "up"]
    assert decisions[0].reason.endswith("(1 of 3 observations)")
    assert decisions[1].reason.endswith("(2 of 3 observations)")
    up = decisions[2]
    assert (up.reason, up.profile, up.current_count, up.target_count) == (reason, "small", 1, 2)
    assert up.observation is observation and up.timestamp == 10


@pytest.mark.parametrize(
    ("observation", "why"),
    [
        (obs(lag=LOW, busy=100.0), "lag 100 < 500, busy 100 ms/s < 300 ms/s"),
        (obs(lag=LOW, busy=None), "lag 100 < 500"),  # busy not reported (NaN): does not block
    ],
)
def test_down_after_sustain_removes_the_newest(observation: Observation, why: str) -> None:
    cluster = tms("small", "large", "small")
    decisions = run(scaler(), [(t, observation, cluster) for t in (0, 5, 10)])
    assert actions(decisions) == ["hold", "hold", "down"]
    down = decisions[2]
    assert down.reason == f"{why} for 3 observations; removing tm-3 (3 -> 2)"
    assert (down.taskmanager, down.profile, down.target_count) == ("tm-3", "small", 2)


@pytest.mark.parametrize(
    "observation",
    [
        obs(lag=MID),  # between the thresholds
        obs(lag=LOW, busy=500.0),  # lag low, but busy
        obs(lag=None, busy=100.0, errors=("kafka: down",)),  # lag unknown: never down
    ],
)
def test_no_down_unless_every_condition_holds(observation: Observation) -> None:
    decisions = run(scaler(), [(t, observation, tms("small", "small")) for t in range(0, 50, 5)])
    assert set(actions(decisions)) == {"hold"}


def test_load_within_bounds_reason() -> None:
    [decision] = run(scaler(), [(0, obs(lag=MID), tms("small"))])
    assert decision.reason == "load within bounds: lag 2,000 (down below 500)"


def test_flapping_input_never_acts() -> None:
    pattern = [obs(lag=HIGH), obs(lag=HIGH), obs(lag=LOW), obs(lag=LOW), obs(lag=MID)] * 10
    decisions = run(scaler(), [(5 * i, o, tms("small", "small")) for i, o in enumerate(pattern)])
    assert set(actions(decisions)) == {"hold"}


def test_an_interruption_restarts_the_count() -> None:
    seq = [obs(lag=HIGH), obs(lag=HIGH), obs(lag=MID), obs(lag=HIGH), obs(lag=HIGH), obs(lag=HIGH)]
    decisions = run(scaler(), [(5 * i, o, tms("small")) for i, o in enumerate(seq)])
    assert actions(decisions) == ["hold", "hold", "hold", "hold", "hold", "up"]


# --- cooldown, bounds ------------------------------------------------------------------------


def test_cooldown_after_an_action() -> None:
    autoscaler = scaler(sustain=1)
    one, two = tms("small"), tms("small", "small")
    decisions = run(
        autoscaler,
        [
            (0, obs(lag=HIGH), one),  # up
            (10, obs(lag=HIGH), two),  # 10 s < cooldown_up_s 30
            (29, obs(lag=HIGH), two),
            (30, obs(lag=HIGH), two),  # cooled down: up again
            (40, obs(lag=LOW), tms("small", "small", "small")),  # 10 s < cooldown_down_s 60
            (89, obs(lag=LOW), tms("small", "small", "small")),
            (90, obs(lag=LOW), tms("small", "small", "small")),  # down
        ],
    )
    assert actions(decisions) == ["up", "hold", "hold", "up", "hold", "hold", "down"]
    assert decisions[1].reason == (
        "lag 12,345 > 5,000 for 1 observation, but cooling down "
        "(10 s of 30 s since the last scaling)"
    )


def test_never_above_max_or_below_min() -> None:
    autoscaler = scaler(sustain=1, cooldown_up_s=0, cooldown_down_s=0)
    at_max = tms("small", "small", "small")
    [up] = run(autoscaler, [(0, obs(lag=HIGH), at_max)])
    assert up.action == "hold"
    assert up.reason == ("lag 12,345 > 5,000 for 1 observation, but already at max_taskmanagers 3")
    [down] = run(autoscaler, [(5, obs(lag=LOW), tms("small"))])
    assert down.action == "hold"
    assert down.reason == "lag 100 < 500 for 1 observation, already at min_taskmanagers 1"


def test_bounds_are_restored_at_once() -> None:
    autoscaler = scaler()
    [up] = run(autoscaler, [(0, obs(state=None), [])])
    assert (up.action, up.profile, up.target_count) == ("up", "small", 1)
    assert up.reason == ("0 TaskManagers < min_taskmanagers 1; adding a small TaskManager (0 -> 1)")
    [down] = run(autoscaler, [(100, obs(lag=HIGH), tms("small", "small", "large", "small"))])
    assert (down.action, down.taskmanager, down.target_count) == ("down", "tm-4", 3)


def test_bounds_repair_waits_for_the_cooldown_after_an_action() -> None:
    # a driver that failed to add leaves the cluster below min: retried once per cooldown
    decisions = run(scaler(), [(t, obs(state="RESTARTING"), []) for t in (0, 5, 29, 30)])
    assert actions(decisions) == ["up", "hold", "hold", "up"]
    assert decisions[1].reason == (
        "0 TaskManagers < min_taskmanagers 1, but cooling down (5 s of 30 s since the last scaling)"
    )


# --- the job must run; no data ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("observation", "reason"),
    [
        (
            obs(lag=HIGH, state="RESTARTING"),
            "job RESTARTING (parallelism 0); waiting for it to run before judging the load",
        ),
        (
            obs(lag=HIGH, state=None),
            "job not running (parallelism 0); waiting for it to run before judging the load",
        ),
        (
            obs(lag=HIGH, tasks_running=0),  # a TaskManager lost: tasks wait for slots
            "job RUNNING with 0 of 2 tasks running (parallelism 2); waiting for it to run before "
            "judging the load",
        ),
        (
            obs(lag=None, pressure=None, errors=("kafka: timed out", "flink job: refused")),
            "no load data (kafka: timed out; flink job: refused)",
        ),
        (
            obs(lag=HIGH, checkpointed_since_restore=False),  # restored, no checkpoint since
            "restored from a checkpoint and none completed since: the committed offsets, and so "
            "the lag, are stale",
        ),
    ],
)
def test_hold_without_a_running_job_or_data(observation: Observation, reason: str) -> None:
    autoscaler = scaler()
    decisions = run(
        autoscaler,
        [
            (0, obs(lag=HIGH), tms("small")),
            (5, obs(lag=HIGH), tms("small")),
            (10, observation, tms("small")),
            (15, obs(lag=HIGH), tms("small")),
        ],
    )
    assert actions(decisions) == ["hold"] * 4
    assert decisions[2].reason == reason
    assert decisions[3].reason.endswith("(1 of 3 observations)")  # the count restarted


def test_restart_after_an_action_holds_then_resumes() -> None:
    autoscaler = scaler(sustain=1, cooldown_up_s=0)
    decisions = run(
        autoscaler,
        [
            (0, obs(lag=HIGH), tms("small")),
            (5, obs(lag=HIGH, state="RESTARTING"), tms("small", "small")),
            (10, obs(lag=HIGH, state="RUNNING", parallelism=4), tms("small", "small")),
        ],
    )
    assert actions(decisions) == ["up", "hold", "up"]


# --- profiles --------------------------------------------------------------------------------


@pytest.mark.parametrize(("lag", "profile"), [(50_000, "small"), (50_001, "large")])
def test_large_profile_above_the_higher_lag(lag: int, profile: str) -> None:
    [decision] = run(scaler(sustain=1), [(0, obs(lag=lag), tms("small"))])
    assert (decision.action, decision.profile) == ("up", profile)
    assert decision.reason.endswith(f"adding a {profile} TaskManager (1 -> 2)")


@pytest.mark.parametrize(
    ("remove", "cluster", "victim"),
    [
        ("newest", ("small", "large", "small"), "tm-3"),
        ("largest", ("small", "large", "small"), "tm-2"),
        ("largest", ("large", "small", "large", "small"), "tm-3"),
        ("largest", ("small", "small"), "tm-2"),
    ],
)
def test_which_taskmanager_goes(remove: str, cluster: tuple[str, ...], victim: str) -> None:
    autoscaler = Autoscaler(
        load_policy(
            POLICY.replace(
                "  busy_below_ms_per_s: 300", f"  busy_below_ms_per_s: 300\n  remove: {remove}"
            )
        )
    )
    autoscaler.replace_policy(replace(autoscaler.policy, sustain=1, max_taskmanagers=4))
    [decision] = run(autoscaler, [(0, obs(lag=LOW), tms(*cluster))])
    assert (decision.action, decision.taskmanager) == ("down", victim)


def test_decision_as_json() -> None:
    [decision] = run(scaler(), [(7.5, obs(lag=MID), tms("small"))])
    body = decision.to_dict()
    assert body["action"] == "hold" and body["timestamp"] == 7.5
    assert body["taskmanagers"] == [{"name": "tm-1", "profile": "small"}]
    assert body["observation"]["lag_total"] == MID


# --- stale lag after a restore ---------------------------------------------------------------


def test_stale_lag_after_a_rescale_takes_no_second_scale_up() -> None:
    """The benchmark's case: after the rescale the job runs with every task running well before
    its first checkpoint; the lag, frozen at the restored checkpoint's offsets, looked high."""
    one, two = tms("small"), tms("small", "small")
    stale = obs(lag=HIGH, parallelism=4, checkpointed_since_restore=False)
    decisions = run(
        scaler(),
        [
            (0, obs(lag=HIGH), one),
            (5, obs(lag=HIGH), one),
            (10, obs(lag=HIGH), one),  # up
            (15, obs(lag=HIGH, state="RESTARTING"), two),
            *[(t, stale, two) for t in range(20, 65, 5)],  # 45 s: past sustain and the cooldown
            (65, obs(lag=MID, parallelism=4, checkpointed_since_restore=True), two),
        ],
    )
    assert actions(decisions) == ["hold", "hold", "up"] + ["hold"] * 11
    assert {d.reason for d in decisions[4:13]} == {
        "restored from a checkpoint and none completed since: the committed offsets, and so "
        "the lag, are stale"
    }
    assert decisions[13].reason == "load within bounds: lag 2,000 (down below 500)"


@pytest.mark.parametrize("fresh", [True, None])  # None: unknown, neither blocks nor triggers
@pytest.mark.parametrize(
    ("lag", "cluster", "action"), [(HIGH, ("small",), "up"), (LOW, ("small", "small"), "down")]
)
def test_fresh_or_unknown_checkpoints_let_the_load_decide(
    fresh: bool | None, lag: int, cluster: tuple[str, ...], action: str
) -> None:
    observation = obs(lag=lag, checkpointed_since_restore=fresh)
    decisions = run(scaler(), [(t, observation, tms(*cluster)) for t in (0, 5, 10)])
    assert actions(decisions) == ["hold", "hold", action]


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        # a stale observation in the middle restarts the count, like a restart does
        ([True, True, False, True, True, True], ["hold"] * 5 + ["up"]),
        ([None, False, None, None, None], ["hold"] * 4 + ["up"]),
        ([False] * 6, ["hold"] * 6),
    ],
)
def test_stale_lag_restarts_the_streak(sequence: list[bool | None], expected: list[str]) -> None:
    steps = [
        (5 * i, obs(lag=HIGH, checkpointed_since_restore=fresh), tms("small"))
        for i, fresh in enumerate(sequence)
    ]
    assert actions(run(scaler(), steps)) == expected


# --- scale-up effectiveness ------------------------------------------------------------------

GAIN = "  large_lag_above: 50000\n  min_gain: 0.1\n  ineffective_hold_s: 600\n"


def gain_scaler(**changes: Any) -> Autoscaler:
    """POLICY with min_gain 0.1 and ineffective_hold_s 600 (and ``changes``)."""
    return scaler(POLICY.replace("  large_lag_above: 50000\n", GAIN), **changes)


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
    measuring.replace_policy(load_policy(POLICY))
    assert check_of(measuring).verdict == "unknown"
    assert check_of(measuring).reason.endswith("not measured: the new policy has no min_gain")
    blocked = gain_scaler()
    run(blocked, [*SCALE_UP_AT_10, *after(200.0, 203.0, 206.0)])
    blocked.replace_policy(load_policy(POLICY))
    decisions = run(blocked, after(203.0, 203.0, 203.0, start=45))
    assert actions(decisions) == ["hold", "hold", "up"]
    assert check_of(blocked).verdict == "ineffective"  # the last verdict stays visible


def test_check_as_json() -> None:
    autoscaler = gain_scaler()
    run(autoscaler, [*SCALE_UP_AT_10, *after(200.0, 203.0, 206.0)])
    assert check_of(autoscaler).to_dict() == {
        "decided_at": 10,
        "taskmanagers_before": 1,
        "taskmanagers_after": 2,
        "parallelism_before": 2,
        "min_gain": 0.1,
        "rate_before_per_s": 218.0,
        "rate_after_per_s": 203.0,
        "observations_after": 3,
        "verdict": "ineffective",
        "reason": "the last scale-up (1 -> 2 TaskManagers) took throughput from 218 to 203 "
        "alerts/s (< +10%): no scale-up for 600 s",
        "judged_at": 40,
        "blocked_until": 640,
    }


def test_nothing_is_scaled_while_the_jobmanager_does_not_answer() -> None:
    """Issue 13: an autoscaler whose stack was gone kept adding TaskManagers (below
    min_taskmanagers, for a cluster that no longer existed)."""
    auto = Autoscaler(load_policy(POLICY))
    gone = Observation(
        timestamp=0.0,
        errors=(
            "kafka: KafkaException: transport failure",
            "flink job: ConnectionError: refused",
            "flink cluster: ConnectionError: refused",
        ),
    )
    decision = auto.decide(gone, [], now=100.0)
    assert (decision.action, decision.target_count) == ("hold", 0)
    assert decision.reason == (
        "the JobManager does not answer (flink cluster: ConnectionError: "
        "refused); nothing is scaled until it does"
    )
    assert auto.decide(obs(taskmanagers=0), [], now=101.0).action == "up"
