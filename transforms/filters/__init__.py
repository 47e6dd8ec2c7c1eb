"""User filters as data: YAML documents, a restricted expression language, one batch evaluator.

* ``document``: the filter document and the filter set, validated with YAML line and column;
* ``expr``: tokenizer, parser and AST of the ``where`` expression language;
* ``catalogue``: the fields a filter may read (alert model and annotations) and type checking;
* ``compile``: the whole filter set compiled into one column-wise numpy evaluator.
"""

from transforms.filters.compile import (
    BatchResult,
    CompiledFilterSet,
    FilterOutcome,
    compile_filter_set,
)
from transforms.filters.document import (
    Filter,
    FilterIssue,
    FilterSet,
    FilterValidationError,
    load_filter_file,
    load_filters,
)
from transforms.filters.expr import ExprSyntaxError, parse

__all__ = [
    "BatchResult",
    "CompiledFilterSet",
    "ExprSyntaxError",
    "Filter",
    "FilterIssue",
    "FilterOutcome",
    "FilterSet",
    "FilterValidationError",
    "compile_filter_set",
    "load_filter_file",
    "load_filters",
    "parse",
]
