"""The OpenAPI 3 spec, served at ``/api/v1/openapi.json``: the common part, and the control
service's.

Built here as data, beside the code it describes; the schemathesis test checks every response of
the running app against it.
"""

from __future__ import annotations

from typing import Any

from transforms.filters.model import OutputFormat

BEARER: list[dict[str, Any]] = [{"bearerAuth": []}]
OPTIONAL_BEARER: list[dict[str, Any]] = [{}, {"bearerAuth": []}]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


ERRORS = {
    "400": _err("bad request"),
    "401": _err("no or unknown bearer token"),
    "403": _err("not allowed for this user"),
    "404": _err("no such resource"),
    "405": _err("method not allowed"),
    "409": _err("conflict with the current state"),
    "413": _err("body too large"),
    "415": _err("unsupported content type"),
    "422": _err("validation failed; details.issues has line and column"),
    "503": _err("a dependency (Kafka, Flink, the pipeline) is unavailable"),
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: ERRORS[code] for code in codes}


NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message", "details"],
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "details": {"type": "object"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["ok"]}},
    },
    "Ready": {
        "type": "object",
        "required": ["ready", "checks", "reasons"],
        "properties": {
            "ready": {"type": "boolean"},
            "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "reasons": {
                "type": "object",
                "description": "why each failing check fails",
                "additionalProperties": {"type": "string"},
            },
        },
    },
    "Status": {
        "type": "object",
        "required": ["id", "kind", "version", "state", "started_at", "config_version", "links"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string"},
            "version": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["starting", "running", "stopped", "draining", "degraded"],
            },
            "started_at": {"type": "string"},
            "config_version": {"type": "integer"},
            "links": {"type": "object", "additionalProperties": {"type": "string"}},
            "filter_set_version": {"type": ["integer", "null"]},
        },
    },
    "Config": {
        "type": "object",
        "required": ["config_version", "config"],
        "properties": {"config_version": {"type": "integer"}, "config": {"type": "object"}},
    },
    "ActionResult": {
        "type": "object",
        "required": ["action", "state", "result"],
        "properties": {
            "action": {"type": "string"},
            "state": {"type": "string"},
            "result": {"type": "object"},
        },
    },
    "FilterDocument": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string", "enum": ["alertflow/v1"]},
            "kind": {"type": "string", "enum": ["Filter"]},
            "metadata": {
                "type": "object",
                "required": ["name", "owner"],
                "properties": {
                    "name": {"type": "string"},
                    "owner": {"type": "string"},
                    "description": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "spec": {
                "type": "object",
                "required": ["where"],
                "properties": {
                    "surveys": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["ztf", "lsst"]},
                    },
                    "annotations": {"type": "array", "items": {"type": "string"}},
                    "where": {"type": "string"},
                    "output": {
                        "type": "object",
                        "properties": {
                            "topic": {"type": "string"},
                            "format": {"type": "string", "enum": [f.value for f in OutputFormat]},
                            "fields": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                },
            },
        },
    },
    "Filter": {
        "type": "object",
        "required": ["name", "owner", "description", "active", "document"],
        "properties": {
            "name": {"type": "string"},
            "owner": {"type": "string"},
            "description": {"type": "string"},
            "active": {"type": "boolean"},
            "document": _ref("FilterDocument"),
            "version": {"type": "integer"},
        },
    },
    "FilterList": {
        "type": "object",
        "required": ["version", "filters"],
        "properties": {
            "version": {"type": "integer"},
            "filters": {"type": "array", "items": _ref("Filter")},
        },
    },
    "FilterChange": {
        "type": "object",
        "required": ["version", "filters"],
        "properties": {
            "version": {"type": "integer"},
            "created": {"type": "array", "items": {"type": "string"}},
            "updated": {"type": "array", "items": {"type": "string"}},
            "filters": {"type": "array", "items": _ref("Filter")},
        },
    },
    "FilterDeleted": {
        "type": "object",
        "required": ["version", "deleted"],
        "properties": {"version": {"type": "integer"}, "deleted": {"type": "string"}},
    },
    "FilterTest": {
        "type": "object",
        "required": [
            "filter",
            "active",
            "evaluated",
            "matched",
            "fraction",
            "errors",
            "failure",
            "matches",
            "truncated",
        ],
        "properties": {
            "filter": {"type": "string"},
            "active": {"type": "boolean"},
            "evaluated": {"type": "integer"},
            "matched": {"type": "integer"},
            "fraction": {"type": "number"},
            "errors": {"type": "integer"},
            "failure": {"type": ["string", "null"]},
            "truncated": {"type": "boolean"},
            "matches": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["alert_id", "survey", "object_id", "fields"],
                    "properties": {
                        "alert_id": {"type": "integer"},
                        "survey": {"type": "string"},
                        "object_id": {"type": ["string", "null"]},
                        "fields": {"type": "object"},
                    },
                },
            },
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "name", "state"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "state": {"type": "string"},
            "start_time": {"type": ["integer", "null"]},
            "duration_ms": {"type": ["integer", "null"]},
            "vertices": {"type": "array", "items": {"type": "object"}},
            "beam_state": {"type": "string"},
            "previous": {"type": "string"},
            "savepoint": {"type": ["string", "null"]},
            "restored": {"type": "object", "description": "Flink's latest.restored record"},
            "timings": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    },
    "JobList": {
        "type": "object",
        "required": ["jobs"],
        "properties": {"jobs": {"type": "array", "items": _ref("Job")}},
    },
    "JobStopped": {
        "type": "object",
        "required": ["id", "stopped", "savepoint"],
        "properties": {
            "id": {"type": "string"},
            "stopped": {"type": "boolean"},
            "savepoint": {"type": ["string", "null"]},
        },
    },
    "JobRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"args": {"type": "array", "maxItems": 64, "items": {"type": "string"}}},
    },
    "Component": {
        "type": "object",
        "description": "One pipeline stage of a live job; counters from Beam metrics in Flink",
        "required": [
            "id",
            "job_id",
            "job_name",
            "stage",
            "label",
            "state",
            "elements_in",
            "elements_out",
            "errors",
            "metrics",
        ],
        "properties": {
            "id": {"type": "string", "description": "<job id>.<stage>"},
            "job_id": {"type": "string"},
            "job_name": {"type": "string"},
            "stage": {
                "type": "string",
                "description": "ingest, decode, annotate.<annotator>, "
                "filters, publish or deadletters",
            },
            "label": {"type": "string", "description": "the Beam step label"},
            "state": {"type": "string"},
            "parallelism": {"type": ["integer", "null"]},
            "elements_in": {"type": ["integer", "null"]},
            "elements_out": {"type": ["integer", "null"]},
            "errors": {"type": ["integer", "null"]},
            "metrics": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "ComponentList": {
        "type": "object",
        "required": ["components"],
        "properties": {"components": {"type": "array", "items": _ref("Component")}},
    },
}

FILTER_BODY = {
    "required": True,
    "content": {
        "application/yaml": {"schema": {"type": "string"}},
        "application/json": {
            "schema": {
                "oneOf": [
                    _ref("FilterDocument"),
                    {"type": "array", "items": _ref("FilterDocument")},
                ]
            }
        },
    },
}


def common_paths() -> dict[str, Any]:
    return {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "alive",
                "responses": {"200": _json(_ref("Health"), "alive")},
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "dependencies answer",
                "responses": {
                    "200": _json(_ref("Ready"), "ready"),
                    "503": _json(_ref("Ready"), "not ready"),
                },
            }
        },
        "/api/v1/status": {
            "get": {
                "operationId": "status",
                "security": OPTIONAL_BEARER,
                "responses": {"200": _json(_ref("Status"), "status"), **_errors("401")},
            }
        },
        "/api/v1/config": {
            "get": {
                "operationId": "getConfig",
                "security": OPTIONAL_BEARER,
                "responses": {
                    "200": _json(_ref("Config"), "config, secrets left out"),
                    **_errors("401"),
                },
            },
            "put": {
                "operationId": "putConfig",
                "summary": "change run-time fields; rejected whole on any error",
                "security": BEARER,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": _json(_ref("Config"), "applied"),
                    **_errors("400", "401", "403", "413", "415", "422"),
                },
            },
        },
        "/api/v1/actions/{action}": {
            "post": {
                "operationId": "runAction",
                "security": BEARER,
                "parameters": [
                    {"name": "action", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(_ref("ActionResult"), "done"),
                    **_errors("401", "403", "404", "413", "503"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "this spec")},
            }
        },
    }


