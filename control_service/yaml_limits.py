"""Limits on untrusted YAML, checked on the parser's events before anything is built from it:
alias bombs (too many aliases) and deep nesting. Shared by the filter API and the autoscaler's
policy."""

from __future__ import annotations

import yaml


class YamlLimitExceeded(ValueError):
    """``text`` goes over a limit at 1-based ``line``/``column``; ``summary`` says which, for a
    reader, and the message says it for the position."""

    def __init__(self, line: int, column: int, summary: str, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.summary = summary


def check_yaml_limits(text: str, max_aliases: int, max_depth: int) -> None:
    """Raise :class:`YamlLimitExceeded` at the first alias over ``max_aliases`` or collection
    deeper than ``max_depth``. A syntax error is left to the loader, which reports it with its
    position."""
    aliases = depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > max_aliases:
                    raise _exceeded(event, "aliases", max_aliases)
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    raise _exceeded(event, "depth", max_depth)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return


#: Each limit's summary and message, by what it limits.
_LIMITS = {
    "aliases": ("the YAML uses more than {} aliases", "too many aliases (limit {})"),
    "depth": ("the YAML nests deeper than {} levels", "nested too deep (limit {})"),
}


def _exceeded(event: yaml.Event, limit: str, value: int) -> YamlLimitExceeded:
    mark = event.start_mark
    assert mark is not None, "the parser marks every event it emits"
    summary, message = (text.format(value) for text in _LIMITS[limit])
    return YamlLimitExceeded(mark.line + 1, mark.column + 1, summary, message)
