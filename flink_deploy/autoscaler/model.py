"""The autoscaler's records: the scaling policy, an observation of the load, the TaskManagers a
driver manages, a decision and the effectiveness check of the last scale-up.

Immutable dataclasses and their JSON views, nothing else: no I/O, no clock. The policy is read
and validated by :mod:`.policy`, an observation made by :mod:`.observe`, a decision taken by
:mod:`.decide` (whose numbered rules the ``rule N`` references below point to).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum, auto
from typing import Any

import yaml

from flink_deploy.sizing import TaskManagerProfile

#: ``scale_down.remove``: the most recently added TaskManager, or the newest of the largest.
REMOVE_RULES = ("newest", "largest")
DEFAULT_INEFFECTIVE_HOLD_S = 600.0

# --- the policy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile(TaskManagerProfile):
    """A TaskManager shape named in the policy: ``slots`` task slots and Flink's
    ``process_memory`` (e.g. 3072m); the stack starts TaskManagers of it as they are."""


@dataclass(frozen=True, slots=True)
class ScaleUp:
    """Scale up when any set trigger holds; ``None`` switches a trigger off.

    ``min_gain``: a scale-up must raise the measured throughput by at least this fraction
    (0.1 = 10%), else it was ineffective and scale-ups wait ``ineffective_hold_s`` seconds;
    ``None`` switches the check off.
    """

    lag_above: int | None
    busy_above_ms_per_s: float | None
    backpressure_above_ms_per_s: float | None
    profile: str
    large_profile: str | None
    large_lag_above: int | None
    min_gain: float | None = None
    ineffective_hold_s: float = DEFAULT_INEFFECTIVE_HOLD_S


@dataclass(frozen=True, slots=True)
class ScaleDown:
    """Scale down when every set condition holds (``lag_below`` always is); ``remove`` is one
    of :data:`REMOVE_RULES`."""

    lag_below: int
    busy_below_ms_per_s: float | None
    remove: str


@dataclass(frozen=True, slots=True)
class Policy:
    """The whole validated policy. ``profiles`` keep the order of the YAML."""

    interval_s: float
    min_taskmanagers: int
    max_taskmanagers: int
    sustain: int
    cooldown_up_s: float
    cooldown_down_s: float
    profiles: tuple[Profile, ...]
    scale_up: ScaleUp
    scale_down: ScaleDown

    def profile(self, name: str) -> Profile:
        """The profile called ``name``; KeyError if the policy has none."""
        for profile in self.profiles:
            if profile.name == name:
                return profile
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The policy as plain data, in the YAML's shape (``load_policy`` accepts it back):
        the fields, with the profiles as a mapping of name -> {slots, process_memory} (and
        cpu_cores when set)."""
        view = asdict(self)
        view["profiles"] = {
            p.name: {
                "slots": p.slots,
                "process_memory": p.process_memory,
                **({"cpu_cores": p.cpu_cores} if p.cpu_cores is not None else {}),
            }
            for p in self.profiles
        }
        return view

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --- what the autoscaler sees ----------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """What the autoscaler saw at ``timestamp`` (seconds since the epoch); :mod:`.observe`
    says where each field comes from.

    None means "not known" (see ``errors``); rates are None on the first observation.
    """

    timestamp: float
    lag_total: int | None = None
    lag_by_topic: Mapping[str, int] = field(default_factory=dict)
    records_in_per_s: float | None = None
    records_out_per_s: float | None = None
    busy_max_ms_per_s: float | None = None
    backpressure_max_ms_per_s: float | None = None
    job_id: str | None = None
    job_state: str | None = None
    parallelism: int = 0
    tasks_running: int = 0
    tasks_total: int = 0
    taskmanagers: int | None = None
    slots_total: int | None = None
    slots_available: int | None = None
    checkpointed_since_restore: bool | None = None
    errors: tuple[str, ...] = ()

    @property
    def job_running(self) -> bool:
        """RUNNING with every task running: after a TaskManager is lost Flink keeps the job
        RUNNING while its tasks wait for slots (``tasks_running < tasks_total``)."""
        return (
            self.job_state == "RUNNING"
            and self.parallelism > 0
            and 0 < self.tasks_total == self.tasks_running
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["lag_by_topic"] = dict(self.lag_by_topic)
        out["errors"] = list(self.errors)
        return out


@dataclass(frozen=True, slots=True)
class TaskManager:
    """One TaskManager the driver manages: its name (unique per driver) and profile name."""

    name: str
    profile: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- what it decides -------------------------------------------------------------------------


class Action(StrEnum):
    """What a decision does: add or remove a TaskManager, nothing, or (set by the loop) the
    driver failed. The values are the names in lower case."""

    UP = auto()
    DOWN = auto()
    HOLD = auto()
    ERROR = auto()


class Verdict(StrEnum):
    """The effectiveness check of the last scale-up (rule 8); values as :class:`Action`'s."""

    MEASURING = auto()
    EFFECTIVE = auto()
    INEFFECTIVE = auto()
    UNKNOWN = auto()


@dataclass(frozen=True)
class Decision:
    """What to do, and why.

    ``action``: up, down, hold (or error, set by the loop when the driver failed);
    ``profile``: the profile added (up) or removed (down); ``taskmanager``: the one removed
    (down) or, once applied, added (up); ``current_count`` -> ``target_count`` TaskManagers;
    ``observation``: the inputs the decision saw.
    """

    action: Action
    target_count: int
    reason: str
    timestamp: float
    current_count: int
    profile: str | None = None
    taskmanager: str | None = None
    observation: Observation | None = None
    taskmanagers: tuple[TaskManager, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The fields, the TaskManagers as a list and the observation in its own JSON view."""
        return {
            **asdict(self),
            "action": self.action.value,
            "taskmanagers": [tm.to_dict() for tm in self.taskmanagers],
            "observation": self.observation.to_dict() if self.observation else None,
        }


@dataclass(frozen=True)
class ScaleUpCheck:
    """Whether a scale-up decided on the load raised the throughput (rule 8).

    ``taskmanagers_before`` -> ``taskmanagers_after`` and ``parallelism_before``: the cluster
    and the job when it was decided, at ``decided_at``; ``rate_before``: mean alerts/s over
    its up-streak (None if no rate counted); ``rates_after``: the rates counted since;
    ``verdict``: a :class:`Verdict` (``measuring`` until ``judged_at``); ``reason``: the
    verdict in words; ``blocked_until``: no load-driven scale-up before then (ineffective).
    """

    decided_at: float
    taskmanagers_before: int
    taskmanagers_after: int
    parallelism_before: int
    min_gain: float
    rate_before: float | None
    rates_after: tuple[float, ...] = ()
    verdict: Verdict = Verdict.MEASURING
    reason: str = ""
    judged_at: float | None = None
    blocked_until: float | None = None

    @property
    def rate_after(self) -> float | None:
        """The mean of ``rates_after`` (None before the first)."""
        return sum(self.rates_after) / len(self.rates_after) if self.rates_after else None

    @property
    def label(self) -> str:
        return (
            f"the last scale-up ({self.taskmanagers_before} -> {self.taskmanagers_after} "
            "TaskManagers)"
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields, but the rates in alerts/s: the one before, the mean of those after and
        how many those were."""
        view = asdict(self)
        del view["rate_before"], view["rates_after"]
        return {
            **view,
            "verdict": self.verdict.value,
            "rate_before_per_s": self.rate_before,
            "rate_after_per_s": self.rate_after,
            "observations_after": len(self.rates_after),
        }
