"""YAML read as nodes, so that every problem can name its line and column.

Shared by the filter documents (``transforms.filters.document``) and the autoscaler's policy
(``flink_deploy.autoscaler.policy``):

* :func:`mark`: the 1-based line and column of a node;
* :func:`graph`: decoded JSON as a node graph without positions, so one validator reads YAML
  text and JSON data alike;
* :func:`scalar_position`: the line and column of a character inside a scalar's value;
* :func:`read_mapping`: the keys of a mapping node, reporting unknown keys (with the closest
  allowed one), duplicate keys and missing required keys;
* :func:`invalid_yaml`: where a YAML syntax error is, and what it says.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: ``fail(node, path, message)``: how a reader reports a problem at ``node``.
Fail = Callable[[Node, str, str], None]

_TAGS = {bool: "bool", int: "int", float: "float", str: "str", type(None): "null"}


def mark(node: Node) -> tuple[int, int]:
    """1-based line and column of ``node``; (0, 0) for a node built from data, not text."""
    if node.start_mark is None:
        return 0, 0
    return node.start_mark.line + 1, node.start_mark.column + 1


def graph(data: Any) -> Node:
    """The YAML representation graph of decoded JSON, without positions. Scalars keep their
    JSON type as their tag."""
    if isinstance(data, dict):
        pairs = [(graph(k), graph(v)) for k, v in data.items()]
        return MappingNode("tag:yaml.org,2002:map", pairs)
    if isinstance(data, list):
        return SequenceNode("tag:yaml.org,2002:seq", [graph(item) for item in data])
    tag = _TAGS.get(type(data), "unknown")
    return ScalarNode(f"tag:yaml.org,2002:{tag}", data if isinstance(data, str) else str(data))


def scalar_position(text: str, node: ScalarNode, offset: int) -> tuple[int, int]:
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


def read_mapping(
    node: Node, path: str, allowed: Sequence[str], required: Sequence[str], fail: Fail
) -> dict[str, Node]:
    """The value node of each allowed key of the mapping ``node`` (at ``path``; "" for the
    document itself), reporting to ``fail`` a node that is no mapping, every unknown key (with
    the closest allowed key, or the list of them), every duplicate key and every missing
    required key."""
    where_whole = path or "<document>"
    if not isinstance(node, MappingNode):
        fail(node, where_whole, "must be a mapping")
        return {}
    out: dict[str, Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, ScalarNode) else None
        where = f"{path}.{key}" if path else str(key)
        if key is None or key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(allowed)})"
            fail(key_node, where, f"unknown key {key!r}{hint}")
        elif key in out:
            fail(key_node, where, "duplicate key")
        else:
            out[key] = value_node
    for key in required:
        if key not in out:
            fail(node, where_whole, f"missing required key {key!r}")
    return out


def invalid_yaml(error: yaml.YAMLError) -> tuple[int, int, str]:
    """1-based line and column of a YAML error ((0, 0) if the parser marks none) and the
    message for a reader, ``invalid YAML: ...``."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return 0, 0, f"invalid YAML: {error}"
    problem = error.problem_mark or error.context_mark
    line, column = (problem.line + 1, problem.column + 1) if problem is not None else (0, 0)
    message = " ".join(part for part in (error.context, error.problem) if part)
    return line, column, f"invalid YAML: {message}"
