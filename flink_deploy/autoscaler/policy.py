"""The scaling policy: validated YAML, turned into the immutable records of :mod:`.model`.

Example (``default-policy.yaml`` beside this module is the shipped default)::

    interval_s: 5              # seconds between observations
    min_taskmanagers: 1
    max_taskmanagers: 4
    sustain: 3                 # consecutive observations that must agree (hysteresis)
    cooldown_up_s: 30          # after any scaling action, before the next scale-up
    cooldown_down_s: 120       # after any scaling action, before the next scale-down
    profiles:                  # TaskManager shapes; process_memory as Flink writes it
      small: {slots: 2, process_memory: 3072m, cpu_cores: 0.5}   # cpu_cores: its node's budget
      large: {slots: 4, process_memory: 5120m, cpu_cores: 1.0}
    scale_up:                  # any configured trigger fires a scale-up
      lag_above: 5000          # total consumer lag, records
      busy_above_ms_per_s: 800           # max busyTimeMsPerSecond over the job's vertices
      backpressure_above_ms_per_s: 500   # max backPressuredTimeMsPerSecond
      profile: small           # the profile to add ...
      large_profile: large     # ... or this one when the lag is above large_lag_above
      large_lag_above: 50000
      min_gain: 0.1            # a scale-up must raise the throughput by >= 10%, else it was
      ineffective_hold_s: 600  # ineffective: no scale-up for this long (null min_gain: no check)
    scale_down:                # every configured condition must hold
      lag_below: 500
      busy_below_ms_per_s: 300
      remove: newest           # newest: the most recently added; largest: most slots first

Contract: :func:`load_policy` returns a :class:`Policy` or raises :class:`PolicyError` listing
every problem at once, each with the 1-based line and column of the offending node (for a JSON
body, of the equivalent YAML). Unknown keys, duplicate keys, wrong types, non-positive numbers,
non-finite numbers, ``interval_s`` over an hour and cooldowns over a day,
``min_taskmanagers > max_taskmanagers``, an undefined profile name, a scale-down threshold not
below its scale-up threshold, and a scale-up without any trigger are all rejected.
``scale_up.min_gain`` is a number from 0 to 10, or null (the default: no effectiveness check);
``scale_up.ineffective_hold_s`` a number of seconds > 0 and at most a day (default 600; it
matters only with ``min_gain``). :mod:`.decide` says how the throughput is measured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from control_service.yaml_limits import YamlLimitExceeded, check_yaml_limits
from flink_deploy.autoscaler.model import (
    DEFAULT_INEFFECTIVE_HOLD_S,
    REMOVE_RULES,
    Policy,
    Profile,
    ScaleDown,
    ScaleUp,
)
from flink_deploy.sizing import MEMORY_RE, MIN_PROCESS_MIB
from transforms.filters.model import FilterIssue as PolicyIssue
from transforms.yaml_nodes import read_mapping

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent / "default-policy.yaml"
MAX_POLICY_BYTES = 64 * 1024
MAX_ALIASES = 8
MAX_DEPTH = 8
MAX_INTERVAL_S = 3600
MAX_NUMBER_CHARS = 100
MAX_COOLDOWN_S = 86400
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?")

# The policy's records are defined in .model; callers may take them from here with the loader.
__all__ = [
    "DEFAULT_POLICY_FILE",
    "MAX_POLICY_BYTES",
    "Policy",
    "PolicyError",
    "Profile",
    "load_policy",
    "load_policy_data",
    "load_policy_file",
]


class PolicyError(ValueError):
    """The policy is invalid; ``issues`` holds every problem, with positions (a
    :class:`PolicyIssue` is the filters' positioned problem: line, column, path, message)."""

    def __init__(self, issues: Sequence[PolicyIssue], source: str = "<policy>") -> None:
        self.issues = tuple(issues)
        self.source = source
        super().__init__("\n".join(f"{source}:{issue}" for issue in self.issues))


# --- validation over the YAML nodes ---------------------------------------------------------

_TOP = tuple(f.name for f in fields(Policy))
_TOP_REQUIRED = ("min_taskmanagers", "max_taskmanagers", "profiles", "scale_up", "scale_down")
_UP = tuple(f.name for f in fields(ScaleUp))
_TRIGGERS = ("lag_above", "busy_above_ms_per_s", "backpressure_above_ms_per_s")
_DOWN = tuple(f.name for f in fields(ScaleDown))
_DEFAULTS = {"interval_s": 5.0, "sustain": 3, "cooldown_up_s": 30.0, "cooldown_down_s": 120.0}
MAX_MIN_GAIN = 10.0


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Checker:
    def __init__(self) -> None:
        self.issues: list[PolicyIssue] = []

    def fail(self, node: Node | None, path: str, message: str) -> None:
        line, column = _mark(node) if node is not None else (0, 0)
        self.issues.append(PolicyIssue(line, column, path, message))

    def mapping(
        self,
        node: Node,
        value: Any,
        path: str,
        allowed: Sequence[str],
        required: Sequence[str] = (),
    ) -> dict[str, tuple[Node, Any]]:
        """The keys of a mapping node with their value nodes and constructed values."""
        if not isinstance(value, dict):
            self.fail(node, path or "<document>", "must be a mapping")
            return {}
        keys = read_mapping(node, path, allowed, required, self.fail)
        return {key: (value_node, value[key]) for key, value_node in keys.items()}

    def number(
        self,
        entry: tuple[Node, Any],
        path: str,
        *,
        integer: bool = False,
        minimum: float = 0.0,
        inclusive: bool = False,
        maximum: float | None = None,
        optional: bool = False,
    ) -> Any:
        """A number > minimum (>= if ``inclusive``), <= maximum; None when optional and null."""
        node, value = entry
        if value is None and optional:
            return None
        kinds = (int,) if integer else (int, float)
        # NaN and the infinities (YAML .nan, .inf) are floats but no setting: an infinite
        # interval stops the loop's wait, and JSON has no literal for either.
        if (
            isinstance(value, bool)
            or not isinstance(value, kinds)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            self.fail(
                node,
                path,
                f"must be {'an integer' if integer else 'a number'}"
                + (" or null" if optional else ""),
            )
            return None
        if value < minimum or (value == minimum and not inclusive):
            self.fail(node, path, f"must be {'>=' if inclusive else '>'} {minimum:g}, got {value}")
            return None
        if maximum is not None and value > maximum:
            self.fail(node, path, f"must be <= {maximum:g}, got {value}")
            return None
        return value

    def string(self, entry: tuple[Node, Any], path: str, optional: bool = False) -> str | None:
        node, value = entry
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            self.fail(node, path, "must be a non-empty string" + (" or null" if optional else ""))
            return None
        return value


def _profiles(check: _Checker, entry: tuple[Node, Any]) -> dict[str, tuple[Node, Profile]]:
    node, value = entry
    if not isinstance(node, MappingNode) or not isinstance(value, dict) or not value:
        check.fail(
            node, "profiles", "must be a non-empty mapping of name -> {slots, process_memory}"
        )
        return {}
    out: dict[str, tuple[Node, Profile]] = {}
    for key_node, _ in node.value:
        name = key_node.value if isinstance(key_node, ScalarNode) else None
        path = f"profiles.{name}"
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            check.fail(key_node, path, "a profile name is 1-32 lowercase letters, digits and '-'")
            continue
        if name in out:
            check.fail(key_node, path, "duplicate profile")
            continue
        fields = check.mapping(
            _value_node(node, key_node),
            value.get(name),
            path,
            ("slots", "process_memory", "cpu_cores"),
            ("slots", "process_memory"),
        )
        slots = (
            check.number(fields["slots"], f"{path}.slots", integer=True, maximum=256)
            if "slots" in fields
            else None
        )
        memory = (
            check.string(fields["process_memory"], f"{path}.process_memory")
            if "process_memory" in fields
            else None
        )
        if memory is not None and not MEMORY_RE.fullmatch(memory.strip()):
            check.fail(
                fields["process_memory"][0],
                f"{path}.process_memory",
                f"{memory!r} is not a memory size such as 3072m or 4g",
            )
            memory = None
        elif memory is not None and Profile(name, 1, memory).memory_mib < MIN_PROCESS_MIB:
            check.fail(
                fields["process_memory"][0],
                f"{path}.process_memory",
                f"{memory!r} is below {MIN_PROCESS_MIB}m, the least a TaskManager "
                "needs (flink_deploy/sizing.py)",
            )
            memory = None
        # The CPU budget of the TaskManager's node or VM (flink_deploy/nodes.py, vm/).
        cpu = (
            check.number(fields["cpu_cores"], f"{path}.cpu_cores", maximum=64)
            if "cpu_cores" in fields
            else None
        )
        if slots is not None and memory is not None:
            out[name] = (key_node, Profile(name, slots, memory.strip(), cpu))
    return out


def _value_node(mapping: MappingNode, key_node: Node) -> Node:
    pairs: list[tuple[Node, Node]] = mapping.value
    for k, v in pairs:
        if k is key_node:
            return v
    raise KeyError(key_node)


def _declared(entry: tuple[Node, Any]) -> list[str]:
    """Every profile name written, valid or not (so a bad profile is reported once)."""
    node = entry[0]
    if not isinstance(node, MappingNode):
        return []
    return [k.value for k, _ in node.value if isinstance(k, ScalarNode)]


def _check_profile_name(
    check: _Checker,
    fields: Mapping[str, tuple[Node, Any]],
    key: str,
    profiles: Sequence[str],
    optional: bool,
) -> str | None:
    if key not in fields:
        return None
    name = check.string(fields[key], f"scale_up.{key}", optional=optional)
    if name is not None and name not in profiles:
        defined = ", ".join(profiles) or "none"
        check.fail(fields[key][0], f"scale_up.{key}", f"no profile {name!r} (defined: {defined})")
        return None
    return name


def _validate(root: Node, data: Any) -> Policy | None:
    check = _Checker()
    top = check.mapping(root, data, "", _TOP, _TOP_REQUIRED)
    if not top and not isinstance(root, MappingNode):
        raise PolicyError(check.issues)

    def number(
        section: Mapping[str, tuple[Node, Any]],
        prefix: str,
        key: str,
        default: Any = None,
        **kwargs: Any,
    ) -> Any:
        """``section[key]`` checked by :meth:`_Checker.number`, or ``default`` if not given."""
        return check.number(section[key], prefix + key, **kwargs) if key in section else default

    def num(key: str, **kwargs: Any) -> Any:
        return number(top, "", key, _DEFAULTS.get(key), **kwargs)

    # Bounded: the loop waits interval_s, and a wait beyond threading.TIMEOUT_MAX (or a
    # number too large for a float) raises instead of waiting.
    interval = num("interval_s", maximum=MAX_INTERVAL_S)
    min_tm = num("min_taskmanagers", integer=True, minimum=1, inclusive=True)
    max_tm = num("max_taskmanagers", integer=True, minimum=1, inclusive=True)
    sustain = num("sustain", integer=True, minimum=1, inclusive=True)
    cool_up = num("cooldown_up_s", inclusive=True, maximum=MAX_COOLDOWN_S)
    cool_down = num("cooldown_down_s", inclusive=True, maximum=MAX_COOLDOWN_S)
    if isinstance(min_tm, int) and isinstance(max_tm, int) and min_tm > max_tm:
        check.fail(
            top["max_taskmanagers"][0],
            "max_taskmanagers",
            f"must be >= min_taskmanagers ({min_tm}), got {max_tm}",
        )
    profiles = _profiles(check, top["profiles"]) if "profiles" in top else {}
    declared = _declared(top["profiles"]) if "profiles" in top else []

    up = check.mapping(*top["scale_up"], "scale_up", _UP, ("profile",)) if "scale_up" in top else {}

    def up_num(key: str, **kwargs: Any) -> Any:
        return number(up, "scale_up.", key, optional=True, **kwargs)

    lag_above = up_num("lag_above", integer=True)
    busy_above = up_num("busy_above_ms_per_s", maximum=1000)
    bp_above = up_num("backpressure_above_ms_per_s", maximum=1000)
    up_profile = _check_profile_name(check, up, "profile", declared, optional=False)
    large_profile = _check_profile_name(check, up, "large_profile", declared, optional=True)
    large_lag = up_num("large_lag_above", integer=True)
    min_gain = up_num("min_gain", inclusive=True, maximum=MAX_MIN_GAIN)
    hold = number(up, "scale_up.", "ineffective_hold_s", maximum=MAX_COOLDOWN_S)

    def given(key: str) -> bool:
        return key in up and up[key][1] is not None

    if "scale_up" in top and up and not any(given(k) for k in _TRIGGERS):
        check.fail(
            top["scale_up"][0],
            "scale_up",
            "set at least one trigger: lag_above, "
            "busy_above_ms_per_s or backpressure_above_ms_per_s",
        )
    if given("large_profile") != given("large_lag_above"):
        node = up["large_profile"] if given("large_profile") else up["large_lag_above"]
        check.fail(node[0], "scale_up", "large_profile and large_lag_above go together")
    if large_lag is not None and lag_above is not None and large_lag <= lag_above:
        check.fail(
            up["large_lag_above"][0],
            "scale_up.large_lag_above",
            f"must be > scale_up.lag_above ({lag_above}), got {large_lag}",
        )

    down = (
        check.mapping(*top["scale_down"], "scale_down", _DOWN, ("lag_below",))
        if "scale_down" in top
        else {}
    )
    lag_below = number(down, "scale_down.", "lag_below", integer=True)
    busy_below = number(down, "scale_down.", "busy_below_ms_per_s", maximum=1000, optional=True)
    remove = "newest"
    if "remove" in down:
        remove = check.string(down["remove"], "scale_down.remove") or "newest"
        if remove not in REMOVE_RULES:
            check.fail(
                down["remove"][0],
                "scale_down.remove",
                f"must be one of {', '.join(REMOVE_RULES)}, got {remove!r}",
            )
    if lag_below is not None and lag_above is not None and lag_below >= lag_above:
        check.fail(
            down["lag_below"][0],
            "scale_down.lag_below",
            f"must be < scale_up.lag_above ({lag_above}) or the cluster would flap",
        )
    if busy_below is not None and busy_above is not None and busy_below >= busy_above:
        check.fail(
            down["busy_below_ms_per_s"][0],
            "scale_down.busy_below_ms_per_s",
            f"must be < scale_up.busy_above_ms_per_s ({busy_above:g})",
        )

    if check.issues:
        raise PolicyError(check.issues)
    return Policy(
        interval_s=float(interval),
        min_taskmanagers=min_tm,
        max_taskmanagers=max_tm,
        sustain=sustain,
        cooldown_up_s=float(cool_up),
        cooldown_down_s=float(cool_down),
        profiles=tuple(profile for _, profile in profiles.values()),
        scale_up=ScaleUp(
            lag_above,
            _float(busy_above),
            _float(bp_above),
            up_profile or "",
            large_profile,
            large_lag,
            _float(min_gain),
            DEFAULT_INEFFECTIVE_HOLD_S if hold is None else float(hold),
        ),
        scale_down=ScaleDown(lag_below or 0, _float(busy_below), remove),
    )


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _check_limits(text: str) -> None:
    """Refuse alias bombs and deep nesting before anything is constructed."""
    try:
        check_yaml_limits(text, MAX_ALIASES, MAX_DEPTH)
    except YamlLimitExceeded as error:
        raise PolicyError([PolicyIssue(error.line, error.column, "<yaml>", str(error))]) from None


def _check_numbers(root: Node) -> None:
    """Refuse integers of more than MAX_NUMBER_CHARS characters before they are constructed:
    int() and str() refuse over 4300 decimal digits with a ValueError, and nothing in a policy
    needs a number that long."""
    issues, seen, todo = [], set(), [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:  # an alias makes a node reachable twice, or in a cycle
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_NUMBER_CHARS:
                line, column = _mark(node)
                issues.append(
                    PolicyIssue(
                        line,
                        column,
                        "<yaml>",
                        f"a number longer than {MAX_NUMBER_CHARS} characters",
                    )
                )
        elif isinstance(node, MappingNode):
            todo += [n for pair in node.value for n in pair]
        elif isinstance(node.value, list):
            todo += node.value
    if issues:
        raise PolicyError(sorted(issues, key=lambda i: (i.line, i.column)))


def load_policy(text: str, source: str = "<policy>") -> Policy:
    """The policy in ``text`` (YAML, or JSON, which is YAML); raises :class:`PolicyError`."""
    if len(text.encode("utf-8", errors="replace")) > MAX_POLICY_BYTES:
        raise PolicyError(
            [PolicyIssue(0, 0, "<document>", f"larger than {MAX_POLICY_BYTES} bytes")], source
        )
    try:
        _check_limits(text)
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            if root is not None:
                _check_numbers(root)
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except PolicyError as error:
        raise PolicyError(error.issues, source) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        message = " ".join(part for part in (error.context, error.problem) if part)
        raise PolicyError(
            [PolicyIssue(line, column, "<yaml>", f"invalid YAML: {message}")], source
        ) from None
    except yaml.YAMLError as error:
        raise PolicyError([PolicyIssue(0, 0, "<yaml>", f"invalid YAML: {error}")], source) from None
    if root is None:
        raise PolicyError([PolicyIssue(1, 1, "<document>", "the policy is empty")], source)
    try:
        policy = _validate(root, data)
    except PolicyError as error:
        raise PolicyError(error.issues, source) from None
    assert policy is not None
    return policy


def load_policy_data(data: Mapping[str, Any]) -> Policy:
    """A policy from plain data (a JSON body); positions are those of the equivalent YAML."""
    return load_policy(yaml.safe_dump(dict(data), sort_keys=False), source="<json>")


def load_policy_file(path: str | Path) -> Policy:
    """The policy in a file; PolicyError (source = the path) or OSError."""
    return load_policy(Path(path).read_text(encoding="utf-8"), source=str(path))
