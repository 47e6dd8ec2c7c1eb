"""The Flink REST client: every call the control service, the autoscaler and the CLI make to a
Flink JobManager (Flink 1.19 REST API, JSON in and out).

:class:`FlinkRest` has one method per operation: the cluster ``/overview`` and TaskManagers,
the jobs (``/jobs/overview``, ``/jobs/<jid>``), their metrics (job, vertex, aggregated over
subtasks), checkpoint statistics, root exception, cancel, stop with a savepoint (trigger, then
poll the savepoint status) and the wait for a resubmitted job to report its restore.

Every failure is one :class:`FlinkRestError` carrying the HTTP status (None when Flink did not
answer), the method and the URL: a connection failure or timeout (``timeout_s`` per call), an
answer of 400 or more, an answer that is not JSON, and a savepoint or restore that does not
happen. Callers turn it into their own error (the control service: 404 or 503; the autoscaler:
a line in its observation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import requests

#: The job states Flink never leaves.
TERMINAL_STATES = ("FINISHED", "CANCELED", "FAILED")
#: Metric names per ``subtasks/metrics`` query: Flink answers a longer URL with 404.
_MAX_QUERY_CHARS = 1500


class FlinkRestError(Exception):
    """A Flink REST call that failed: ``status`` is Flink's HTTP status, or None when it did
    not answer; ``details`` are JSON-serialisable facts for reports (Flink's own error lines,
    the failure's exception type, the job and savepoint concerned)."""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        url: str,
        path: str,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.url = url
        self.path = path
        self.status = status
        self.details = dict(details or {})


class FlinkRest:
    """A client of the Flink REST API at ``base_url``; ``session`` replaces the HTTP session
    (tests) and ``sleep`` the wait between polls."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 5.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self._sleep = sleep

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer to ``method path`` (``{}`` for an empty body)."""
        try:
            response = self.session.request(
                method, self.base_url + path, timeout=self.timeout_s, **kwargs
            )
        except requests.RequestException as error:
            raise self._error(
                f"the Flink REST API at {self.base_url} does not answer {method} {path} "
                f"({type(error).__name__}: {error})",
                path,
                method,
                reason=type(error).__name__,
            ) from None
        status = response.status_code
        if status >= 400:
            raise self._error(
                f"Flink at {self.base_url} answered {status} to {method} {path}",
                path,
                method,
                status,
                flink_errors=_flink_errors(response),
            )
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise self._error(
                f"the answer of Flink at {self.base_url} to {method} {path} is not JSON",
                path,
                method,
                status,
            ) from None

    def _error(
        self,
        message: str,
        path: str,
        method: str = "GET",
        status: int | None = None,
        **details: Any,
    ) -> FlinkRestError:
        """The error of ``method path``; with the defaults, an operation Flink answered but did
        not carry out (a savepoint, a restore)."""
        return FlinkRestError(
            message,
            method=method,
            url=self.base_url + path,
            path=path,
            status=status,
            details=details,
        )

    # --- the cluster --------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """``/overview``: TaskManagers, slots (``slots-total``, ``slots-available``), jobs."""
        return dict(self._call("GET", "/overview"))

    def healthy(self) -> bool:
        """Whether ``/overview`` answers."""
        try:
            self.overview()
        except FlinkRestError:
            return False
        return True

    def taskmanagers(self) -> list[dict[str, Any]]:
        """``/taskmanagers``: one record per registered TaskManager."""
        return list(self._call("GET", "/taskmanagers").get("taskmanagers", []))

    # --- jobs ---------------------------------------------------------------------------------

    def jobs(self) -> list[dict[str, Any]]:
        """``/jobs/overview``: every job the JobManager knows, ended ones included."""
        return list(self._call("GET", "/jobs/overview").get("jobs", []))

    def job(self, job_id: str) -> dict[str, Any]:
        """``/jobs/<jid>``: the job with its ``vertices``."""
        return dict(self._call("GET", f"/jobs/{job_id}"))

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        """``/jobs/<jid>/checkpoints``: counts and the ``latest`` completed/restored/... ones."""
        return dict(self._call("GET", f"/jobs/{job_id}/checkpoints"))

    def checkpoint_config(self, job_id: str) -> dict[str, Any]:
        """``/jobs/<jid>/checkpoints/config``: the interval, mode, timeout, ..."""
        return dict(self._call("GET", f"/jobs/{job_id}/checkpoints/config"))

    def root_exception(self, job_id: str) -> str:
        """The first line of the job's root exception, or "" (best effort, for reports)."""
        try:
            text = self._call("GET", f"/jobs/{job_id}/exceptions").get("root-exception") or ""
        except FlinkRestError:
            return ""
        return str(text).splitlines()[0][:300] if text else ""

    # --- metrics ------------------------------------------------------------------------------

    def job_metrics(self, job_id: str, names: Sequence[str]) -> dict[str, str]:
        """``{name: value}`` of job-level metrics (``numRestarts``, ...), as Flink writes them."""
        rows = self._call("GET", f"/jobs/{job_id}/metrics", params={"get": ",".join(names)})
        return {row["id"]: row["value"] for row in rows if "value" in row}

    def vertex_metric_ids(self, job_id: str, vertex_id: str) -> list[str]:
        """Every metric id of a vertex, with its subtask prefix (``0.<operator>.<metric>``)."""
        path = f"/jobs/{job_id}/vertices/{vertex_id}/metrics"
        return [m["id"] for m in self._call("GET", path)]

    def subtask_metrics(
        self, job_id: str, vertex_id: str, names: Sequence[str], agg: str = "sum"
    ) -> dict[str, float]:
        """``{name: value aggregated over subtasks}`` (``agg``: sum, max, min, avg) for metric
        names without the subtask prefix, asked in batches that keep the URL short; a metric no
        subtask reports, or whose value is not a number, is left out (NaN is a number)."""
        out: dict[str, float] = {}
        batch: list[str] = []
        path = f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics"
        for name in [*names, None]:
            if batch and (
                name is None or sum(len(n) + 1 for n in batch) + len(name) > _MAX_QUERY_CHARS
            ):
                rows = self._call("GET", path, params={"get": ",".join(batch), "agg": agg})
                out.update(
                    {
                        row["id"]: value
                        for row in rows
                        if (value := _float(row.get(agg))) is not None
                    }
                )
                batch = []
            if name is not None:
                batch.append(name)
        return out

    # --- changing a job -----------------------------------------------------------------------

    def cancel(self, job_id: str) -> None:
        self._call("PATCH", f"/jobs/{job_id}", params={"mode": "cancel"})

    def trigger_stop_with_savepoint(self, job_id: str, target_dir: str) -> str:
        """Ask Flink to stop the job with a savepoint in ``target_dir``; returns the request
        id to poll with :meth:`savepoint_status`."""
        trigger = self._call(
            "POST", f"/jobs/{job_id}/stop", json={"targetDirectory": target_dir, "drain": False}
        )
        return str(trigger["request-id"])

    def savepoint_status(self, job_id: str, request_id: str) -> dict[str, Any]:
        """``/jobs/<jid>/savepoints/<request id>``: ``status.id`` (IN_PROGRESS, COMPLETED)
        and, once completed, ``operation.location`` or ``operation.failure-cause``."""
        return dict(self._call("GET", f"/jobs/{job_id}/savepoints/{request_id}"))

    def stop_with_savepoint(
        self, job_id: str, target_dir: str, deadline_s: float = 120.0, poll_s: float = 0.5
    ) -> str:
        """Stop the job with a savepoint; returns the savepoint's location once Flink reports
        it complete. Raises if Flink could not take it (the job goes on) or it takes longer
        than ``deadline_s``."""
        request_id = self.trigger_stop_with_savepoint(job_id, target_dir)
        path = f"/jobs/{job_id}/savepoints/{request_id}"
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            status = self.savepoint_status(job_id, request_id)
            if status.get("status", {}).get("id") == "COMPLETED":
                operation = status.get("operation", {})
                if "location" in operation:
                    return str(operation["location"])
                cause = str(operation.get("failure-cause", {}).get("class", "unknown"))
                raise self._error(
                    "Flink could not take the savepoint; the job goes on", path, cause=cause
                )
            self._sleep(poll_s)
        raise self._error(f"the savepoint of {job_id} did not complete in {deadline_s:.0f}s", path)

    def restored_from(
        self, job_id: str, savepoint: str, deadline_s: float = 180.0, poll_s: float = 1.0
    ) -> dict[str, Any]:
        """Wait until Flink reports job ``job_id`` restored from ``savepoint``; returns Flink's
        ``latest.restored`` record. Raises if the job ends first, restores from something
        else, or says nothing within ``deadline_s``."""
        path = f"/jobs/{job_id}/checkpoints"
        deadline = time.monotonic() + deadline_s
        wanted = savepoint.removeprefix("file:").lstrip("/")
        while time.monotonic() < deadline:
            state = self.job(job_id).get("state")
            if state in TERMINAL_STATES:
                raise self._error(
                    f"the resubmitted job {job_id} is {state} before restoring from {savepoint}",
                    f"/jobs/{job_id}",
                    job=job_id,
                    savepoint=savepoint,
                    exceptions=self.root_exception(job_id),
                )
            try:
                restored = (self.checkpoints(job_id).get("latest") or {}).get("restored")
            except FlinkRestError as error:
                # A job that is still initializing has no checkpoint statistics yet, and Flink
                # answers 500 ("not available while the JobManager is initializing").
                if error.status is None or error.status < 500:
                    raise
                restored = None
            if restored:
                found = str(restored.get("external_path", "")).removeprefix("file:").lstrip("/")
                if found != wanted:
                    raise self._error(
                        f"job {job_id} restored from "
                        f"{restored.get('external_path')}, not from {savepoint}",
                        path,
                        job=job_id,
                        savepoint=savepoint,
                    )
                return dict(restored)
            self._sleep(poll_s)
        raise self._error(
            f"job {job_id} did not report a restore from {savepoint} in {deadline_s:.0f}s",
            path,
            job=job_id,
            savepoint=savepoint,
        )


def _flink_errors(response: requests.Response) -> list[str]:
    """The first lines of the ``errors`` Flink puts in a failed answer."""
    try:
        return [str(e).splitlines()[0][:200] for e in response.json().get("errors", [])]
    except (ValueError, AttributeError):
        return []


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
