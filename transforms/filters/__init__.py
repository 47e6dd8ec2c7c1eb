"""User filters as data: YAML documents, a restricted expression language, one batch evaluator.

No Beam in this package (the import-linter contracts check it); the stage that runs a filter
set in a pipeline is ``transforms.apply_filters``.

* ``model``: the validated filter and filter set, and the problems found in a document;
* ``document``: filter documents (YAML, or a snapshot's JSON) validated with line and column;
* ``expr``: tokenizer, parser and AST of the ``where`` expression language;
* ``catalogue``: the fields a filter may read (alert model and annotations) and the functions;
* ``check``: an expression type-checked against the catalogue;
* ``compile``: the whole filter set compiled into one column-wise numpy evaluator, reading
  ``columns`` and the sky tests of ``geometry``;
* ``reference``: the per-alert interpreter, the evaluator's reference and baseline;
* ``annotations``: annotation records seen column-wise;
* ``matches``: matches and error reports of a batch, and the set in force;
* ``snapshot``: the config topic's records decoded into filter sets; ``live``: each worker's
  follower of the config topic.
"""
