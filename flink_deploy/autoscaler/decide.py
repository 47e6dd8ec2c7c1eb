"""The decision engine: from an observation and the current TaskManagers to up, down or hold.

Pure: no I/O and no clock of its own (``now`` is passed in). :class:`Autoscaler` keeps only the
hysteresis state: how many consecutive observations agreed on "up" or on "down", and when the
last scaling action was decided.

Rules, in order:

1. **Bounds.** Fewer TaskManagers than ``min_taskmanagers``: up (``scale_up.profile``); more
   than ``max_taskmanagers``: down. Without sustain, and whatever the job's state, but after
   the cooldown (so a driver that fails is not called on every observation).
2. **No running job** (``job_state`` not RUNNING, parallelism 0, or tasks still waiting for
   slots: restarting after a rescale, a TaskManager lost, not submitted yet): hold, and the
   streaks restart from zero.
3. **No load data** (the lag unknown and no Flink metric either): hold, streaks restart.
4. **Up** when any configured trigger holds: lag > ``lag_above``, max busy time >
   ``busy_above_ms_per_s``, max backpressure > ``backpressure_above_ms_per_s``.
   **Down** when the lag is known and < ``lag_below`` and, if configured and reported, max busy
   time < ``busy_below_ms_per_s``. A metric Flink does not report (the busy time of a chained
   legacy source is NaN) neither triggers nor blocks. Never down while the lag is unknown or
   above ``lag_below``.
5. **Sustain.** Act only when ``sustain`` consecutive observations agree; any other observation
   restarts the count, so alternating input never acts (no flapping).
6. **Cooldown.** An up needs ``cooldown_up_s``, a down ``cooldown_down_s``, since the last
   scaling action; bounds ``max_taskmanagers`` / ``min_taskmanagers`` are never crossed.
7. **Profile.** Up adds ``scale_up.large_profile`` when the lag is > ``large_lag_above``, else
   ``scale_up.profile``. Down removes the newest TaskManager (``remove: newest``) or the newest
   of those with the most slots (``remove: largest``).

A decision to act starts the cooldown whether or not the driver then succeeds, so a failing
driver is retried once per cooldown, not on every observation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from flink_deploy.autoscaler.observe import Observation
from flink_deploy.autoscaler.policy import Policy

ACTIONS = ("up", "down", "hold", "error")


@dataclass(frozen=True, slots=True)
class TaskManager:
    """One TaskManager the driver manages: its name (unique per driver) and profile name."""

    name: str
    profile: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "profile": self.profile}


@dataclass(frozen=True)
class Decision:
    """What to do, and why.

    ``action``: up, down, hold (or error, set by the loop when the driver failed);
    ``profile``: the profile added (up) or removed (down); ``taskmanager``: the one removed
    (down) or, once applied, added (up); ``current_count`` -> ``target_count`` TaskManagers;
    ``observation``: the inputs the decision saw.
    """

    action: str
    target_count: int
    reason: str
    timestamp: float
    current_count: int
    profile: str | None = None
    taskmanager: str | None = None
    observation: Observation | None = None
    taskmanagers: tuple[TaskManager, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "action": self.action,
            "reason": self.reason,
            "profile": self.profile,
            "taskmanager": self.taskmanager,
            "current_count": self.current_count,
            "target_count": self.target_count,
            "taskmanagers": [tm.to_dict() for tm in self.taskmanagers],
            "observation": self.observation.to_dict() if self.observation else None,
        }


def _records(value: int) -> str:
    return f"{value:,}"


def _observations(count: int) -> str:
    return f"{count} observation{'' if count == 1 else 's'}"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms/s"


class Autoscaler:
    """Decides with ``policy``; keeps the streaks and the time of the last action."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.up_streak = 0
        self.down_streak = 0
        self.last_action_at: float | None = None

    def replace_policy(self, policy: Policy) -> None:
        """Use ``policy`` from the next decision on; the streaks restart, the cooldown holds."""
        self.policy = policy
        self.up_streak = self.down_streak = 0

    # --- the rules ----------------------------------------------------------------------------

    def _up_triggers(self, obs: Observation) -> list[str]:
        up = self.policy.scale_up
        out = []
        if up.lag_above is not None and obs.lag_total is not None \
                and obs.lag_total > up.lag_above:
            out.append(f"lag {_records(obs.lag_total)} > {_records(up.lag_above)}")
        busy, pressure = obs.busy_max_ms_per_s, obs.backpressure_max_ms_per_s
        if up.busy_above_ms_per_s is not None and busy is not None \
                and busy > up.busy_above_ms_per_s:
            out.append(f"busy {_ms(busy)} > {_ms(up.busy_above_ms_per_s)}")
        if up.backpressure_above_ms_per_s is not None and pressure is not None \
                and pressure > up.backpressure_above_ms_per_s:
            out.append(f"backpressure {_ms(pressure)} > {_ms(up.backpressure_above_ms_per_s)}")
        return out

    def _down_conditions(self, obs: Observation) -> list[str] | None:
        """Why the load is low enough to scale down, or None if it is not."""
        down = self.policy.scale_down
        if obs.lag_total is None or obs.lag_total >= down.lag_below:
            return None
        out = [f"lag {_records(obs.lag_total)} < {_records(down.lag_below)}"]
        busy = obs.busy_max_ms_per_s
        if down.busy_below_ms_per_s is not None and busy is not None:
            if busy >= down.busy_below_ms_per_s:
                return None
            out.append(f"busy {_ms(busy)} < {_ms(down.busy_below_ms_per_s)}")
        return out

    def _up_profile(self, obs: Observation) -> str:
        up = self.policy.scale_up
        if up.large_profile is not None and up.large_lag_above is not None \
                and obs.lag_total is not None and obs.lag_total > up.large_lag_above:
            return up.large_profile
        return up.profile

    def _to_remove(self, taskmanagers: Sequence[TaskManager]) -> TaskManager:
        if self.policy.scale_down.remove == "largest":
            slots = {p.name: p.slots for p in self.policy.profiles}
            most = max(slots.get(tm.profile, 0) for tm in taskmanagers)
            return [tm for tm in taskmanagers if slots.get(tm.profile, 0) == most][-1]
        return taskmanagers[-1]

    # --- the decision -------------------------------------------------------------------------

    def decide(self, observation: Observation, taskmanagers: Sequence[TaskManager],
               now: float) -> Decision:
        """The decision for ``observation`` given the current ``taskmanagers`` (oldest first).

        ``now`` is the time in seconds on the clock the cooldowns are measured with.
        """
        policy = self.policy
        tms = tuple(taskmanagers)
        n = len(tms)
        base = Decision("hold", n, "", now, n, observation=observation, taskmanagers=tms)

        def act(action: str, reason: str, profile: str, name: str | None = None) -> Decision:
            self.up_streak = self.down_streak = 0
            self.last_action_at = now
            target = n + 1 if action == "up" else n - 1
            return replace(base, action=action, target_count=target, profile=profile,
                           taskmanager=name, reason=reason)

        def hold(reason: str) -> Decision:
            return replace(base, reason=reason)

        since = None if self.last_action_at is None else now - self.last_action_at
        if n < policy.min_taskmanagers or n > policy.max_taskmanagers:
            up = n < policy.min_taskmanagers
            cooldown = policy.cooldown_up_s if up else policy.cooldown_down_s
            bound = (f"{n} TaskManagers < min_taskmanagers {policy.min_taskmanagers}" if up
                     else f"{n} TaskManagers > max_taskmanagers {policy.max_taskmanagers}")
            if since is not None and since < cooldown:
                return hold(f"{bound}, but cooling down ({since:.0f} s of {cooldown:.0f} s "
                            "since the last scaling)")
            if up:
                profile = policy.scale_up.profile
                return act("up", f"{bound}; adding a {profile} TaskManager ({n} -> {n + 1})",
                           profile)
            victim = self._to_remove(tms)
            return act("down", f"{bound}; removing {victim.name} ({n} -> {n - 1})",
                       victim.profile, victim.name)
        if not observation.job_running:
            self.up_streak = self.down_streak = 0
            state = observation.job_state or "not running"
            if observation.job_state == "RUNNING" and observation.parallelism > 0:
                state = (f"RUNNING with {observation.tasks_running} of "
                         f"{observation.tasks_total} tasks running")
            return hold(f"job {state} (parallelism {observation.parallelism}); waiting for it "
                        "to run before judging the load")
        if observation.lag_total is None and observation.busy_max_ms_per_s is None \
                and observation.backpressure_max_ms_per_s is None:
            self.up_streak = self.down_streak = 0
            errors = "; ".join(observation.errors) or "no metric reported"
            return hold(f"no load data ({errors})")

        triggers = self._up_triggers(observation)
        calm = None if triggers else self._down_conditions(observation)
        if triggers:
            self.up_streak, self.down_streak = self.up_streak + 1, 0
        elif calm:
            self.up_streak, self.down_streak = 0, self.down_streak + 1
        else:
            self.up_streak = self.down_streak = 0
            lag = "unknown" if observation.lag_total is None else _records(observation.lag_total)
            return hold(f"load within bounds: lag {lag} (down below "
                        f"{_records(policy.scale_down.lag_below)})")

        if triggers:
            why = ", ".join(triggers)
            if self.up_streak < policy.sustain:
                return hold(f"{why} ({self.up_streak} of {policy.sustain} observations)")
            why = f"{why} for {_observations(self.up_streak)}"
            if n >= policy.max_taskmanagers:
                return hold(f"{why}, but already at max_taskmanagers {policy.max_taskmanagers}")
            if since is not None and since < policy.cooldown_up_s:
                return hold(f"{why}, but cooling down ({since:.0f} s of "
                            f"{policy.cooldown_up_s:.0f} s since the last scaling)")
            profile = self._up_profile(observation)
            return act("up", f"{why}; adding a {profile} TaskManager ({n} -> {n + 1})", profile)

        assert calm is not None
        why = ", ".join(calm)
        if self.down_streak < policy.sustain:
            return hold(f"{why} ({self.down_streak} of {policy.sustain} observations)")
        why = f"{why} for {_observations(self.down_streak)}"
        if n <= policy.min_taskmanagers:
            return hold(f"{why}, already at min_taskmanagers {policy.min_taskmanagers}")
        if since is not None and since < policy.cooldown_down_s:
            return hold(f"{why}, but cooling down ({since:.0f} s of "
                        f"{policy.cooldown_down_s:.0f} s since the last scaling)")
        victim = self._to_remove(tms)
        return act("down", f"{why}; removing {victim.name} ({n} -> {n - 1})", victim.profile,
                   victim.name)
