"""OpenAPI 3.1 specs, generated: the request and response models of the common control API
(one each), the table of its operations, and :func:`document`, which turns a service's table of
operations into the spec served at ``/api/v1/openapi.json``.

Every schema under ``components.schemas`` is a pydantic model's JSON schema
(:func:`pydantic.json_schema.models_json_schema`): request bodies in validation mode, responses
in serialization mode (a model used both ways is ``Name-Input`` and ``Name-Output``). A service
adds its own models and operations beside its code (the control service's in
``control_models.py``, the replay service's in ``replay_models.py``, the autoscaler's in
``flink_deploy/autoscaler/api_models.py``); the schemathesis tests check every response of the
running apps against the result.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

REF_TEMPLATE = "#/components/schemas/{model}"
Auth = Literal["open", "read", "admin"]
#: A body: a pydantic model (its schema goes to the components) or a plain JSON schema.
Schema = type[BaseModel] | dict[str, Any]
_SECURITY: dict[Auth, list[dict[str, Any]]] = {
    "read": [{}, {"bearerAuth": []}],
    "admin": [{"bearerAuth": []}],
}
ERRORS = {
    "400": "bad request",
    "401": "no or unknown bearer token",
    "403": "not allowed for this user",
    "404": "no such resource",
    "405": "method not allowed",
    "409": "conflict with the current state",
    "413": "body too large",
    "415": "unsupported content type",
    "422": "validation failed; details.issues has line and column",
    "503": "a dependency (Kafka, Flink, the pipeline) is unavailable",
}

#: What a PUT of a validated whole (config, policy) answers when it does not apply.
REPLACE_ERRORS = ("400", "401", "403", "413", "415", "422")


# --- the common API's models ------------------------------------------------------------------


class Error(BaseModel):
    """Every error of every service."""

    error: str
    message: str
    details: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    checks: dict[str, bool]
    reasons: dict[str, str] = Field(description="why each failing check fails")


class Status(BaseModel):
    id: str
    kind: str
    version: str
    state: Literal["starting", "running", "stopped", "draining", "degraded"]
    started_at: str
    config_version: int
    links: dict[str, str]


class Config(BaseModel):
    config_version: int
    config: dict[str, Any]


class ActionResult(BaseModel):
    action: str
    state: str
    result: dict[str, Any]


# --- operations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Media:
    """One media type of a body: its schema and, optionally, an example."""

    schema: Schema
    example: Any = None


@dataclass(frozen=True)
class Body:
    content: Mapping[str, Media]
    required: bool = True


@dataclass(frozen=True)
class Reply:
    description: str
    content: Mapping[str, Media]


def json_request(schema: Schema, *, example: Any = None, required: bool = True) -> Body:
    """A JSON request body."""
    return Body({"application/json": Media(schema, example)}, required)


def reply(schema: Schema, description: str) -> Reply:
    """A JSON response."""
    return Reply(description, {"application/json": Media(schema)})


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query"] = "path"
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    examples: Sequence[str] = ()


BOOLEAN = {"type": "string", "enum": ["true", "false"]}


@dataclass(frozen=True)
class Operation:
    """One row of a service's API: ``errors`` are the status codes answered with :class:`Error`;
    ``auth``: ``read`` (a token, or none if reads are open) or ``admin``."""

    method: str
    path: str
    operation_id: str
    replies: Mapping[str, Reply]
    errors: Sequence[str] = ()
    auth: Auth = "open"
    summary: str | None = None
    body: Body | None = None
    params: Sequence[Param] = ()

    def media(self) -> Iterator[tuple[Media, JsonSchemaMode]]:
        if self.body is not None:
            yield from ((m, "validation") for m in self.body.content.values())
        for r in self.replies.values():
            yield from ((m, "serialization") for m in r.content.values())


def common_operations(
    *,
    status: type[BaseModel] = Status,
    config: type[BaseModel] = Config,
    config_body: Body | None = None,
    actions: Sequence[str] = (),
    action_summary: str | None = None,
    action_errors: Sequence[str] = ("401", "403", "404", "413", "503"),
) -> list[Operation]:
    """The common control API's operations, with a service's own status, config and actions."""
    return [
        Operation("get", "/health", "health", {"200": reply(Health, "alive")}, summary="alive"),
        Operation(
            "get",
            "/ready",
            "ready",
            {"200": reply(Ready, "ready"), "503": reply(Ready, "not ready")},
            summary="dependencies answer",
        ),
        Operation(
            "get", "/api/v1/status", "status", {"200": reply(status, "status")}, ["401"], "read"
        ),
        Operation(
            "get",
            "/api/v1/config",
            "getConfig",
            {"200": reply(config, "config, secrets left out")},
            ["401"],
            "read",
        ),
        Operation(
            "put",
            "/api/v1/config",
            "putConfig",
            {"200": reply(config, "applied")},
            REPLACE_ERRORS,
            "admin",
            "change run-time fields; rejected whole on any error",
            config_body or json_request({"type": "object"}),
        ),
        Operation(
            "post",
            "/api/v1/actions/{action}",
            "runAction",
            {"200": reply(ActionResult, "done")},
            action_errors,
            "admin",
            action_summary,
            params=[Param("action", examples=actions)],
        ),
        Operation(
            "get",
            "/metrics",
            "metrics",
            {"200": Reply("Prometheus text", {"text/plain": Media({"type": "string"})})},
        ),
        Operation(
            "get",
            "/api/v1/openapi.json",
            "openapi",
            {"200": reply({"type": "object"}, "this spec")},
        ),
    ]


# --- the document -----------------------------------------------------------------------------


Refs = Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]


def _media(media: Media, refs: Refs, mode: JsonSchemaMode) -> dict[str, Any]:
    schema = media.schema
    out: dict[str, Any] = {"schema": refs[(schema, mode)] if isinstance(schema, type) else schema}
    if media.example is not None:
        out["example"] = media.example
    return out


def _param(param: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": param.name, "in": param.where, "schema": param.schema}
    if param.where == "path":
        out["required"] = True
    if param.examples:
        out["examples"] = {name: {"value": name} for name in param.examples}
    return out


def _operation(op: Operation, refs: Refs) -> dict[str, Any]:
    error = {"application/json": Media(Error)}
    replies = {**{code: Reply(ERRORS[code], error) for code in op.errors}, **op.replies}
    out: dict[str, Any] = {"operationId": op.operation_id}
    if op.summary:
        out["summary"] = op.summary
    if op.auth != "open":
        out["security"] = _SECURITY[op.auth]
    if op.params:
        out["parameters"] = [_param(p) for p in op.params]
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body.required,
            "content": {t: _media(m, refs, "validation") for t, m in op.body.content.items()},
        }
    out["responses"] = {
        code: {
            "description": r.description,
            "content": {t: _media(m, refs, "serialization") for t, m in r.content.items()},
        }
        for code, r in sorted(replies.items())
    }
    return out


def document(
    title: str, version: str, operations: Sequence[Operation], description: str | None = None
) -> dict[str, Any]:
    """The OpenAPI document of ``operations``; the schemas of every model they name."""
    error: tuple[type[BaseModel], JsonSchemaMode] = (Error, "serialization")
    used = {error} | {
        (m.schema, mode)
        for op in operations
        for m, mode in op.media()
        if isinstance(m.schema, type)
    }
    models = sorted(used, key=lambda pair: (pair[0].__name__, pair[1]))
    refs, schemas = models_json_schema(models, ref_template=REF_TEMPLATE)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    info = {"title": title, "version": version}
    if description:
        info["description"] = description
    return {
        "openapi": "3.1.0",
        "info": info,
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def common_spec(kind: str, version: str = "0") -> dict[str, Any]:
    """A service that adds nothing to the common API."""
    return document(f"alertflow {kind}", version, common_operations())
