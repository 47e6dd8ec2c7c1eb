"""The filter document (YAML, Kubernetes-style) and the filter set, with validation.

A filter file holds one or more documents like::

    apiVersion: alertflow/v1
    kind: Filter
    metadata:
      name: bright-young-transients      # lowercase letters, digits and '-', <= 63 chars
      owner: alice
      description: Bright, real, young transients away from stars
      labels: {science: transients}
    spec:
      surveys: [ztf, lsst]               # optional; default: both
      annotations: [sky]                 # annotators the filter needs
      where: |
        mag < 18.5 and reliability > 0.8 and history.age_days < 3
      output:
        topic: alertflow.filter.bright-young-transients   # default: alertflow.filter.<name>
        format: lite                     # lite (JSON, chosen fields) or full (original alert)
        fields: [object_id, ra, dec, mag]

Everything is validated at once and every problem is reported as a :class:`FilterIssue` with the
1-based line and column in the YAML text (for the ``where`` expression: of the offending token
inside it), so the CLI and the REST API can point at it; a snapshot's documents, validated as
decoded JSON, have no positions (0) and paths from the snapshot (``filters[1].spec.where``).
A :class:`FilterSet` is the complete set of active filters plus a monotonically increasing
version: the snapshot that goes to the config topic (``FilterSet.to_snapshot`` /
``FilterSet.from_snapshot``; bytes: ``transforms.filters.snapshot``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from transforms.filters.catalogue import ANNOTATORS, check_expression, closest_fields, lookup
from transforms.filters.expr import Expr, ExprSyntaxError, parse
from transforms.topics import filter_topic

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
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")
#: ``FilterValidationError.source`` of a snapshot's errors.
SNAPSHOT_SOURCE = "<snapshot>"


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

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any]) -> FilterSet:
        """Rebuild a set from ``{"version": n, "filters": [document, ...]}`` (the config topic's
        JSON, decoded); raises FilterValidationError listing every problem.

        The documents are validated as they are, with the same checks and messages as YAML
        text; JSON has no positions, so each issue has line and column 0 and a path that
        starts at the snapshot (``filters[1].spec.where``). An empty list is an empty set.
        """
        version = snapshot.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            issue = FilterIssue(0, 0, "version", "must be an integer")
            raise FilterValidationError([issue], SNAPSHOT_SOURCE)
        documents = snapshot.get("filters")
        if not isinstance(documents, list):
            raise FilterValidationError(
                [FilterIssue(0, 0, "filters", "must be a list")], SNAPSHOT_SOURCE
            )
        validator = _Validator(None)
        roots = [(_graph(document), f"filters[{i}].") for i, document in enumerate(documents)]
        return cls(version, _validate(validator, roots, SNAPSHOT_SOURCE))


# --- positions ------------------------------------------------------------------------------


def _mark(node: Node) -> tuple[int, int]:
    """1-based line and column of ``node``; (0, 0) for a node built from data, not text."""
    if node.start_mark is None:
        return 0, 0
    return node.start_mark.line + 1, node.start_mark.column + 1


_TAGS = {bool: "bool", int: "int", float: "float", str: "str", type(None): "null"}


def _graph(data: Any) -> Node:
    """The YAML representation graph of decoded JSON, without text: the validator reads
    snapshots and YAML documents alike. Scalars keep their JSON type as their tag."""
    if isinstance(data, dict):
        pairs = [(_graph(k), _graph(v)) for k, v in data.items()]
        return MappingNode("tag:yaml.org,2002:map", pairs)
    if isinstance(data, list):
        return SequenceNode("tag:yaml.org,2002:seq", [_graph(item) for item in data])
    tag = _TAGS.get(type(data), "unknown")
    return ScalarNode(f"tag:yaml.org,2002:{tag}", data if isinstance(data, str) else str(data))


def _expression_position(text: str, node: ScalarNode, offset: int) -> tuple[int, int]:
    """Line and column (1-based) in ``text`` of character ``offset`` of the scalar's value.

    Walks the value and the source together: block (| >), plain and quoted scalars keep every
    non-blank character of the value, in order, in the source; only line breaks, indentation
    and quotes differ. An offset on a blank or past the end points at the next character of the
    value, or just after its last one.
    """
    value = node.value
    start = node.start_mark.index
    if node.style in ("|", ">"):
        newline = text.find("\n", start)
        start = len(text) if newline < 0 else newline + 1
    elif node.style in ("'", '"'):
        start += 1
    end = node.end_mark.index
    mapped: dict[int, int] = {}
    src = start
    for i, ch in enumerate(value):
        if ch.isspace():
            continue
        found = text.find(ch, src, end)
        if found < 0:
            break
        mapped[i] = found
        src = found + 1
    after = [i for i in mapped if i >= offset]
    if after:
        index = mapped[min(after)]
    elif mapped:
        index = mapped[max(mapped)] + 1
    else:
        index = start
    line = text.count("\n", 0, index)
    column = index - (text.rfind("\n", 0, index) + 1)
    return line + 1, column + 1


# --- validation -----------------------------------------------------------------------------


class _Validator:
    """Checks documents; ``text`` is the YAML they were composed from (None: from data), and
    ``prefix`` starts every issue's path (the document's place in a snapshot)."""

    def __init__(self, text: str | None) -> None:
        self.text = text
        self.prefix = ""
        self.issues: list[FilterIssue] = []

    def issue(self, line: int, column: int, path: str, message: str) -> None:
        whole = path in ("", "<document>")
        full = self.prefix.rstrip(".") if whole and self.prefix else self.prefix + path
        self.issues.append(FilterIssue(line, column, full, message))

    def fail(self, node: Node, path: str, message: str) -> None:
        line, column = _mark(node)
        self.issue(line, column, path, message)

    def position(self, node: ScalarNode, offset: int) -> tuple[int, int]:
        """Line and column of character ``offset`` of the ``where`` scalar ``node``."""
        if self.text is None:
            return 0, 0
        return _expression_position(self.text, node, offset)

    def mapping(
        self, node: Node, path: str, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            self.fail(node, path, "must be a mapping")
            return {}
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            where = f"{path}.{key}" if path else str(key)
            if key is None or key not in allowed:
                close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
                hint = (
                    f"; did you mean {close[0]!r}?"
                    if close
                    else f" (allowed: {', '.join(allowed)})"
                )
                self.fail(key_node, where, f"unknown key {key!r}{hint}")
            elif key in out:
                self.fail(key_node, where, "duplicate key")
            else:
                out[key] = (key_node, value_node)
        for key in required:
            if key not in out:
                self.fail(node, path or "<document>", f"missing required key {key!r}")
        return out

    def string(self, node: Node, path: str) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            self.fail(node, path, "must be a string")
            return None
        value: str = node.value  # a str-tagged scalar
        return value

    def string_list(self, node: Node, path: str) -> list[tuple[Node, str]]:
        if not isinstance(node, SequenceNode):
            self.fail(node, path, "must be a list")
            return []
        out = []
        for i, item in enumerate(node.value):
            value = self.string(item, f"{path}[{i}]")
            if value is not None:
                out.append((item, value))
        return out

    def choices(self, node: Node, path: str, allowed: Sequence[str]) -> tuple[str, ...]:
        out: list[str] = []
        for item, value in self.string_list(node, path):
            if value not in allowed:
                self.fail(item, path, f"unknown value {value!r} (allowed: {', '.join(allowed)})")
            elif value in out:
                self.fail(item, path, f"{value!r} listed twice")
            else:
                out.append(value)
        return tuple(out)

    def document(self, root: Node) -> Filter | None:
        before = len(self.issues)
        top = self.mapping(
            root,
            "",
            ("apiVersion", "kind", "metadata", "spec"),
            ("apiVersion", "kind", "metadata", "spec"),
        )
        if "apiVersion" in top:
            value = self.string(top["apiVersion"][1], "apiVersion")
            if value is not None and value != API_VERSION:
                self.fail(
                    top["apiVersion"][1], "apiVersion", f"must be {API_VERSION!r}, got {value!r}"
                )
        if "kind" in top:
            value = self.string(top["kind"][1], "kind")
            if value is not None and value != KIND:
                self.fail(top["kind"][1], "kind", f"must be {KIND!r}, got {value!r}")
        name, owner, description, labels = (
            self.metadata(top["metadata"][1]) if "metadata" in top else (None, None, "", ())
        )
        spec = self.spec(top["spec"][1], name) if "spec" in top else None
        if len(self.issues) > before or spec is None or name is None or owner is None:
            return None
        surveys, annotations, where, expression, fields, output = spec
        return Filter(
            name,
            owner,
            description,
            labels,
            surveys,
            annotations,
            where,
            expression,
            fields,
            output,
        )

    def metadata(
        self, node: Node
    ) -> tuple[str | None, str | None, str, tuple[tuple[str, str], ...]]:
        meta = self.mapping(
            node, "metadata", ("name", "owner", "description", "labels"), ("name", "owner")
        )
        name = owner = None
        if "name" in meta:
            name = self.string(meta["name"][1], "metadata.name")
            if name is not None and not _NAME_RE.fullmatch(name):
                self.fail(
                    meta["name"][1],
                    "metadata.name",
                    f"{name!r} is not a valid name: use 1-63 lowercase letters, digits and '-', "
                    "starting and ending with a letter or digit",
                )
                name = None
        if "owner" in meta:
            owner = self.string(meta["owner"][1], "metadata.owner")
            if owner is not None and not owner.strip():
                self.fail(meta["owner"][1], "metadata.owner", "must not be empty")
        description = ""
        if "description" in meta:
            description = self.string(meta["description"][1], "metadata.description") or ""
        labels: list[tuple[str, str]] = []
        if "labels" in meta:
            label_node = meta["labels"][1]
            if not isinstance(label_node, MappingNode):
                self.fail(label_node, "metadata.labels", "must be a mapping of strings")
            else:
                for key_node, value_node in label_node.value:
                    key = self.string(key_node, "metadata.labels")
                    value = self.string(value_node, f"metadata.labels.{key}")
                    if key is not None and value is not None:
                        labels.append((key, value))
        return name, owner, description, tuple(sorted(labels))

    def spec(
        self, node: Node, name: str | None
    ) -> tuple[tuple[str, ...], tuple[str, ...], str, Expr, frozenset[str], OutputSpec] | None:
        spec = self.mapping(node, "spec", ("surveys", "annotations", "where", "output"), ("where",))
        surveys = SURVEYS
        if "surveys" in spec:
            surveys = self.choices(spec["surveys"][1], "spec.surveys", SURVEYS)
            if (
                not surveys
                and isinstance(spec["surveys"][1], SequenceNode)
                and not spec["surveys"][1].value
            ):
                self.fail(spec["surveys"][1], "spec.surveys", "must list at least one survey")
        annotations: tuple[str, ...] = ()
        if "annotations" in spec:
            annotations = self.choices(spec["annotations"][1], "spec.annotations", ANNOTATORS)
        where = expression = fields = None
        if "where" in spec:
            where_node = spec["where"][1]
            where = self.string(where_node, "spec.where")
            # string() answers only for a scalar node
            if where is not None and isinstance(where_node, ScalarNode):
                expression, fields = self.where(where_node, where, annotations)
        output = self.output(spec["output"][1] if "output" in spec else None, name, annotations)
        if where is None or expression is None or fields is None or output is None:
            return None
        return (
            tuple(sorted(surveys, key=SURVEYS.index)),
            annotations,
            where,
            expression,
            fields,
            output,
        )

    def where(
        self, node: ScalarNode, where: str, annotations: Iterable[str]
    ) -> tuple[Expr | None, frozenset[str] | None]:
        try:
            expression = parse(where)
        except ExprSyntaxError as error:
            line, column = self.position(node, error.offset)
            self.issue(line, column, "spec.where", f"syntax error: {error.message}")
            return None, None
        result = check_expression(expression, annotations)
        for issue in result.issues:
            line, column = self.position(node, issue.offset)
            self.issue(line, column, "spec.where", issue.message)
        if result.issues:
            return None, None
        return expression, result.fields

    def output(
        self, node: Node | None, name: str | None, annotations: Iterable[str]
    ) -> OutputSpec | None:
        default_topic = filter_topic(name) if name else None
        if node is None:
            if default_topic is None:
                return None
            return OutputSpec(default_topic, OutputFormat.LITE, DEFAULT_OUTPUT_FIELDS)
        out = self.mapping(node, "spec.output", ("topic", "format", "fields"))
        topic = default_topic
        if "topic" in out:
            topic = self.string(out["topic"][1], "spec.output.topic")
            if topic is not None and not _TOPIC_RE.fullmatch(topic):
                self.fail(
                    out["topic"][1],
                    "spec.output.topic",
                    f"{topic!r} is not a valid Kafka topic name",
                )
                topic = None
        fmt = OutputFormat.LITE
        if "format" in out:
            value = self.string(out["format"][1], "spec.output.format")
            if value is not None and value not in tuple(OutputFormat):
                formats = ", ".join(OutputFormat)
                self.fail(
                    out["format"][1],
                    "spec.output.format",
                    f"must be one of {formats}, got {value!r}",
                )
            elif value is not None:
                fmt = OutputFormat(value)
        fields = DEFAULT_OUTPUT_FIELDS
        if "fields" in out:
            chosen: list[str] = []
            allowed = set(annotations)
            for item, value in self.string_list(out["fields"][1], "spec.output.fields"):
                spec = lookup(value)
                if spec is None:
                    close = closest_fields(value)
                    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                    self.fail(item, "spec.output.fields", f"unknown field {value!r}{hint}")
                elif spec.annotator is not None and spec.annotator not in allowed:
                    self.fail(
                        item,
                        "spec.output.fields",
                        f"field {value!r} needs the {spec.annotator!r} annotator in "
                        "spec.annotations",
                    )
                else:
                    chosen.append(value)
            fields = tuple(chosen)
        if topic is None:
            return None
        return OutputSpec(topic, fmt, fields)


def load_filters(text: str, source: str = "<filter>") -> tuple[Filter, ...]:
    """Every filter document in ``text``; raises FilterValidationError listing all problems."""
    validator = _Validator(text)
    try:
        roots = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        message = " ".join(part for part in (error.context, error.problem) if part)
        raise FilterValidationError(
            [FilterIssue(line, column, "<yaml>", f"invalid YAML: {message}")], source
        ) from None
    except yaml.YAMLError as error:
        raise FilterValidationError(
            [FilterIssue(0, 0, "<yaml>", f"invalid YAML: {error}")], source
        ) from None
    roots = [root for root in roots if root is not None]
    if not roots:
        raise FilterValidationError(
            [FilterIssue(1, 1, "<document>", "no filter document found")], source
        )
    return _validate(validator, [(root, "") for root in roots], source)


def _validate(
    validator: _Validator, roots: Sequence[tuple[Node, str]], source: str
) -> tuple[Filter, ...]:
    """The filters of the document ``roots`` (each with the prefix of its issues' paths);
    raises FilterValidationError listing every problem."""
    filters: list[Filter] = []
    seen: dict[str, Filter] = {}
    for root, prefix in roots:
        validator.prefix = prefix
        parsed = validator.document(root)
        if parsed is None:
            continue
        if parsed.name in seen:
            validator.fail(
                root, "metadata.name", f"filter {parsed.name!r} is defined twice in this file"
            )
            continue
        seen[parsed.name] = parsed
        filters.append(parsed)
    if validator.issues:
        raise FilterValidationError(validator.issues, source)
    return tuple(filters)


def load_filter_file(path: str) -> tuple[Filter, ...]:
    """The filters of a YAML file; raises FilterValidationError (source = the path) or OSError."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return load_filters(text, source=str(path))
