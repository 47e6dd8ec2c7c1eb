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

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import ValidationError

from control_service.auth import require_admin, require_read
from control_service.common import json_body
from control_service.control_models import JobRequest
from control_service.errors import ApiError, bad_request, error_response, not_found, unavailable
from flink_deploy.flink_rest import TERMINAL_STATES, FlinkRest, FlinkRestError

log = logging.getLogger(__name__)
FLINK_EXTENSION = "alertflow.flink"
SUBMIT_EXTENSION = "alertflow.submit"

jobs_bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")


def flink_api_error(error: FlinkRestError) -> ApiError:
    """The API's answer to a failed Flink call: 404 if Flink has no such thing, else 503."""
    if error.status == 404:
        return not_found(f"Flink has no {error.path}")
    return unavailable(error.message, **error.details)


def _flink_error_response(error: FlinkRestError) -> Response:
    api = flink_api_error(error)
    return error_response(api.status, api.error, api.message, api.details)


def register_flink_errors(app: Flask) -> None:
    """Answer a :class:`FlinkRestError` raised by any handler as 404 or 503."""
    app.register_error_handler(FlinkRestError, _flink_error_response)


def submit_broker(argv: Sequence[str]) -> Any:
    """Run the broker pipeline; imported here so the service starts without it."""
    try:
        from pipelines import broker
    except ImportError as error:
        raise unavailable(
            "the broker pipeline (pipelines.broker) is not available", reason=str(error)
        ) from None
    return broker.run(list(argv))


def _flink() -> FlinkRest:
    flink: FlinkRest = current_app.extensions[FLINK_EXTENSION]
    return flink


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": job["jid"],
        "name": job.get("name", ""),
        "state": job.get("state", "UNKNOWN"),
        "start_time": job.get("start-time"),
        "duration_ms": job.get("duration"),
    }


def _validate_args(body: dict[str, Any]) -> list[str]:
    """The body as a :class:`.control_models.JobRequest`; 400 otherwise."""
    try:
        return JobRequest.model_validate(body).args
    except ValidationError as error:
        unknown = sorted(str(e["loc"][0]) for e in error.errors() if e["type"] == "extra_forbidden")
        if unknown:
            raise bad_request(f"unknown field(s): {', '.join(unknown)}", fields=unknown) from None
        raise bad_request("args must be a list of at most 64 strings") from None


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
    except Exception as error:
        log.exception("job submission failed")
        raise unavailable(
            "the pipeline could not be submitted", reason=type(error).__name__
        ) from None
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        new = [
            j
            for j in flink.jobs()
            if j["jid"] not in before and (name is None or j.get("name") == name)
        ]
        if new:
            return {**job_view(new[0]), "beam_state": str(getattr(result, "state", ""))}
        time.sleep(0.5)
    raise unavailable(
        f"the pipeline was submitted but no new Flink job appeared in {deadline_s:.0f}s"
    )


@jobs_bp.get("")
def list_jobs() -> Response:
    require_read()
    return jsonify({"jobs": [job_view(j) for j in _flink().jobs()]})


@jobs_bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    require_read()
    job = _flink().job(job_id)
    vertices = [
        {
            "id": v["id"],
            "name": v.get("name", ""),
            "status": v.get("status"),
            "parallelism": v.get("parallelism"),
        }
        for v in job.get("vertices", [])
    ]
    return jsonify({**job_view(job), "vertices": vertices})


@jobs_bp.post("")
def submit_job() -> tuple[Response, int]:
    principal = require_admin()
    args = _validate_args(json_body(dict) if request.get_data() else {})
    job = _submit(args)
    current_app.extensions["alertflow.audit"].write(
        principal, "job.submit", job["id"], None, job["id"], args=args
    )
    return jsonify(job), 202


@jobs_bp.delete("/<job_id>")
def stop_job(job_id: str) -> Response:
    principal = require_admin()
    savepoint = request.args.get("savepoint", "true")
    if savepoint not in ("true", "false"):
        raise bad_request("savepoint must be true or false")
    flink = _flink()
    job = flink.job(job_id)
    if job.get("state") in TERMINAL_STATES:
        raise ApiError(409, "conflict", f"job {job_id} is already {job.get('state')}")
    location = None
    if savepoint == "true":
        location = flink.stop_with_savepoint(
            job_id, current_app.extensions["alertflow.config"].savepoint_dir
        )
    else:
        flink.cancel(job_id)
    current_app.extensions["alertflow.audit"].write(
        principal, "job.stop", job_id, job.get("state"), "STOPPED", savepoint=location
    )
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
    except (ApiError, FlinkRestError) as failure:
        # The old job is stopped: say where its state is, so the upgrade can be retried.
        error = flink_api_error(failure) if isinstance(failure, FlinkRestError) else failure
        error.details = {**error.details, "previous": job_id, "savepoint": location}
        audit.write(
            principal, "job.upgrade", job_id, job_id, None, savepoint=location, failed=error.message
        )
        raise error from None
    audit.write(principal, "job.upgrade", job_id, job_id, job["id"], savepoint=location)
    timings = {
        "savepoint_s": round(savepoint_s, 1),
        "total_s": round(time.monotonic() - started, 1),
    }
    body = {
        **job,
        "state": flink.job(job["id"]).get("state", job["state"]),
        "previous": job_id,
        "savepoint": location,
        "restored": restored,
        "timings": timings,
    }
    return jsonify(body), 202
