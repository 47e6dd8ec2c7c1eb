"""``/api/v1/jobs``: submit the broker pipeline to Flink, report on it, stop it with a savepoint.

* ``GET /api/v1/jobs``, ``GET /api/v1/jobs/<id>``: from the Flink REST API (``/jobs/overview``,
  ``/jobs/<id>``);
* ``POST /api/v1/jobs`` (admin; body ``{"args": [...]}`` optional): runs
  ``pipelines.broker.run(config.job_args + args)``, imported when called, and answers 202 with
  the Flink id of the job that appeared;
* ``DELETE /api/v1/jobs/<id>`` (admin): stop with a savepoint (``?savepoint=false``: cancel);
* ``POST /api/v1/jobs/<id>/upgrade`` (admin): stop with a savepoint, resubmit with
  ``--savepoint_path=<it>`` and answer once Flink reports the new job restored from that
  savepoint (``restored``: Flink's ``/jobs/<new>/checkpoints`` ``latest.restored``). If the new
  job cannot be submitted or does not restore, the answer is 503 with ``details.savepoint``
  (the old job stays stopped; resubmit with that savepoint). This is how structural changes to
  the chain roll out; the Kafka offsets and the pipeline's state travel in the savepoint.

Flink unreachable, or the pipeline module missing, is 503; nothing is changed then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests
from flask import Blueprint, Response, current_app, jsonify, request

from control_service.auth import require_admin, require_read
from control_service.common import json_body
from control_service.errors import ApiError, bad_request, not_found, unavailable

log = logging.getLogger(__name__)
FLINK_EXTENSION = "alertflow.flink"
SUBMIT_EXTENSION = "alertflow.submit"
TERMINAL = ("FINISHED", "CANCELED", "FAILED")

jobs_bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")


class FlinkClient:
    """The few Flink REST calls we need; every failure is an :class:`ApiError` 503 (or 404)."""

    def __init__(self, base_url: str, timeout_s: float = 5.0, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.session.request(method, self.base_url + path, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as error:
            raise unavailable(f"the Flink REST API at {self.base_url} does not answer", reason=type(error).__name__) from None
        if response.status_code == 404:
            raise not_found(f"Flink has no {path}")
        if response.status_code >= 400:
            raise unavailable(f"Flink answered {response.status_code} to {method} {path}", flink_errors=_flink_errors(response))
        return response.json() if response.content else {}

    def healthy(self) -> bool:
        try:
            self._call("GET", "/overview")
        except ApiError:
            return False
        return True

    def jobs(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/jobs/overview").get("jobs", []))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")

    def vertex_metric_ids(self, job_id: str, vertex_id: str) -> list[str]:
        return [m["id"] for m in self._call("GET", f"/jobs/{job_id}/vertices/{vertex_id}/metrics")]

    def vertex_metrics(self, job_id: str, vertex_id: str, names: Sequence[str]) -> dict[str, float]:
        """``{name: value summed over subtasks}`` for metric names without the subtask prefix
        (``<operator>.<metric>``), asked in batches that keep the URL short (Flink answers a long
        one with 404); a metric no subtask reports is left out."""
        out: dict[str, float] = {}
        batch: list[str] = []
        for name in [*names, None]:
            if batch and (name is None or sum(len(n) + 1 for n in batch) + len(name) > 1500):
                path = f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics"
                rows = self._call("GET", path, params={"get": ",".join(batch), "agg": "sum"})
                out.update({row["id"]: float(row["sum"]) for row in rows if "sum" in row})
                batch = []
            if name is not None:
                batch.append(name)
        return out

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}/checkpoints")

    def restored_from(
        self, job_id: str, savepoint: str, deadline_s: float = 180.0
    ) -> dict[str, Any]:
        """Wait until Flink reports job ``job_id`` restored from ``savepoint``; returns Flink's
        ``latest.restored`` record. Raises 503 if the job fails or ends first, restores from
        something else, or says nothing within ``deadline_s``."""
        deadline = time.monotonic() + deadline_s
        wanted = savepoint.removeprefix("file:").lstrip("/")
        while time.monotonic() < deadline:
            state = self.job(job_id).get("state")
            if state in TERMINAL:
                raise unavailable(f"the resubmitted job {job_id} is {state} before restoring "
                                  f"from {savepoint}", job=job_id, savepoint=savepoint,
                                  exceptions=self.root_exception(job_id))  # fmt: skip
            restored = (self.checkpoints(job_id).get("latest") or {}).get("restored")
            if restored:
                path = str(restored.get("external_path", "")).removeprefix("file:").lstrip("/")
                if path != wanted:
                    raise unavailable(f"job {job_id} restored from {restored.get('external_path')}"
                                      f", not from {savepoint}", job=job_id,
                                      savepoint=savepoint)  # fmt: skip
                return restored
            time.sleep(1.0)
        raise unavailable(f"job {job_id} did not report a restore from {savepoint} in "
                          f"{deadline_s:.0f}s", job=job_id, savepoint=savepoint)  # fmt: skip

    def root_exception(self, job_id: str) -> str:
        """The first line of the job's root exception, or "" (best effort, for reports)."""
        try:
            text = self._call("GET", f"/jobs/{job_id}/exceptions").get("root-exception") or ""
        except ApiError:
            return ""
        return str(text).splitlines()[0][:300] if text else ""

    def stop_with_savepoint(self, job_id: str, target_dir: str, deadline_s: float = 120.0) -> str:
        trigger = self._call("POST", f"/jobs/{job_id}/stop", json={"targetDirectory": target_dir, "drain": False})
        request_id = trigger["request-id"]
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            status = self._call("GET", f"/jobs/{job_id}/savepoints/{request_id}")
            if status.get("status", {}).get("id") == "COMPLETED":
                operation = status.get("operation", {})
                if "location" in operation:
                    return str(operation["location"])
                raise unavailable("Flink could not take the savepoint; the job goes on", cause=str(operation.get("failure-cause", {}).get("class", "unknown")))
            time.sleep(0.5)
        raise unavailable(f"the savepoint of {job_id} did not complete in {deadline_s:.0f}s")

    def cancel(self, job_id: str) -> None:
        self._call("PATCH", f"/jobs/{job_id}", params={"mode": "cancel"})


