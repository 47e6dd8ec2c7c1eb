"""The decision engine: from an observation and the current TaskManagers to up, down or hold.

Pure: no I/O and no clock of its own (``now`` is passed in); the records it reads and makes
(:class:`~.model.Observation`, :class:`~.model.Decision`, ...) are in :mod:`.model`, and an
import-linter contract keeps both free of I/O. :class:`Autoscaler` keeps the hysteresis state
(how many consecutive observations agreed on "up" or on "down", and when the last scaling
action was decided) and the effectiveness check of the last scale-up
(:class:`~.model.ScaleUpCheck`).

Rules, in order, once the JobManager answers (while it does not, nothing is scaled: a
TaskManager added then would have no cluster to join, as when the stack is gone):

1. **Bounds.** Fewer TaskManagers than ``min_taskmanagers``: up (``scale_up.profile``); more
   than ``max_taskmanagers``: down. Without sustain, and whatever the job's state, but after
   the cooldown (so a driver that fails is not called on every observation).
2. **No running job** (``job_state`` not RUNNING, parallelism 0, or tasks still waiting for
   slots: restarting after a rescale, a TaskManager lost, not submitted yet): hold, and the
   streaks restart from zero.
3. **Stale lag** (``checkpointed_since_restore`` False: the job was restored from a checkpoint,
   after a rescale or a failure, and no checkpoint completed since): hold, streaks restart.
   The broker commits its offsets on checkpoints, so until then the lag is that of the
   checkpoint restored from, high and flat. Unknown (None) neither blocks nor triggers.
4. **No load data** (the lag unknown and no Flink metric either): hold, streaks restart.
5. **Up** when any configured trigger holds: lag > ``lag_above``, max busy time >
   ``busy_above_ms_per_s``, max backpressure > ``backpressure_above_ms_per_s``.
   **Down** when the lag is known and < ``lag_below`` and, if configured and reported, max busy
   time < ``busy_below_ms_per_s``. A metric Flink does not report (the busy time of a chained
   legacy source is NaN) neither triggers nor blocks. Never down while the lag is unknown or
   above ``lag_below``.
6. **Sustain.** Act only when ``sustain`` consecutive observations agree; any other observation
   restarts the count, so alternating input never acts (no flapping).
7. **Cooldown.** An up needs ``cooldown_up_s``, a down ``cooldown_down_s``, since the last
   scaling action; bounds ``max_taskmanagers`` / ``min_taskmanagers`` are never crossed.
8. **Effectiveness** (``scale_up.min_gain`` set; Flink's Kubernetes operator has the same
   idea). A rescale stops processing for tens of seconds, so a TaskManager that brings no
   throughput (a saturated CPU) makes the lag worse. The throughput is ``records_out_per_s``
   (the growth of the committed offsets: alerts processed per second), and a rate counts only
   from an observation of a running job that had checkpointed since its restore, as had the
   observation before it (the first rate after a restore spans the time the offsets stood
   still), and with the job loaded (lag > ``scale_down.lag_below``): then it is the capacity.

   - *Before*: the mean of the counted rates over the up-streak that decided a scale-up
     (none counted: the check is ``unknown``).
   - *After*: once the TaskManagers number what the scale-up made and the job runs at a
     higher parallelism than when it was decided, the mean of the next ``sustain`` counted
     rates. Less than before x (1 + ``min_gain``): **ineffective**, no scale-up for
     ``ineffective_hold_s`` (bounds repair excepted); else **effective**, nothing blocked.
   - While it is measured, a sustained up waits for the verdict (so the next TaskManager is
     not added before the last one is judged). The result is ``unknown`` (nothing blocked) if
     the load ends first (lag <= ``lag_below``), the lag or the checkpoint state becomes
     unknown, the TaskManager count changes, or ``ineffective_hold_s`` passes without one.

   The decision in which a verdict is reached says so at the end of its reason;
   :attr:`Autoscaler.last_scale_up` keeps the last check (``GET /api/v1/scaling`` shows it).
9. **Profile.** Up adds ``scale_up.large_profile`` when the lag is > ``large_lag_above``, else
   ``scale_up.profile``. Down removes the newest TaskManager (``remove: newest``) or the newest
   of those with the most slots (``remove: largest``).

A decision to act starts the cooldown whether or not the driver then succeeds, so a failing
driver is retried once per cooldown, not on every observation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from flink_deploy.autoscaler.model import (
    Action,
    Decision,
    Observation,
    Policy,
    ScaleUpCheck,
    TaskManager,
    Verdict,
)

# The records a decision is made of are defined in .model; callers may take them from here.
__all__ = ["Action", "Autoscaler", "Decision", "ScaleUpCheck", "TaskManager", "Verdict"]


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.4g}%"


def _records(value: int) -> str:
    return f"{value:,}"


def _observations(count: int) -> str:
    return f"{count} observation{'' if count == 1 else 's'}"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms/s"


class Autoscaler:
    """Decides with ``policy``; keeps the streaks, the time of the last action and the check
    of the last scale-up (``last_scale_up``, replaced whole: readers may take it unlocked)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.up_streak = 0
        self.down_streak = 0
        self.last_action_at: float | None = None
        self.last_scale_up: ScaleUpCheck | None = None
        self._up_rate_sum = 0.0  # the counted rates of the current up-streak
        self._up_rate_count = 0
        self._was_fresh = False  # the previous observation: running, checkpointed since restore

    def replace_policy(self, policy: Policy) -> None:
        """Use ``policy`` from the next decision on; the streaks restart, the cooldown holds,
        and so does a block after an ineffective scale-up unless ``min_gain`` is now null
        (which also ends a measurement in progress, as ``unknown``)."""
        self.policy = policy
        self._reset_streaks()
        check = self.last_scale_up
        if (
            policy.scale_up.min_gain is None
            and check is not None
            and check.verdict is Verdict.MEASURING
        ):
            self.last_scale_up = replace(
                check,
                verdict=Verdict.UNKNOWN,
                reason=f"{check.label} was not measured: the new policy has no min_gain",
            )

    def _reset_streaks(self) -> None:
        self.up_streak = self.down_streak = 0
        self._up_rate_sum, self._up_rate_count = 0.0, 0

    # --- the rules ----------------------------------------------------------------------------

    def _up_triggers(self, obs: Observation) -> list[str]:
        """The up triggers that hold (rule 5), in words."""
        up = self.policy.scale_up
        out = []
        if up.lag_above is not None and obs.lag_total is not None and obs.lag_total > up.lag_above:
            out.append(f"lag {_records(obs.lag_total)} > {_records(up.lag_above)}")
        busy, pressure = obs.busy_max_ms_per_s, obs.backpressure_max_ms_per_s
        if (
            up.busy_above_ms_per_s is not None
            and busy is not None
            and busy > up.busy_above_ms_per_s
        ):
            out.append(f"busy {_ms(busy)} > {_ms(up.busy_above_ms_per_s)}")
        if (
            up.backpressure_above_ms_per_s is not None
            and pressure is not None
            and pressure > up.backpressure_above_ms_per_s
        ):
            out.append(f"backpressure {_ms(pressure)} > {_ms(up.backpressure_above_ms_per_s)}")
        return out

    def _down_conditions(self, obs: Observation) -> list[str] | None:
        """Why the load is low enough to scale down (rule 5), or None if it is not."""
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
        """The profile to add (rule 9)."""
        up = self.policy.scale_up
        if (
            up.large_profile is not None
            and up.large_lag_above is not None
            and obs.lag_total is not None
            and obs.lag_total > up.large_lag_above
        ):
            return up.large_profile
        return up.profile

    def _loaded(self, obs: Observation) -> bool:
        return obs.lag_total is not None and obs.lag_total > self.policy.scale_down.lag_below

    def _blocked(self, now: float) -> ScaleUpCheck | None:
        """The ineffective check that blocks load-driven scale-ups at ``now``, if any."""
        check = self.last_scale_up
        if (
            self.policy.scale_up.min_gain is None
            or check is None
            or check.verdict is not Verdict.INEFFECTIVE
            or check.blocked_until is None
        ):
            return None
        return check if now < check.blocked_until else None

    def _measuring(self) -> ScaleUpCheck | None:
        check = self.last_scale_up
        if (
            self.policy.scale_up.min_gain is None
            or check is None
            or check.verdict is not Verdict.MEASURING
        ):
            return None
        return check

    def _start_check(self, obs: Observation, n: int, now: float) -> None:
        """After a load-driven up: measure it (rule 8), from the up-streak's mean rate."""
        min_gain = self.policy.scale_up.min_gain
        if min_gain is None:
            return
        before = self._up_rate_sum / self._up_rate_count if self._up_rate_count else None
        check = ScaleUpCheck(now, n, n + 1, obs.parallelism, min_gain, before)
        if before is None:
            check = replace(
                check,
                verdict=Verdict.UNKNOWN,
                judged_at=now,
                reason=f"{check.label} was not measured: no throughput counted "
                "before it (no loaded observation with a fresh rate)",
            )
        self.last_scale_up = check

    def _measure(self, obs: Observation, rate: float | None, n: int, now: float) -> str | None:
        """One step of the measurement in progress (rule 8); the verdict's words if reached.

        ``obs`` is of a running job whose lag is not stale; ``rate`` its counted rate or None.
        """
        check = self._measuring()
        if check is None:
            return None
        policy = self.policy
        hold_s, lag_below = policy.scale_up.ineffective_hold_s, policy.scale_down.lag_below

        def unknown(why: str) -> str:
            reason = f"{check.label} was not measured: {why}"
            self.last_scale_up = replace(
                check, verdict=Verdict.UNKNOWN, reason=reason, judged_at=now
            )
            return reason

        if n != check.taskmanagers_after:
            return unknown(f"{n} TaskManagers now, not {check.taskmanagers_after}")
        if now - check.decided_at > hold_s:
            return unknown(f"no result within ineffective_hold_s ({hold_s:.0f} s)")
        if obs.parallelism <= check.parallelism_before:
            return None  # not rescaled yet: these rates are still those of before
        if obs.lag_total is None or obs.checkpointed_since_restore is None:
            return unknown("the lag or the job's checkpoints became unknown")
        if obs.lag_total <= lag_below:
            return unknown(
                f"the load ended (lag {_records(obs.lag_total)} <= "
                f"{_records(lag_below)}) after {len(check.rates_after)} of "
                f"{_observations(policy.sustain)}"
            )
        if rate is None:
            return None  # the first rate after the restore spans the stale offsets
        rates = (*check.rates_after, rate)
        if len(rates) < policy.sustain:
            self.last_scale_up = replace(check, rates_after=rates)
            return None
        assert check.rate_before is not None  # a check without one starts as unknown
        after, before = sum(rates) / len(rates), check.rate_before
        took = f"{check.label} took throughput from {_rate(before)} to {_rate(after)} alerts/s"
        if after < before * (1 + check.min_gain):
            reason = f"{took} (< +{_percent(check.min_gain)}): no scale-up for {hold_s:.0f} s"
            self.last_scale_up = replace(
                check,
                rates_after=rates,
                verdict=Verdict.INEFFECTIVE,
                reason=reason,
                judged_at=now,
                blocked_until=now + hold_s,
            )
        else:
            reason = f"{took} (>= +{_percent(check.min_gain)}): effective"
            self.last_scale_up = replace(
                check, rates_after=rates, verdict=Verdict.EFFECTIVE, reason=reason, judged_at=now
            )
        return reason

    def _to_remove(self, taskmanagers: Sequence[TaskManager]) -> TaskManager:
        """The TaskManager to remove (rule 9)."""
        if self.policy.scale_down.remove == "largest":
            slots = {p.name: p.slots for p in self.policy.profiles}
            most = max(slots.get(tm.profile, 0) for tm in taskmanagers)
            return [tm for tm in taskmanagers if slots.get(tm.profile, 0) == most][-1]
        return taskmanagers[-1]

    # --- the decision -------------------------------------------------------------------------

    def decide(
        self, observation: Observation, taskmanagers: Sequence[TaskManager], now: float
    ) -> Decision:
        """The decision for ``observation`` given the current ``taskmanagers`` (oldest first).

        ``now`` is the time in seconds on the clock the cooldowns are measured with.
        """
        policy = self.policy
        tms = tuple(taskmanagers)
        n = len(tms)
        base = Decision(Action.HOLD, n, "", now, n, observation=observation, taskmanagers=tms)
        fresh = observation.job_running and observation.checkpointed_since_restore is True
        rate = observation.records_out_per_s if fresh and self._was_fresh else None
        self._was_fresh = fresh

        since = None if self.last_action_at is None else now - self.last_action_at
        if observation.taskmanagers is None:
            # A TaskManager added now would have no cluster to join (the stack may be gone).
            self._reset_streaks()
            errors = "; ".join(e for e in observation.errors if e.startswith("flink cluster"))
            why = errors or "no view of the cluster"
            return replace(
                base,
                reason=f"the JobManager does not answer ({why}); nothing is scaled until it does",
            )
        if n < policy.min_taskmanagers or n > policy.max_taskmanagers:  # rule 1
            up = n < policy.min_taskmanagers
            cooldown = policy.cooldown_up_s if up else policy.cooldown_down_s
            bound = (
                f"{n} TaskManagers < min_taskmanagers {policy.min_taskmanagers}"
                if up
                else f"{n} TaskManagers > max_taskmanagers {policy.max_taskmanagers}"
            )
            if since is not None and since < cooldown:
                return replace(
                    base,
                    reason=f"{bound}, but cooling down ({since:.0f} s of "
                    f"{cooldown:.0f} s since the last scaling)",
                )
            if up:
                profile = policy.scale_up.profile
                return self._act(
                    base,
                    Action.UP,
                    f"{bound}; adding a {profile} TaskManager ({n} -> {n + 1})",
                    profile,
                )
            victim = self._to_remove(tms)
            return self._act(
                base,
                Action.DOWN,
                f"{bound}; removing {victim.name} ({n} -> {n - 1})",
                victim.profile,
                victim.name,
            )
        if not observation.job_running:  # rule 2
            self._reset_streaks()
            state = observation.job_state or "not running"
            if observation.job_state == "RUNNING" and observation.parallelism > 0:
                state = (
                    f"RUNNING with {observation.tasks_running} of "
                    f"{observation.tasks_total} tasks running"
                )
            return replace(
                base,
                reason=f"job {state} (parallelism {observation.parallelism}); "
                "waiting for it to run before judging the load",
            )
        if observation.checkpointed_since_restore is False:  # rule 3
            self._reset_streaks()
            return replace(
                base,
                reason="restored from a checkpoint and none completed since: "
                "the committed offsets, and so the lag, are stale",
            )
        if (  # rule 4
            observation.lag_total is None
            and observation.busy_max_ms_per_s is None
            and observation.backpressure_max_ms_per_s is None
        ):
            self._reset_streaks()
            errors = "; ".join(observation.errors) or "no metric reported"
            return replace(base, reason=f"no load data ({errors})")

        verdict = self._measure(observation, rate, n, now)
        decision = self._by_load(base, observation, rate, since)
        if verdict is not None and verdict not in decision.reason:
            decision = replace(decision, reason=f"{decision.reason}; {verdict}")
        return decision

    def _act(
        self, base: Decision, action: Action, reason: str, profile: str, name: str | None = None
    ) -> Decision:
        self._reset_streaks()
        self.last_action_at = base.timestamp
        n = base.current_count
        target = n + 1 if action is Action.UP else n - 1
        return replace(
            base,
            action=action,
            target_count=target,
            profile=profile,
            taskmanager=name,
            reason=reason,
        )

    def _by_load(
        self, base: Decision, observation: Observation, rate: float | None, since: float | None
    ) -> Decision:
        """Rules 5-9, for a running job whose load is known and not stale."""
        policy = self.policy
        n, now = base.current_count, base.timestamp

        def hold(reason: str) -> Decision:
            return replace(base, reason=reason)

        triggers = self._up_triggers(observation)
        calm = None if triggers else self._down_conditions(observation)
        if triggers:
            self.up_streak, self.down_streak = self.up_streak + 1, 0
            if rate is not None and self._loaded(observation):
                self._up_rate_sum += rate
                self._up_rate_count += 1
        elif calm:
            down_streak = self.down_streak + 1
            self._reset_streaks()
            self.down_streak = down_streak
        else:
            self._reset_streaks()
            lag = "unknown" if observation.lag_total is None else _records(observation.lag_total)
            return hold(
                f"load within bounds: lag {lag} (down below "
                f"{_records(policy.scale_down.lag_below)})"
            )
        if triggers:
            why = ", ".join(triggers)
            if self.up_streak < policy.sustain:  # rule 6
                return hold(f"{why} ({self.up_streak} of {policy.sustain} observations)")
            why = f"{why} for {_observations(self.up_streak)}"
            if n >= policy.max_taskmanagers:  # rule 7
                return hold(f"{why}, but already at max_taskmanagers {policy.max_taskmanagers}")
            blocked = self._blocked(now)  # rule 8
            if blocked is not None:
                assert blocked.blocked_until is not None
                return hold(
                    f"{why}, but {blocked.reason} ({blocked.blocked_until - now:.0f} s left)"
                )
            measuring = self._measuring()  # rule 8
            if measuring is not None:
                progress = (
                    f"{len(measuring.rates_after)} of {_observations(policy.sustain)}"
                    if observation.parallelism > measuring.parallelism_before
                    else f"the job not rescaled yet: parallelism {observation.parallelism}"
                )
                return hold(f"{why}, but waiting for the verdict on {measuring.label}: {progress}")
            if since is not None and since < policy.cooldown_up_s:  # rule 7
                return hold(
                    f"{why}, but cooling down ({since:.0f} s of "
                    f"{policy.cooldown_up_s:.0f} s since the last scaling)"
                )
            profile = self._up_profile(observation)
            self._start_check(observation, n, now)  # before _act resets the streak's rates
            return self._act(
                base, Action.UP, f"{why}; adding a {profile} TaskManager ({n} -> {n + 1})", profile
            )

        assert calm is not None
        why = ", ".join(calm)
        if self.down_streak < policy.sustain:  # rule 6
            return hold(f"{why} ({self.down_streak} of {policy.sustain} observations)")
        why = f"{why} for {_observations(self.down_streak)}"
        if n <= policy.min_taskmanagers:  # rule 7
            return hold(f"{why}, already at min_taskmanagers {policy.min_taskmanagers}")
        if since is not None and since < policy.cooldown_down_s:  # rule 7
            return hold(
                f"{why}, but cooling down ({since:.0f} s of "
                f"{policy.cooldown_down_s:.0f} s since the last scaling)"
            )
        victim = self._to_remove(base.taskmanagers)
        return self._act(
            base,
            Action.DOWN,
            f"{why}; removing {victim.name} ({n} -> {n - 1})",
            victim.profile,
            victim.name,
        )
