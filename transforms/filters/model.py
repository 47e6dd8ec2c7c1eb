"""A validated filter and filter set: the types the rest of alertflow holds.

:class:`Filter` is one validated filter document (``transforms.filters.document`` reads and
validates them, with positions); :class:`FilterSet` is the complete set of active filters plus
a monotonically increasing version, the snapshot that goes to the config topic
(``FilterSet.to_snapshot``; bytes: ``transforms.filters.snapshot``). A problem in a document is
a :class:`FilterIssue`, and all of a document's problems one :class:`FilterValidationError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from transforms.filters.expr import Expr

API_VERSION = "alertflow/v1"
KIND = "Filter"
SURVEYS: tuple[str, ...] = ("ztf", "lsst")


class OutputFormat(StrEnum):
    """How a filter's matches are written: ``lite`` (JSON, chosen fields) or ``full`` (the
    original alert, in Avro)."""

    LITE = "lite"
    FULL = "full"


DEFAULT_OUTPUT_FIELDS: tuple[str, ...] = (
    "survey",
    "alert_id",
    "object_id",
    "ra",
    "dec",
    "mjd",
    "band",
    "mag",
)


@dataclass(frozen=True, slots=True)
class FilterIssue:
    """One validation problem: 1-based ``line``/``column`` in the YAML text (0 if unknown)."""

    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.path}: {self.message}"


class FilterValidationError(Exception):
    """The document is not a valid filter; ``issues`` says every reason, with positions."""

    def __init__(self, issues: Sequence[FilterIssue], source: str = "<filter>") -> None:
        self.issues = tuple(issues)
        self.source = source
        super().__init__("\n".join(f"{source}:{issue}" for issue in self.issues))


@dataclass(frozen=True, slots=True)
class OutputSpec:
    topic: str
    format: OutputFormat
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Filter:
    """A validated filter. ``expression`` is the parsed ``where``; ``fields`` are the fields it
    reads."""

    name: str
    owner: str
    description: str
    labels: tuple[tuple[str, str], ...]
    surveys: tuple[str, ...]
    annotations: tuple[str, ...]
    where: str
    expression: Expr
    fields: frozenset[str]
    output: OutputSpec

    def to_document(self) -> dict[str, Any]:
        """The filter as plain data (the YAML document), e.g. for the config-topic snapshot."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": self.name,
                "owner": self.owner,
                "description": self.description,
                "labels": dict(self.labels),
            },
            "spec": {
                "surveys": list(self.surveys),
                "annotations": list(self.annotations),
                "where": self.where,
                "output": {
                    "topic": self.output.topic,
                    "format": self.output.format.value,
                    "fields": list(self.output.fields),
                },
            },
        }


@dataclass(frozen=True, slots=True)
class FilterSet:
    """All active filters and the set's version (monotonically increasing, >= 0)."""

    version: int
    filters: tuple[Filter, ...]

    def __post_init__(self) -> None:
        names = [f.name for f in self.filters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate filter names in the set: {', '.join(duplicates)}")
        if self.version < 0:
            raise ValueError("filter-set version must be >= 0")

    def to_snapshot(self) -> dict[str, Any]:
        return {"version": self.version, "filters": [f.to_document() for f in self.filters]}
