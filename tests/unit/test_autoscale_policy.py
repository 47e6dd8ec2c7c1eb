"""The scaling policy: the default file loads, and every kind of mistake is reported with its
line and column, all at once."""

from __future__ import annotations

import pytest

from flink_deploy.autoscaler.policy import (
    DEFAULT_POLICY_FILE,
    MAX_POLICY_BYTES,
    Policy,
    PolicyError,
    Profile,
    load_policy,
    load_policy_data,
    load_policy_file,
)

GOOD = """\
interval_s: 2
min_taskmanagers: 1
max_taskmanagers: 3
sustain: 2
cooldown_up_s: 10
cooldown_down_s: 20
profiles:
  small: {slots: 2, process_memory: 3072m}
  large: {slots: 4, process_memory: 5g}
scale_up:
  lag_above: 1000
  profile: small
  large_profile: large
  large_lag_above: 10000
scale_down:
  lag_below: 100
"""

LARGE_LAG = "  large_lag_above: 10000"  # the last line of scale_up (line 14)


def issues_of(text: str) -> list[tuple[int, int, str, str]]:
    with pytest.raises(PolicyError) as caught:
        load_policy(text)
    return [(i.line, i.column, i.path, i.message) for i in caught.value.issues]


def problems(text: str) -> list[str]:
    """The issues of ``text`` as PolicyError prints them: ``line:column: path: message``."""
    with pytest.raises(PolicyError) as caught:
        load_policy(text)
    return [str(issue) for issue in caught.value.issues]


def test_default_policy_file_loads_and_round_trips() -> None:
    policy = load_policy_file(DEFAULT_POLICY_FILE)
    assert policy.profile("small") == Profile("small", 2, "3072m", cpu_cores=0.5)
    assert policy.profile("large") == Profile("large", 4, "5120m", cpu_cores=1.0)
    assert policy.profile("large").memory_mib == 5120
    assert load_policy(policy.to_yaml()) == policy
    assert load_policy_data(policy.to_dict()) == policy


@pytest.mark.parametrize(
    ("lines", "min_gain", "hold"),
    [
        ("", None, 600.0),  # absent: no check
        ("  min_gain: null\n", None, 600.0),
        ("  min_gain: 0.1\n", 0.1, 600.0),
        ("  min_gain: 0\n  ineffective_hold_s: 90\n", 0.0, 90.0),  # 0: must not drop
        ("  ineffective_hold_s: 1.5\n", None, 1.5),
    ],
)
def test_effectiveness_keys(lines: str, min_gain: float | None, hold: float) -> None:
    policy = load_policy(GOOD.replace(LARGE_LAG + "\n", LARGE_LAG + "\n" + lines))
    assert (policy.scale_up.min_gain, policy.scale_up.ineffective_hold_s) == (min_gain, hold)
    assert load_policy(policy.to_yaml()) == policy
    assert load_policy_data(policy.to_dict()) == policy


def test_default_policy_checks_scale_up_effectiveness() -> None:
    up = load_policy_file(DEFAULT_POLICY_FILE).scale_up
    assert (up.min_gain, up.ineffective_hold_s) == (0.1, 600.0)


def test_good_policy_with_defaults() -> None:
    policy = load_policy(GOOD)
    assert isinstance(policy, Policy)
    assert (policy.interval_s, policy.min_taskmanagers, policy.max_taskmanagers) == (2.0, 1, 3)
    assert policy.scale_up.busy_above_ms_per_s is None
    assert policy.scale_down.remove == "newest"
    assert policy.profile("large").memory_mib == 5 * 1024
    with pytest.raises(KeyError):
        policy.profile("huge")


@pytest.mark.parametrize(
    ("line", "text", "expected"),
    [
        (1, "interval_s: 0", "1:13: interval_s: must be > 0, got 0"),
        (1, "interval_s: fast", "1:13: interval_s: must be a number"),
        (
            1,
            "intervall_s: 2",
            "1:1: intervall_s: unknown key 'intervall_s'; did you mean 'interval_s'?",
        ),
        (3, "max_taskmanagers: 0", "3:19: max_taskmanagers: must be >= 1, got 0"),
        (4, "sustain: 1.5", "4:10: sustain: must be an integer"),
        (4, "sustain: true", "4:10: sustain: must be an integer"),
        (4, "sustain: 2\nsustain: 3", "5:1: sustain: duplicate key"),
        (5, "cooldown_up_s: -1", "5:16: cooldown_up_s: must be >= 0, got -1"),
        (
            8,
            "  small: {slots: 2, process_memory: lots}",
            "8:37: profiles.small.process_memory: 'lots' is not a memory size such as 3072m or 4g",
        ),
        (
            8,
            "  small: {slots: 2, process_memory: 3072m, cpu_cores: 0}",
            "8:55: profiles.small.cpu_cores: must be > 0, got 0",
        ),
        (
            8,
            "  small: {slots: 2, memory_size: 3072m}",
            [
                "8:21: profiles.small.memory_size: unknown key 'memory_size' (allowed: slots, "
                "process_memory, cpu_cores)",
                "8:10: profiles.small: missing required key 'process_memory'",
            ],
        ),
        (
            11,
            "  lag_above: null",
            "11:3: scale_up: set at least one trigger: lag_above, busy_above_ms_per_s or "
            "backpressure_above_ms_per_s",
        ),
        (
            12,
            "  profile: medium",
            "12:12: scale_up.profile: no profile 'medium' (defined: small, large)",
        ),
        (
            14,
            "  large_lag_above: 500",
            "14:20: scale_up.large_lag_above: must be > scale_up.lag_above (1000), got 500",
        ),
        (
            16,
            "  lag_below: 1000",
            "16:14: scale_down.lag_below: must be < scale_up.lag_above (1000) or the cluster "
            "would flap",
        ),
        (
            16,
            "  lag_below: 100\n  remove: oldest",
            "17:11: scale_down.remove: must be one of newest, largest, got 'oldest'",
        ),
        # Found by schemathesis-style probing of PUT /api/v1/scaling: each was a 500 or a
        # policy whose loop could not wait (and whose JSON had an Infinity).
        (1, "interval_s: .inf", "1:13: interval_s: must be a number"),
        (1, "interval_s: 3601", "1:13: interval_s: must be <= 3600, got 3601"),
        (5, "cooldown_up_s: 1.0e+300", "5:16: cooldown_up_s: must be <= 86400, got 1e+300"),
        (3, "max_taskmanagers: " + "9" * 101, "3:19: <yaml>: a number longer than 100 characters"),
        (1, "interval_s: 0b" + "1" * 99, "1:13: <yaml>: a number longer than 100 characters"),
    ],
)
def test_each_mistake_is_reported_at_its_position(
    line: int, text: str, expected: str | list[str]
) -> None:
    lines = GOOD.splitlines()
    lines[line - 1] = text  # line 1 is GOOD's first
    wanted = expected if isinstance(expected, list) else [expected]
    assert problems("\n".join(lines) + "\n") == wanted


