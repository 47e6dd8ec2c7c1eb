"""The decision engine, rule by rule (the numbers of decide.py's docstring): tables of
observations in, decisions out. Rule 8, the effectiveness of a scale-up, is in
test_autoscale_effectiveness.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flink_deploy.autoscaler.decide import Autoscaler
from flink_deploy.autoscaler.model import Observation
from tests.unit.autoscale_cases import HIGH, LOW, MID, POLICY, actions, obs, run, scaler, tms

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
    autoscaler = Autoscaler(replace(POLICY, scale_down=replace(POLICY.scale_down, remove=remove)))
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


def test_nothing_is_scaled_while_the_jobmanager_does_not_answer() -> None:
    """Issue 13: an autoscaler whose stack was gone kept adding TaskManagers (below
    min_taskmanagers, for a cluster that no longer existed)."""
    auto = Autoscaler(POLICY)
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
