"""The autoscaler's request and response models, ``/api/v1/scaling``'s operations and the
autoscaler's OpenAPI document (:func:`autoscaler_spec`: the common API plus its own).

The response models are the wire form of the records (``to_dict`` of :class:`.model.Decision`,
:class:`.model.ScaleUpCheck`, :class:`.model.Observation`, :class:`.model.TaskManager`);
``GET /api/v1/scaling`` answers through :class:`Scaling`. The policy keeps its positioned
validator (:mod:`.policy`: issues with line and column); only its JSON envelope is modelled.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, RootModel

from control_service.openapi import (
    REPLACE_ERRORS,
    Body,
    Media,
    Operation,
    Param,
    common_operations,
    document,
    reply,
)
from flink_deploy.autoscaler.model import Action, Verdict
from flink_deploy.autoscaler.policy import DEFAULT_POLICY_FILE, load_policy


class TaskManager(BaseModel):
    name: str
    profile: str


class Observation(BaseModel):
    """What the autoscaler saw at ``timestamp`` (seconds since the epoch); null: not known
    (see ``errors``)."""

    timestamp: float
    lag_total: int | None
    lag_by_topic: dict[str, int]
    records_in_per_s: float | None
    records_out_per_s: float | None
    busy_max_ms_per_s: float | None
    backpressure_max_ms_per_s: float | None
    job_id: str | None
    job_state: str | None
    parallelism: int
    tasks_running: int
    tasks_total: int
    taskmanagers: int | None
    slots_total: int | None
    slots_available: int | None
    checkpointed_since_restore: bool | None
    errors: list[str]


class ScaleUpCheck(BaseModel):
    """Whether the last load-driven scale-up raised the throughput (records out/s, alerts/s)
    by at least min_gain."""

    decided_at: float
    taskmanagers_before: int
    taskmanagers_after: int
    parallelism_before: int
    min_gain: float
    rate_before_per_s: float | None
    rate_after_per_s: float | None
    observations_after: int
    verdict: Verdict
    reason: str
    judged_at: float | None
    blocked_until: float | None


class Decision(BaseModel):
    timestamp: float
    action: Action
    reason: str
    profile: str | None
    taskmanager: str | None
    current_count: int
    target_count: int
    taskmanagers: list[TaskManager]
    observation: Observation | None


class Scaling(BaseModel):
    """The autoscaler's state: the policy, the loop, what it saw and decided, oldest first."""

    policy_version: int
    policy: dict[str, Any]
    state: Literal["running", "paused"]
    taskmanagers: list[TaskManager]
    observation: Observation | None
    last_scale_up: ScaleUpCheck | None
    decisions: list[Decision]


class PolicyBody(RootModel[dict[str, Any]]):
    """The whole scaling policy, in the YAML's shape; validated with line and column."""


SCALING = "/api/v1/scaling"


def scaling_operations() -> list[Operation]:
    example = DEFAULT_POLICY_FILE.read_text("utf-8")  # the shipped default: accepted as is
    body = Body(
        {
            "application/yaml": Media({"type": "string"}, example),
            "application/json": Media(PolicyBody, load_policy(example).to_dict()),
        }
    )
    limit = Param("limit", "query", {"type": "string", "pattern": "^[0-9]+$"})
    return [
        Operation(
            "get",
            SCALING,
            "getScaling",
            {"200": reply(Scaling, "the autoscaler's state")},
            ("400", "401"),
            "read",
            "policy, TaskManagers, latest observation, last decisions",
            params=[limit],
        ),
        Operation(
            "put",
            SCALING,
            "putScaling",
            {"200": reply(Scaling, "applied from the next step")},
            REPLACE_ERRORS,
            "admin",
            "replace the policy; validated whole",
            body,
        ),
    ]


def autoscaler_spec(version: str) -> dict[str, Any]:
    """The autoscaler's OpenAPI document: the common API plus ``/api/v1/scaling``."""
    operations = [*common_operations(), *scaling_operations()]
    return document("alertflow autoscaler", version, operations)
