"""The replay service's request and response models, and its OpenAPI document.

:class:`ReplaySettings` is what the next start sends: the body of ``PUT /api/v1/config``
(merged over the current settings, then validated whole by :func:`settings_from`) and the
``config`` of its answer. Each field's description is also the problem reported when the field
does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WrapValidator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from control_service.config import ConfigError
from control_service.openapi import Status, common_operations, document, json_request
from flink_deploy.stack.config import StackPorts
from transforms.alert_model import Survey

KIND = "replay"
SURVEYS = sorted(s.value for s in Survey)
TOPIC_PROBLEM = "a Kafka topic name: 1-249 of A-Z a-z 0-9 . _ -"


def _default_bootstrap() -> str:
    return StackPorts.load().bootstrap_servers


def _reported_as(message: str) -> WrapValidator:
    """Any failure of the value it annotates is reported as ``message``."""

    def validate(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("setting", message) from None

    return WrapValidator(validate)


def _problem(field: str, message: str, value: Any) -> ValidationError:
    error = PydanticCustomError("setting", message)
    return ValidationError.from_exception_data(
        "ReplaySettings", [InitErrorDetails(type=error, loc=(field,), input=value)]
    )


# Kafka's legal topic names.
TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$", strict=True)]
SurveyName = Annotated[Literal["ztf", "lsst"], _reported_as(f"not a survey; one of {SURVEYS}")]
SurveyTopics = Annotated[
    dict[SurveyName, Annotated[TopicName, _reported_as(TOPIC_PROBLEM)]], Field(min_length=1)
]


class ReplaySettings(BaseModel):
    """What the next start sends; the run-time config of the replay service."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )

    files: tuple[Annotated[str, Field(min_length=1, strict=True)], ...] = Field(
        default=(), description="a list of file paths"
    )
    topic: TopicName | None = Field(default=None, description=TOPIC_PROBLEM)
    topics: SurveyTopics | None = Field(
        default=None, description=f"an object mapping surveys ({SURVEYS}) to topics"
    )
    rate: float | None = Field(
        default=None,
        gt=0,
        strict=True,
        description="a positive number of alerts/s, or null (as fast as possible)",
    )
    visit_size: int | None = Field(
        default=None, gt=0, strict=True, description="a positive integer, or null"
    )
    visit_interval: float | None = Field(
        default=None, ge=0, strict=True, description="a number of seconds >= 0, or null"
    )
    visits: int = Field(default=1, gt=0, strict=True, description="a positive integer")
    count: int | None = Field(
        default=None,
        gt=0,
        strict=True,
        description="a positive integer, or null (one pass, or all visits)",
    )
    bootstrap_servers: str = Field(
        default_factory=_default_bootstrap,
        pattern=r"\S",
        strict=True,
        description="host:port[,host:port...]",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.topic is not None and self.topics is not None:
            raise _problem("topics", "give topic or topics, not both", self.topics)
        if (self.visit_size is None) != (self.visit_interval is None):
            raise _problem(
                "visit_interval", "visit_size and visit_interval go together", self.visit_interval
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _config_problem(error: Mapping[str, Any]) -> tuple[str, str]:
    """A pydantic error as the ``(field, message)`` of a ConfigError."""
    loc = error["loc"]
    name = str(loc[0])
    if error["type"] == "extra_forbidden":
        return name, f"unknown setting; known: {', '.join(ReplaySettings.model_fields)}"
    if error["type"] == "setting":  # its own message: topics' surveys and names, the pairs
        return ".".join(str(part) for part in loc if part != "[key]"), error["msg"]
    return name, ReplaySettings.model_fields[name].description or name


def settings_from(data: Mapping[str, Any]) -> ReplaySettings:
    """Check the shape of every setting; raises ConfigError listing every problem (unknown
    settings first, then in the order of the fields)."""
    try:
        return ReplaySettings.model_validate(data)
    except ValidationError as error:
        errors = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise ConfigError([_config_problem(e) for e in errors]) from None


class ReplayProgress(BaseModel):
    """The last or current run."""

    run: int
    total: int
    sent: int
    delivered: int
    failed: int
    bytes: int
    rate_per_s: float
    visit: int | None
    elapsed_s: float
    done: bool
    stopped_early: bool
    failures: list[str]
    error: str | None


class ReplayStatus(Status):
    accepting: bool
    progress: ReplayProgress | None


class ReplayConfig(BaseModel):
    config_version: int
    config: ReplaySettings


def replay_spec(version: str) -> dict[str, Any]:
    """The replay service's OpenAPI document: the common API with its own bodies."""
    operations = common_operations(
        status=ReplayStatus,
        config=ReplayConfig,
        config_body=json_request(ReplaySettings, example={"rate": 500, "count": 1000}),
        actions=("start", "stop", "drain"),
        action_summary="start, stop or drain the replay",
        action_errors=("401", "403", "404", "409", "413", "503"),
    )
    return document(
        f"alertflow {KIND}",
        version,
        operations,
        "The replay producer: alert files to Kafka, as a service.",
    )