def _flink_errors(response: requests.Response) -> list[str]:
    try:
        return [str(e).splitlines()[0][:200] for e in response.json().get("errors", [])]
    except ValueError:
        return []


def submit_broker(argv: Sequence[str]) -> Any:
    """Run the broker pipeline; imported here so the service starts without it."""
    try:
        from pipelines import broker
    except ImportError as error:
        raise unavailable("the broker pipeline (pipelines.broker) is not available", reason=str(error)) from None
    return broker.run(list(argv))


def _flink() -> FlinkClient:
    return current_app.extensions[FLINK_EXTENSION]


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": job["jid"],
        "name": job.get("name", ""),
        "state": job.get("state", "UNKNOWN"),
        "start_time": job.get("start-time"),
        "duration_ms": job.get("duration"),
    }


def _validate_args(body: dict[str, Any]) -> list[str]:
    args = body.get("args", [])
    unknown = sorted(set(body) - {"args"})
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(unknown)}", fields=unknown)
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args) or len(args) > 64:
        raise bad_request("args must be a list of at most 64 strings")
    return args


def job_name_of(argv: Sequence[str]) -> str | None:
    """The ``--job-name`` (or ``--job_name``) the last time it is given in ``argv``, else None."""
    name = None
    for index, arg in enumerate(argv):
        for flag in ("--job-name", "--job_name"):
            if arg.startswith(flag + "="):
                name = arg.split("=", 1)[1]
            elif arg == flag and index + 1 < len(argv):
                name = argv[index + 1]
    return name