def _document(title: str, version: str, paths: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def common_spec(kind: str, version: str = "0") -> dict[str, Any]:
    return _document(f"alertflow {kind}", version, common_paths())


def control_spec(version: str) -> dict[str, Any]:
    change = _errors("400", "401", "403", "404", "413", "415", "422", "503")
    paths = {
        **common_paths(),
        "/api/v1/filters": {
            "get": {
                "operationId": "listFilters",
                "security": OPTIONAL_BEARER,
                "parameters": [
                    {"name": "owner", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "active",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    },
                ],
                "responses": {
                    "200": _json(_ref("FilterList"), "the filters"),
                    **_errors("400", "401", "503"),
                },
            },
            "post": {
                "operationId": "applyFilters",
                "summary": "create or replace filters, all or none",
                "security": BEARER,
                "requestBody": FILTER_BODY,
                "responses": {
                    "200": _json(_ref("FilterChange"), "replaced"),
                    "201": _json(_ref("FilterChange"), "created"),
                    **change,
                },
            },
        },
        "/api/v1/filters/{name}": {
            "parameters": [NAME],
            "get": {
                "operationId": "getFilter",
                "security": OPTIONAL_BEARER,
                "responses": {
                    "200": {
                        "description": "the filter",
                        "content": {
                            "application/json": {"schema": _ref("Filter")},
                            "application/yaml": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors("401", "404", "503"),
                },
            },
            "put": {
                "operationId": "putFilter",
                "security": BEARER,
                "requestBody": FILTER_BODY,
                "responses": {
                    "200": _json(_ref("FilterChange"), "replaced"),
                    "201": _json(_ref("FilterChange"), "created"),
                    **change,
                },
            },
            "delete": {
                "operationId": "deleteFilter",
                "security": BEARER,
                "responses": {
                    "200": _json(_ref("FilterDeleted"), "deleted"),
                    **_errors("401", "403", "404", "413", "503"),
                },
            },
        },
        "/api/v1/filters/{name}/activate": {
            "parameters": [NAME],
            "post": {
                "operationId": "activateFilter",
                "security": BEARER,
                "responses": {
                    "200": _json(_ref("FilterChange"), "active"),
                    **_errors("401", "403", "404", "413", "503"),
                },
            },
        },
        "/api/v1/filters/{name}/deactivate": {
            "parameters": [NAME],
            "post": {
                "operationId": "deactivateFilter",
                "security": BEARER,
                "responses": {
                    "200": _json(_ref("FilterChange"), "inactive"),
                    **_errors("401", "403", "404", "413", "503"),
                },
            },
        },
        "/api/v1/filters/{name}/test": {
            "parameters": [NAME],
            "post": {
                "operationId": "testFilter",
                "summary": "dry run on the reference alerts",
                "security": OPTIONAL_BEARER,
                "responses": {
                    "200": _json(_ref("FilterTest"), "matches and fraction"),
                    **_errors("401", "404", "413", "503"),
                },
            },
        },
        "/api/v1/jobs": {
            "get": {
                "operationId": "listJobs",
                "security": OPTIONAL_BEARER,
                "responses": {"200": _json(_ref("JobList"), "jobs"), **_errors("401", "503")},
            },
            "post": {
                "operationId": "submitJob",
                "security": BEARER,
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("JobRequest")}},
                },
                "responses": {
                    "202": _json(_ref("Job"), "submitted"),
                    **_errors("400", "401", "403", "413", "415", "503"),
                },
            },
        },
        "/api/v1/jobs/{job_id}": {
            "parameters": [JOB_ID],
            "get": {
                "operationId": "getJob",
                "security": OPTIONAL_BEARER,
                "responses": {"200": _json(_ref("Job"), "job"), **_errors("401", "404", "503")},
            },
            "delete": {
                "operationId": "stopJob",
                "security": BEARER,
                "parameters": [
                    {
                        "name": "savepoint",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    }
                ],
                "responses": {
                    "200": _json(_ref("JobStopped"), "stopped"),
                    **_errors("400", "401", "403", "404", "409", "413", "503"),
                },
            },
        },
        "/api/v1/jobs/{job_id}/upgrade": {
            "parameters": [JOB_ID],
            "post": {
                "operationId": "upgradeJob",
                "security": BEARER,
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("JobRequest")}},
                },
                "responses": {
                    "202": _json(_ref("Job"), "resubmitted from a savepoint"),
                    **_errors("400", "401", "403", "404", "409", "413", "415", "503"),
                },
            },
        },
        "/api/v1/components": {
            "get": {
                "operationId": "listComponents",
                "security": OPTIONAL_BEARER,
                "parameters": [
                    {"name": "job", "in": "query", "required": False, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(_ref("ComponentList"), "stages"),
                    **_errors("401", "503"),
                },
            },
        },
        "/api/v1/components/{component_id}": {
            "parameters": [
                {
                    "name": "component_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                }
            ],
            "get": {
                "operationId": "getComponent",
                "security": OPTIONAL_BEARER,
                "responses": {
                    "200": _json(_ref("Component"), "stage"),
                    **_errors("401", "404", "503"),
                },
            },
        },
    }
    return _document("alertflow control service", version, paths)