@pytest.mark.parametrize(
    ("added", "expected"),
    [
        ("min_gain: -0.1", "15:13: scale_up.min_gain: must be >= 0, got -0.1"),
        ("min_gain: 11", "15:13: scale_up.min_gain: must be <= 10, got 11"),
        ("min_gain: 10%", "15:13: scale_up.min_gain: must be a number or null"),
        ("min_gain: .nan", "15:13: scale_up.min_gain: must be a number or null"),
        (
            "min_gian: 0.1",
            "15:3: scale_up.min_gian: unknown key 'min_gian'; did you mean 'min_gain'?",
        ),
        ("ineffective_hold_s: 0", "15:23: scale_up.ineffective_hold_s: must be > 0, got 0"),
        ("ineffective_hold_s: null", "15:23: scale_up.ineffective_hold_s: must be a number"),
        (
            "ineffective_hold_s: 86401",
            "15:23: scale_up.ineffective_hold_s: must be <= 86400, got 86401",
        ),
    ],
)
def test_each_effectiveness_mistake_is_reported_at_its_position(added: str, expected: str) -> None:
    """The scale-up effectiveness check's keys (min_gain, ineffective_hold_s), as line 15."""
    assert problems(GOOD.replace(LARGE_LAG + "\n", f"{LARGE_LAG}\n  {added}\n")) == [expected]


def test_every_problem_at_once() -> None:
    text = (
        GOOD.replace("min_taskmanagers: 1", "min_taskmanagers: 5")
        .replace("interval_s: 2", "interval_s: -2")
        .replace("slots: 4", "slots: 0")
    )
    assert issues_of(text) == [
        (1, 13, "interval_s", "must be > 0, got -2"),
        (3, 19, "max_taskmanagers", "must be >= min_taskmanagers (5), got 3"),
        (9, 18, "profiles.large.slots", "must be > 0, got 0"),
    ]


def test_missing_keys_and_not_a_mapping() -> None:
    assert issues_of("min_taskmanagers: 1\n") == [
        (1, 1, "<document>", "missing required key 'max_taskmanagers'"),
        (1, 1, "<document>", "missing required key 'profiles'"),
        (1, 1, "<document>", "missing required key 'scale_up'"),
        (1, 1, "<document>", "missing required key 'scale_down'"),
    ]
    assert issues_of("- 1\n- 2\n") == [(1, 1, "<document>", "must be a mapping")]
    assert issues_of("") == [(1, 1, "<document>", "the policy is empty")]


def test_bad_yaml_has_a_position() -> None:
    [(line, column, path, message)] = issues_of("interval_s: [1, 2\nsustain: 3\n")
    assert (line, path) == (2, "<yaml>") and message.startswith("invalid YAML:")
    assert column > 0


def test_limits() -> None:
    assert issues_of("a: 1\n" * (MAX_POLICY_BYTES // 4)) == [
        (0, 0, "<document>", f"larger than {MAX_POLICY_BYTES} bytes")
    ]
    bomb = "a: &a [x]\n" + "".join(f"b{i}: *a\n" for i in range(20))
    [(line, _, path, message)] = issues_of(bomb)
    assert (line, path, message) == (10, "<yaml>", "too many aliases (limit 8)")
    deep = "a: " + "[" * 20 + "]" * 20 + "\n"
    assert issues_of(deep)[0][2:] == ("<yaml>", "nested too deep (limit 8)")


def test_json_body_positions_are_those_of_the_equivalent_yaml() -> None:
    data = load_policy(GOOD).to_dict()
    data["sustain"] = 0
    with pytest.raises(PolicyError) as caught:
        load_policy_data(data)
    [issue] = caught.value.issues
    assert (issue.line, issue.path, issue.message) == (4, "sustain", "must be >= 1, got 0")
    assert str(caught.value) == "<json>:4:10: sustain: must be >= 1, got 0"
