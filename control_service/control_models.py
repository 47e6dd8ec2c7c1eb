"""The control service's own request and response models (filters, jobs, components) and its
table of operations; :func:`control_spec` is its OpenAPI document, the common API's included.

A filter's YAML document keeps its positioned validator (``transforms/filters/document.py``,
issues with line and column); only its JSON envelope is modelled here, for the spec.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from control_service.openapi import (
    BOOLEAN,
    Body,
    Media,
    Operation,
    Param,
    Reply,
    Status,
    common_operations,
    document,
    json_request,
    reply,
)
from transforms.alert_model import Survey
from transforms.filters.model import OutputFormat

# --- filters ----------------------------------------------------------------------------------


class FilterMetadata(BaseModel):
    name: str
    owner: str
    description: str | None = None
    labels: dict[str, str] | None = None


class FilterOutput(BaseModel):
    topic: str | None = None
    format: OutputFormat | None = None
    fields: list[str] | None = None


class FilterSpec(BaseModel):
    surveys: list[Survey] | None = None
    annotations: list[str] | None = None
    where: str
    output: FilterOutput | None = None


class FilterDocument(BaseModel):
    """A filter as written (YAML or JSON); validated with line and column when applied."""

    apiVersion: Literal["alertflow/v1"]
    kind: Literal["Filter"]
    metadata: FilterMetadata
    spec: FilterSpec


class FilterBody(RootModel[FilterDocument | list[FilterDocument]]):
    """One filter document, or several applied all or none."""


class Filter(BaseModel):
    name: str
    owner: str
    description: str
    active: bool
    document: FilterDocument
    version: int | None = None


class FilterList(BaseModel):
    version: int
    filters: list[Filter]


class FilterChange(BaseModel):
    version: int
    created: list[str] | None = None
    updated: list[str] | None = None
    filters: list[Filter]


class FilterDeleted(BaseModel):
    version: int
    deleted: str


class FilterMatch(BaseModel):
    alert_id: int
    survey: str
    object_id: str | None
    fields: dict[str, Any]


class FilterTest(BaseModel):
    """A dry run of one filter over the reference alerts."""

    filter: str
    active: bool
    evaluated: int
    matched: int
    fraction: float
    errors: int
    failure: str | None
    matches: list[FilterMatch]
    truncated: bool


# --- jobs and components ----------------------------------------------------------------------


class Job(BaseModel):
    id: str
    name: str
    state: str
    start_time: int | None = None
    duration_ms: int | None = None
    vertices: list[dict[str, Any]] | None = None
    beam_state: str | None = None
    previous: str | None = None
    savepoint: str | None = None
    restored: dict[str, Any] | None = Field(
        default=None, description="Flink's latest.restored record"
    )
    timings: dict[str, float] | None = None


class JobList(BaseModel):
    jobs: list[Job]


class JobStopped(BaseModel):
    id: str
    stopped: bool
    savepoint: str | None


class JobRequest(BaseModel):
    """Arguments added to the configured job arguments of the broker pipeline."""

    model_config = ConfigDict(extra="forbid")

    args: list[Annotated[str, Field(strict=True)]] = Field(default_factory=list, max_length=64)


class Component(BaseModel):
    """One pipeline stage of a live job; counters from Beam metrics in Flink."""

    id: str = Field(description="<job id>.<stage>")
    job_id: str
    job_name: str
    stage: str = Field(
        description="ingest, decode, annotate.<annotator>, filters, publish or deadletters"
    )
    label: str = Field(description="the Beam step label")
    state: str
    parallelism: int | None = None
    elements_in: int | None
    elements_out: int | None
    errors: int | None
    metrics: dict[str, int]


class ComponentList(BaseModel):
    components: list[Component]


class ControlStatus(Status):
    filter_set_version: int | None = Field(description="null until the store has been read")


# --- the operations ---------------------------------------------------------------------------

FILTER_BODY = Body(
    {"application/yaml": Media({"type": "string"}), "application/json": Media(FilterBody)}
)
JOB_BODY = json_request(JobRequest, required=False)
NAME = Param("name")
JOB_ID = Param("job_id")
READ_ONE = ("401", "404", "503")
CHANGE_ONE = ("401", "403", "404", "413", "503")
APPLY = ("400", "401", "403", "404", "413", "415", "422", "503")
APPLIED = {"200": reply(FilterChange, "replaced"), "201": reply(FilterChange, "created")}
FILTER_YAML = Reply(
    "the filter",
    {"application/json": Media(Filter), "application/yaml": Media({"type": "string"})},
)
FILTERS = "/api/v1/filters"
ONE_FILTER = "/api/v1/filters/{name}"
ONE_JOB = "/api/v1/jobs/{job_id}"

CONTROL_OPERATIONS = [
    Operation(
        "get",
        FILTERS,
        "listFilters",
        {"200": reply(FilterList, "the filters")},
        ("400", "401", "503"),
        "read",
        params=[Param("owner", "query"), Param("active", "query", BOOLEAN)],
    ),
    Operation(
        "post",
        FILTERS,
        "applyFilters",
        APPLIED,
        APPLY,
        "admin",
        "create or replace filters, all or none",
        FILTER_BODY,
    ),
    Operation(
        "get", ONE_FILTER, "getFilter", {"200": FILTER_YAML}, READ_ONE, "read", params=[NAME]
    ),
    Operation("put", ONE_FILTER, "putFilter", APPLIED, APPLY, "admin", None, FILTER_BODY, [NAME]),
    Operation(
        "delete",
        ONE_FILTER,
        "deleteFilter",
        {"200": reply(FilterDeleted, "deleted")},
        CHANGE_ONE,
        "admin",
        params=[NAME],
    ),
    *(
        Operation(
            "post",
            f"{ONE_FILTER}/{verb}",
            f"{verb}Filter",
            {"200": reply(FilterChange, state)},
            CHANGE_ONE,
            "admin",
            params=[NAME],
        )
        for verb, state in [("activate", "active"), ("deactivate", "inactive")]
    ),
    Operation(
        "post",
        f"{ONE_FILTER}/test",
        "testFilter",
        {"200": reply(FilterTest, "matches and fraction")},
        ("401", "404", "413", "503"),
        "read",
        "dry run on the reference alerts",
        params=[NAME],
    ),
    Operation(
        "get", "/api/v1/jobs", "listJobs", {"200": reply(JobList, "jobs")}, ("401", "503"), "read"
    ),
    Operation(
        "post",
        "/api/v1/jobs",
        "submitJob",
        {"202": reply(Job, "submitted")},
        ("400", "401", "403", "413", "415", "503"),
        "admin",
        body=JOB_BODY,
    ),
    Operation(
        "get", ONE_JOB, "getJob", {"200": reply(Job, "job")}, READ_ONE, "read", params=[JOB_ID]
    ),
    Operation(
        "delete",
        ONE_JOB,
        "stopJob",
        {"200": reply(JobStopped, "stopped")},
        ("400", "401", "403", "404", "409", "413", "503"),
        "admin",
        params=[JOB_ID, Param("savepoint", "query", BOOLEAN)],
    ),
    Operation(
        "post",
        f"{ONE_JOB}/upgrade",
        "upgradeJob",
        {"202": reply(Job, "resubmitted from a savepoint")},
        ("400", "401", "403", "404", "409", "413", "415", "503"),
        "admin",
        body=JOB_BODY,
        params=[JOB_ID],
    ),
    Operation(
        "get",
        "/api/v1/components",
        "listComponents",
        {"200": reply(ComponentList, "stages")},
        ("401", "503"),
        "read",
        params=[Param("job", "query")],
    ),
    Operation(
        "get",
        "/api/v1/components/{component_id}",
        "getComponent",
        {"200": reply(Component, "stage")},
        READ_ONE,
        "read",
        params=[Param("component_id")],
    ),
]


def control_spec(version: str) -> dict[str, Any]:
    operations = [*common_operations(status=ControlStatus), *CONTROL_OPERATIONS]
    return document("alertflow control service", version, operations)
