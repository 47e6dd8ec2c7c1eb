"""The scaling loop: every ``policy.interval_s`` seconds, observe -> decide -> apply through
the driver.

Every step records a decision (``hold`` too) in a bounded history; a failure of the driver (or
of anything in the step) is recorded as a decision with action ``error`` and never stops the
loop. ``pause()``/``resume()`` keep the thread but skip the steps; ``stop()`` ends the thread and
closes the observer. While Kafka or Flink is down, each failed observation is a decision too, and
the next one that works is used: the loop recovers by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from flink_deploy.autoscaler.decide import Action, Autoscaler, Decision, ScaleUpCheck, TaskManager
from flink_deploy.autoscaler.drivers import Driver
from flink_deploy.autoscaler.model import Observation, Policy

log = logging.getLogger(__name__)


class Observes(Protocol):
    """What the loop and ``/ready`` need of an observer (:class:`.observe.Observer` fits)."""

    def observe(self) -> Observation: ...

    def kafka_problem(self) -> str | None:
        """Why Kafka cannot be observed now; None if it can."""
        ...

    def flink_problem(self) -> str | None:
        """Why Flink cannot be observed now; None if it can."""
        ...

    def close(self) -> None: ...


class ScalingLoop:
    """Observe -> decide -> apply, every ``interval_s`` of the current policy.

    ``clock`` gives the time (seconds since the epoch) used for the decisions' timestamps and
    the cooldowns. :meth:`step` runs one iteration in the caller's thread (tests call it
    directly); :meth:`start` runs steps on a daemon thread until :meth:`stop`.
    """

    def __init__(
        self,
        autoscaler: Autoscaler,
        observer: Observes,
        driver: Driver,
        *,
        history: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.autoscaler = autoscaler
        self.observer = observer
        self.driver = driver
        self.clock = clock
        self.policy_version = 1
        self._history: deque[Decision] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest: Observation | None = None
        self.taskmanagers: tuple[TaskManager, ...] = ()
        self.steps = 0

    @property
    def policy(self) -> Policy:
        return self.autoscaler.policy

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    @property
    def last_scale_up(self) -> ScaleUpCheck | None:
        """The effectiveness check of the last load-driven scale-up (an immutable object)."""
        with self._lock:
            return self.autoscaler.last_scale_up

    def replace_policy(self, policy: Policy) -> int:
        """Use ``policy`` from the next step on; returns the new policy version."""
        with self._lock:
            self.autoscaler.replace_policy(policy)
            self.policy_version += 1
            return self.policy_version

    def decisions(self, limit: int | None = None) -> list[Decision]:
        """The last ``limit`` decisions (all kept if None), oldest first."""
        with self._lock:
            items = list(self._history)
        return items if limit is None else items[-limit:] if limit else []

    def _record(self, decision: Decision) -> Decision:
        with self._lock:
            self._history.append(decision)
        level = logging.INFO if decision.action is not Action.HOLD else logging.DEBUG
        log.log(level, "scaling: %s: %s", decision.action, decision.reason)
        return decision

    def step(self) -> Decision:
        """One observation, one decision, applied; the decision recorded and returned."""
        observation = self.observer.observe()
        now = self.clock()
        self.latest = observation
        self.steps += 1
        try:
            self.taskmanagers = tuple(self.driver.taskmanagers())
        except Exception as error:  # noqa: BLE001 - any driver failure becomes an "error" decision
            n = len(self.taskmanagers)
            return self._record(
                Decision(
                    Action.ERROR,
                    n,
                    f"cannot list the TaskManagers: {type(error).__name__}: {error}",
                    now,
                    n,
                    observation=observation,
                    taskmanagers=self.taskmanagers,
                )
            )
        with self._lock:
            decision = self.autoscaler.decide(observation, self.taskmanagers, now)
            policy = self.autoscaler.policy
        try:
            if decision.action is Action.UP:
                assert decision.profile is not None
                added = self.driver.add(policy.profile(decision.profile))
                decision = replace(decision, taskmanager=added.name)
                self.taskmanagers = (*self.taskmanagers, added)
            elif decision.action is Action.DOWN:
                assert decision.taskmanager is not None
                self.driver.remove(decision.taskmanager)
                self.taskmanagers = tuple(
                    tm for tm in self.taskmanagers if tm.name != decision.taskmanager
                )
        except Exception as error:  # noqa: BLE001 - any driver failure becomes an "error" decision
            decision = replace(
                decision,
                action=Action.ERROR,
                target_count=decision.current_count,
                reason=f"{decision.reason}; the driver failed to scale "
                f"{decision.action}: {type(error).__name__}: {error}",
            )
        return self._record(decision)

    def _run(self) -> None:
        while not self._stop.wait(self.policy.interval_s):
            if self._paused.is_set():
                continue
            try:
                self.step()
            except Exception:
                log.exception("scaling: the step failed; the loop goes on")

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the scaling loop is already running")
        self._thread = threading.Thread(target=self._run, name="scaling-loop", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ends the thread after the step in progress, then closes the observer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise TimeoutError(f"the scaling loop did not stop within {timeout_s} s")
            self._thread = None
        self.observer.close()
