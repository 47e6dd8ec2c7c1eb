"""``/api/v1/scaling``: the autoscaler's state (``GET``) and its policy (``PUT``).

- ``GET /api/v1/scaling``: the policy (and its version), the loop's state, the TaskManagers
  seen at the last step, the latest observation, the effectiveness check of the last
  scale-up (``last_scale_up``: rates before and after, verdict; null before the first
  scale-up with ``min_gain`` set) and the last decisions, oldest first (``?limit=N``,
  default 50), each with the observation it saw, the action and the reason; answered through
  :class:`.api_models.Scaling`.
- ``PUT /api/v1/scaling`` (admin token): a new policy, YAML (``application/yaml``) or JSON,
  validated whole; 422 with every problem's line and column, else applied from the next step
  and written to the audit log.

The loop is ``current_app.extensions[LOOP_EXTENSION]``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import ValidationError

from control_service.auth import require_admin, require_read
from control_service.common import component, iter_issue_dicts
from control_service.errors import bad_request, too_large, unsupported_media_type, validation_failed
from flink_deploy.autoscaler.api_models import PolicyBody, Scaling
from flink_deploy.autoscaler.loop import ScalingLoop
from flink_deploy.autoscaler.model import Policy
from flink_deploy.autoscaler.policy import PolicyError, load_policy, load_policy_data

LOOP_EXTENSION = "alertflow.scaling"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
DEFAULT_LIMIT = 50


scaling_bp = Blueprint("scaling", __name__, url_prefix="/api/v1/scaling")


def _loop() -> ScalingLoop:
    loop: ScalingLoop = current_app.extensions[LOOP_EXTENSION]
    return loop


def scaling_view(loop: ScalingLoop, limit: int | None) -> dict[str, Any]:
    view = {
        "policy_version": loop.policy_version,
        "policy": loop.policy.to_dict(),
        "state": "paused" if loop.paused else "running",
        "taskmanagers": [tm.to_dict() for tm in loop.taskmanagers],
        "observation": loop.latest.to_dict() if loop.latest else None,
        "last_scale_up": check.to_dict() if (check := loop.last_scale_up) else None,
        "decisions": [d.to_dict() for d in loop.decisions(limit)],
    }
    return Scaling.model_validate(view).model_dump(mode="json")


@scaling_bp.get("")
def get_scaling() -> Response:
    require_read()
    return jsonify(scaling_view(_loop(), _limit(request.args.get("limit", str(DEFAULT_LIMIT)))))


def _limit(raw: str) -> int | None:
    """``?limit=``: ASCII digits (``str.isdigit`` also takes "²", which int() refuses); more
    digits than any history holds means every decision (int() refuses over 4300 digits)."""
    if not (raw.isascii() and raw.isdigit()):
        raise bad_request("limit must be a non-negative integer", parameter="limit")
    digits = raw.lstrip("0") or "0"
    return int(digits) if len(digits) <= 9 else None


def _policy_from_body() -> Policy:
    """The request body as a policy; 413/415/400/422 as the case may be."""
    limit = component().config.max_body_bytes  # type: ignore[attr-defined]
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise too_large(f"a policy may be at most {limit} bytes", limit=limit)
    if not raw.strip():
        raise bad_request("the body is empty; send the whole policy")
    try:
        if request.is_json:
            try:
                data = PolicyBody.model_validate_json(raw).root
            except ValidationError:
                raise bad_request("the body must be a JSON object (the whole policy)") from None
            return load_policy_data(data)
        if request.mimetype in YAML_TYPES:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise bad_request("the body is not UTF-8") from None
            return load_policy(text, source="<request>")
    except PolicyError as error:
        raise validation_failed(
            f"the policy has {len(error.issues)} problem(s); nothing was changed",
            iter_issue_dicts(error.issues),
        ) from None
    raise unsupported_media_type(
        "send application/yaml or application/json", content_type=request.content_type or ""
    )


@scaling_bp.put("")
def put_scaling() -> Response:
    principal = require_admin()
    policy = _policy_from_body()
    loop = _loop()
    old = loop.policy_version
    new = loop.replace_policy(policy)
    comp = component()
    comp.audit.write(principal, "scaling.policy.put", comp.id, old, new, policy=policy.to_dict())
    return jsonify(scaling_view(loop, DEFAULT_LIMIT))
