"""The local driver: TaskManagers of the local stack, started and stopped by PID.

Adds a TaskManager as ``flink-taskmanager-<n>`` (the lowest free ``n``) with the profile's slots
and memory, and waits until it registers with the JobManager; removes one with SIGTERM to its
process group, so it leaves the cluster at once, and checks that nothing of it is left. The
stack's ``state.json`` records each TaskManager with its profile, so ``alertflow stack down``
stops the ones the autoscaler added too.

Python workers: every TaskManager's Python steps run in SDK worker processes forked on demand
by the host's one worker pool (``beam-workerpool``), so a new TaskManager brings its own
workers without a pool of its own. On Kubernetes each TaskManager pod has its pool as a sidecar
(see flink_deploy/README.md).
"""

from __future__ import annotations

from flink_deploy.autoscaler.drivers import DriverError
from flink_deploy.autoscaler.model import Profile, TaskManager
from flink_deploy.sizing import DEFAULT_PROFILE
from flink_deploy.stack import supervisor
from flink_deploy.stack.config import StackConfig, StackError
from flink_deploy.stack.services import TASKMANAGER_PREFIX


class LocalDriver:
    """A :class:`~flink_deploy.autoscaler.drivers.Driver` over the stack in ``cfg.run_dir``."""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg

    def _running(self) -> list[supervisor.Started]:
        return [
            p
            for p in supervisor.RunState(self.cfg.run_dir).load()
            if p.name.startswith(TASKMANAGER_PREFIX) and supervisor.is_running(p)
        ]

    def taskmanagers(self) -> list[TaskManager]:
        """The running TaskManagers, oldest first."""
        return [TaskManager(p.name, p.profile or DEFAULT_PROFILE.name) for p in self._running()]

    def add(self, profile: Profile) -> TaskManager:
        taken = {int(p.name.removeprefix(TASKMANAGER_PREFIX)) for p in self._running()}
        index = min(set(range(1, len(taken) + 2)) - taken)
        try:
            started = supervisor.start_taskmanager(self.cfg, index, profile)
        except StackError as error:
            raise DriverError(str(error)) from error
        return TaskManager(started.name, profile.name)

    def remove(self, name: str) -> None:
        try:
            supervisor.stop_taskmanager(self.cfg, name)
        except StackError as error:
            raise DriverError(str(error)) from error