def _submit(args: Sequence[str], deadline_s: float = 120.0) -> dict[str, Any]:
    """Submit the pipeline with the configured job args + ``args``; return the view of the new
    Flink job (the new one with the submitted job name, when a name is given)."""
    flink = _flink()
    before = {j["jid"] for j in flink.jobs()}
    submit: Callable[[Sequence[str]], Any] = current_app.extensions[SUBMIT_EXTENSION]
    argv = [*current_app.extensions["alertflow.config"].job_args, *args]
    name = job_name_of(argv)
    try:
        result = submit(argv)
    except ApiError:
        raise
    except Exception as error:  # noqa: BLE001 - the runner's failures become one 503
        log.exception("job submission failed")
        raise unavailable("the pipeline could not be submitted", reason=type(error).__name__) from None
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        new = [j for j in flink.jobs() if j["jid"] not in before
               and (name is None or j.get("name") == name)]  # fmt: skip
        if new:
            return {**job_view(new[0]), "beam_state": str(getattr(result, "state", ""))}
        time.sleep(0.5)
    raise unavailable(f"the pipeline was submitted but no new Flink job appeared in {deadline_s:.0f}s")


@jobs_bp.get("")
def list_jobs() -> Response:
    require_read()
    return jsonify({"jobs": [job_view(j) for j in _flink().jobs()]})


@jobs_bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    require_read()
    job = _flink().job(job_id)
    vertices = [{"id": v["id"], "name": v.get("name", ""), "status": v.get("status"), "parallelism": v.get("parallelism")} for v in job.get("vertices", [])]
    return jsonify({**job_view(job), "vertices": vertices})


@jobs_bp.post("")
def submit_job() -> tuple[Response, int]:
    principal = require_admin()
    args = _validate_args(json_body(dict) if request.get_data() else {})
    job = _submit(args)
    current_app.extensions["alertflow.audit"].write(principal, "job.submit", job["id"], None, job["id"], args=args)
    return jsonify(job), 202


@jobs_bp.delete("/<job_id>")
def stop_job(job_id: str) -> Response:
    principal = require_admin()
    savepoint = request.args.get("savepoint", "true")
    if savepoint not in ("true", "false"):
        raise bad_request("savepoint must be true or false")
    flink = _flink()
    job = flink.job(job_id)
    if job.get("state") in TERMINAL:
        raise ApiError(409, "conflict", f"job {job_id} is already {job.get('state')}")
    location = None
    if savepoint == "true":
        location = flink.stop_with_savepoint(job_id, current_app.extensions["alertflow.config"].savepoint_dir)
    else:
        flink.cancel(job_id)
    current_app.extensions["alertflow.audit"].write(principal, "job.stop", job_id, job.get("state"), "STOPPED", savepoint=location)
    return jsonify({"id": job_id, "stopped": True, "savepoint": location})


@jobs_bp.post("/<job_id>/upgrade")
def upgrade_job(job_id: str) -> tuple[Response, int]:
    principal = require_admin()
    args = _validate_args(json_body(dict) if request.get_data() else {})
    flink = _flink()
    if flink.job(job_id).get("state") != "RUNNING":
        raise ApiError(409, "conflict", f"job {job_id} is not running")
    audit = current_app.extensions["alertflow.audit"]
    started = time.monotonic()
    savepoint_dir = current_app.extensions["alertflow.config"].savepoint_dir
    location = flink.stop_with_savepoint(job_id, savepoint_dir)
    savepoint_s = time.monotonic() - started
    try:
        job = _submit([*args, f"--savepoint_path={location}"])
        restored = flink.restored_from(job["id"], location)
    except ApiError as error:
        # The old job is stopped: say where its state is, so the upgrade can be retried.
        error.details = {**error.details, "previous": job_id, "savepoint": location}
        audit.write(principal, "job.upgrade", job_id, job_id, None, savepoint=location,
                    failed=error.message)  # fmt: skip
        raise
    audit.write(principal, "job.upgrade", job_id, job_id, job["id"], savepoint=location)
    timings = {"savepoint_s": round(savepoint_s, 1),
               "total_s": round(time.monotonic() - started, 1)}  # fmt: skip
    body = {**job, "state": flink.job(job["id"]).get("state", job["state"]), "previous": job_id,
            "savepoint": location, "restored": restored, "timings": timings}
    return jsonify(body), 202
