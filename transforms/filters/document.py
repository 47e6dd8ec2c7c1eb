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
:func:`filter_set_from_snapshot` validates a config-topic snapshot the same way. The validated
types (:class:`~transforms.filters.model.Filter`, ``FilterSet``, ``FilterIssue``) are in
``transforms.filters.model``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from transforms.filters.catalogue import ANNOTATORS, closest_fields, lookup
from transforms.filters.check import check_expression
from transforms.filters.expr import Expr, ExprSyntaxError, parse
from transforms.filters.model import (
    API_VERSION,
    DEFAULT_OUTPUT_FIELDS,
    KIND,
    SURVEYS,
    Filter,
    FilterIssue,
    FilterSet,
    FilterValidationError,
    OutputFormat,
    OutputSpec,
)
from transforms.topics import filter_topic
from transforms.yaml_nodes import graph, invalid_yaml, mark, read_mapping, scalar_position

_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")
#: ``FilterValidationError.source`` of a snapshot's errors.
SNAPSHOT_SOURCE = "<snapshot>"


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
        line, column = mark(node)
        self.issue(line, column, path, message)

    def position(self, node: ScalarNode, offset: int) -> tuple[int, int]:
        """Line and column of character ``offset`` of the ``where`` scalar ``node``."""
        if self.text is None:
            return 0, 0
        return scalar_position(self.text, node, offset)

    def mapping(
        self, node: Node, path: str, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, Node]:
        return read_mapping(node, path, allowed, required, self.fail)

    def string(self, node: Node, path: str) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            self.fail(node, path, "must be a string")
            return None
        value: str = node.value  # a str-tagged scalar
        return value

    def matching(self, node: Node, path: str, pattern: re.Pattern[str], problem: str) -> str | None:
        """A string that matches ``pattern`` whole; else None, after failing with ``problem``."""
        value = self.string(node, path)
        if value is not None and not pattern.fullmatch(value):
            self.fail(node, path, f"{value!r} {problem}")
            return None
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
            value = self.string(top["apiVersion"], "apiVersion")
            if value is not None and value != API_VERSION:
                self.fail(
                    top["apiVersion"], "apiVersion", f"must be {API_VERSION!r}, got {value!r}"
                )
        if "kind" in top:
            value = self.string(top["kind"], "kind")
            if value is not None and value != KIND:
                self.fail(top["kind"], "kind", f"must be {KIND!r}, got {value!r}")
        name, owner, description, labels = (
            self.metadata(top["metadata"]) if "metadata" in top else (None, None, "", ())
        )
        spec = self.spec(top["spec"], name) if "spec" in top else None
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
            name = self.matching(
                meta["name"],
                "metadata.name",
                _NAME_RE,
                "is not a valid name: use 1-63 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit",
            )
        if "owner" in meta:
            owner = self.string(meta["owner"], "metadata.owner")
            if owner is not None and not owner.strip():
                self.fail(meta["owner"], "metadata.owner", "must not be empty")
        description = ""
        if "description" in meta:
            description = self.string(meta["description"], "metadata.description") or ""
        labels: list[tuple[str, str]] = []
        if "labels" in meta:
            label_node = meta["labels"]
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
            surveys = self.choices(spec["surveys"], "spec.surveys", SURVEYS)
            if (
                not surveys
                and isinstance(spec["surveys"], SequenceNode)
                and not spec["surveys"].value
            ):
                self.fail(spec["surveys"], "spec.surveys", "must list at least one survey")
        annotations: tuple[str, ...] = ()
        if "annotations" in spec:
            annotations = self.choices(spec["annotations"], "spec.annotations", ANNOTATORS)
        where = expression = fields = None
        if "where" in spec:
            where_node = spec["where"]
            where = self.string(where_node, "spec.where")
            # string() answers only for a scalar node
            if where is not None and isinstance(where_node, ScalarNode):
                expression, fields = self.where(where_node, where, annotations)
        output = self.output(spec["output"] if "output" in spec else None, name, annotations)
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
            topic = self.matching(
                out["topic"], "spec.output.topic", _TOPIC_RE, "is not a valid Kafka topic name"
            )
        fmt = OutputFormat.LITE
        if "format" in out:
            value = self.string(out["format"], "spec.output.format")
            if value is not None and value not in tuple(OutputFormat):
                formats = ", ".join(OutputFormat)
                self.fail(
                    out["format"],
                    "spec.output.format",
                    f"must be one of {formats}, got {value!r}",
                )
            elif value is not None:
                fmt = OutputFormat(value)
        fields = DEFAULT_OUTPUT_FIELDS
        if "fields" in out:
            chosen: list[str] = []
            allowed = set(annotations)
            for item, value in self.string_list(out["fields"], "spec.output.fields"):
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
    except yaml.YAMLError as error:
        line, column, message = invalid_yaml(error)
        raise FilterValidationError(
            [FilterIssue(line, column, "<yaml>", message)], source
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


def filter_set_from_snapshot(snapshot: Mapping[str, Any]) -> FilterSet:
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
    roots = [(graph(document), f"filters[{i}].") for i, document in enumerate(documents)]
    return FilterSet(version, _validate(validator, roots, SNAPSHOT_SOURCE))
