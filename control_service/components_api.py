"""``/api/v1/components``: every stage of the running pipelines, with state and counters.

Beam fuses the Python steps of the broker into one Flink operator (and Flink chains that with
the Kafka source and sinks into one vertex), so Flink's per-vertex record counts say nothing
per stage. The stages' own counters do: in portable mode the Flink runner registers each Beam
counter of a fused operator as a Flink metric ``<operator>.<Namespace>_<name>`` (all subtasks
added here with ``agg=sum``), and the Java Kafka source and sinks keep Flink's operator
``numRecordsIn``/``numRecordsOut``. One component per stage and live job (id
``<job id>.<stage>``), listed when the stage's Beam label appears in a vertex name of the job:

============== ======================== ================================ ======================
stage          elements_in              elements_out                     errors
============== ======================== ================================ ======================
ingest         (none: a source)         ReadAlerts source records out    (none)
decode         DecodeAlerts_messages    DecodeAlerts_alerts_decoded      DecodeAlerts_dead_lett
                                                                         ers_* (all stages)
annotate.<a>   AnnotateAlerts_alerts_   elements_in - errors             AnnotateAlerts_dead_le
               in_<a>                                                    tters_annotate.<a>
filters        ApplyFilters_alerts_in   ApplyFilters_matches             ApplyFilters_filter_er
                                                                         rors
publish        ApplyFilters_matches     PublishMatches_matches_published (none: retried)
deadletters    decode + annotate dead   records into the                 (none)
               letters                  PublishDeadLetters Kafka writer
============== ======================== ================================ ======================

Counters are cumulative since the job started (a job restored from a savepoint starts them at
0 again); a counter the job has not incremented yet reads 0. ``metrics`` holds the raw values
behind the three figures. State and parallelism are those of the vertex holding the stage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from control_service.auth import require_read
from control_service.errors import not_found
from control_service.jobs_api import FLINK_EXTENSION
from flink_deploy.flink_rest import TERMINAL_STATES, FlinkRest
from transforms import apply_filters, decode_alerts, publish
from transforms.annotate import transform as annotate
from transforms.decode_errors import DecodeStage

components_bp = Blueprint("components", __name__, url_prefix="/api/v1/components")

ANNOTATORS = tuple(a.value for a in annotate.Annotator)
#: Namespaces of the Beam counters the stages keep (transforms/).
COUNTER_NAMESPACES = (
    decode_alerts.COUNTER_NAMESPACE,
    annotate.COUNTER_NAMESPACE,
    apply_filters.COUNTER_NAMESPACE,
    publish.COUNTER_NAMESPACE,
)
_SUBTASK = re.compile(r"^\d+\.")
_COUNTER = re.compile(rf"^(?:{'|'.join(COUNTER_NAMESPACES)})_")


def counter_key(namespace: str, name: str) -> str:
    """The key of a stage's Beam counter: its Flink metric name, ``<Namespace>_<name>``."""
    return f"{namespace}_{name}"


_DECODE_IN = counter_key(decode_alerts.COUNTER_NAMESPACE, decode_alerts.MESSAGES_COUNTER)
_DECODE_OUT = counter_key(decode_alerts.COUNTER_NAMESPACE, decode_alerts.DECODED_COUNTER)
_DECODE_ERRORS = frozenset(
    counter_key(decode_alerts.COUNTER_NAMESPACE, decode_alerts.dead_letters_counter(s))
    for s in DecodeStage
)
_FILTERS_IN = counter_key(apply_filters.COUNTER_NAMESPACE, apply_filters.ALERTS_IN_COUNTER)
_FILTERS_OUT = counter_key(apply_filters.COUNTER_NAMESPACE, apply_filters.MATCHES_COUNTER)
_FILTERS_ERRORS = counter_key(apply_filters.COUNTER_NAMESPACE, apply_filters.FILTER_ERRORS_COUNTER)
_PUBLISHED = counter_key(publish.COUNTER_NAMESPACE, publish.MATCHES_PUBLISHED_COUNTER)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its id, the Beam label that names it in the vertex names, and the
    metric keys (see :func:`metric_key`) summed into each figure; ``None`` is not applicable."""

    stage: str
    label: str
    elements_in: tuple[str, ...] | None
    elements_out: tuple[str, ...] | None
    errors: tuple[str, ...] | None


def _decode_errors(keys: Iterable[str]) -> tuple[str, ...]:
    return tuple(k for k in keys if k in _DECODE_ERRORS)


def _annotate_errors(keys: Iterable[str], annotator: str | None = None) -> tuple[str, ...]:
    # Flink may keep or replace the dot of "annotate.<a>" in a metric name.
    stages = annotate.STAGES if annotator is None else (f"annotate.{annotator}",)
    wanted = {
        counter_key(annotate.COUNTER_NAMESPACE, annotate.dead_letters_counter(s)) for s in stages
    }
    wanted |= {k.replace("annotate.", "annotate_") for k in wanted}
    return tuple(k for k in keys if k in wanted)


def _annotate_in(annotator: str) -> str:
    name = annotate.alerts_in_counter(annotate.Annotator(annotator))
    return counter_key(annotate.COUNTER_NAMESPACE, name)


def stages(keys: Iterable[str]) -> list[Stage]:
    """The broker's stages, their figures resolved against the metric ``keys`` a job has."""
    keys = sorted(set(keys))
    source_out = tuple(
        k for k in keys if k.startswith("op:Source__ReadAlerts") and k.endswith(".numRecordsOut")
    )
    dead_writer = tuple(
        k
        for k in keys
        if k.startswith("op:")
        and "PublishDeadLetters/" in k
        and "KafkaIO_WriteRecords" in k
        and k.endswith(".numRecordsIn")
    )
    out = [
        Stage("ingest", "ReadAlerts", None, source_out, None),
        Stage("decode", "DecodeAlerts", (_DECODE_IN,), (_DECODE_OUT,), _decode_errors(keys)),
    ]
    for annotator in ANNOTATORS:
        out.append(
            Stage(
                f"annotate.{annotator}",
                "AnnotateAlerts",
                (_annotate_in(annotator),),
                None,
                _annotate_errors(keys, annotator),
            )
        )
    out += [
        Stage("filters", "ApplyFilters", (_FILTERS_IN,), (_FILTERS_OUT,), (_FILTERS_ERRORS,)),
        Stage("publish", "PublishMatches", (_FILTERS_OUT,), (_PUBLISHED,), None),
        Stage(
            "deadletters",
            "PublishDeadLetters",
            _decode_errors(keys) + _annotate_errors(keys),
            dead_writer,
            None,
        ),
    ]
    return out


def metric_key(metric_id: str) -> tuple[str, str] | None:
    """``(key, flink name)`` of a vertex metric id worth reading, else None.

    ``flink name`` is the id without its subtask prefix (what ``subtasks/metrics`` takes); the
    key is the Beam counter name (``Namespace_name``) for a stage counter, or ``op:<operator>.
    numRecordsIn|Out`` for an operator's record counts.
    """
    name = _SUBTASK.sub("", metric_id)
    operator, _, metric = name.partition(".")
    if _COUNTER.match(metric):
        return metric, name
    if metric in ("numRecordsIn", "numRecordsOut") and operator:
        return f"op:{name}", name
    return None


def job_metrics(flink: FlinkRest, job: dict[str, Any]) -> dict[str, float]:
    """Every stage counter and operator record count of a job, summed over subtasks (and
    over operators sharing a counter)."""
    values: dict[str, float] = {}
    for vertex in job.get("vertices", []):
        if vertex.get("status") != "RUNNING":
            continue
        wanted: dict[str, str] = {}
        for metric_id in flink.vertex_metric_ids(job["jid"], vertex["id"]):
            found = metric_key(metric_id)
            if found is not None:
                wanted[found[1]] = found[0]
        sums = flink.subtask_metrics(job["jid"], vertex["id"], sorted(wanted))
        for name, value in sums.items():
            values[wanted[name]] = values.get(wanted[name], 0.0) + value
    return values


def _total(values: dict[str, float], keys: tuple[str, ...] | None) -> int | None:
    return None if keys is None else int(sum(values.get(k, 0.0) for k in keys))


def component_view(job: dict[str, Any], stage: Stage, values: dict[str, float]) -> dict[str, Any]:
    """The JSON of one stage of ``job`` (see the module doc)."""
    vertex = next(v for v in job.get("vertices", []) if stage.label in v.get("name", ""))
    elements_in = _total(values, stage.elements_in)
    errors = _total(values, stage.errors)
    elements_out = _total(values, stage.elements_out)
    if stage.elements_out is None and elements_in is not None:
        elements_out = elements_in - (errors or 0)
    used = {*(stage.elements_in or ()), *(stage.elements_out or ()), *(stage.errors or ())}
    return {
        "id": f"{job['jid']}.{stage.stage}",
        "job_id": job["jid"],
        "job_name": job.get("name", ""),
        "stage": stage.stage,
        "label": stage.label,
        "state": vertex.get("status", "UNKNOWN"),
        "parallelism": vertex.get("parallelism"),
        "elements_in": elements_in,
        "elements_out": elements_out,
        "errors": errors,
        "metrics": {k: int(values.get(k, 0.0)) for k in sorted(used)},
    }


def job_components(flink: FlinkRest, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The stages of one job whose label appears in its vertex names, with their counters."""
    names = " ".join(v.get("name", "") for v in job.get("vertices", []))
    values = job_metrics(flink, job)
    return [component_view(job, s, values) for s in stages(values) if s.label in names]


def _live_jobs(flink: FlinkRest, job_id: str | None = None) -> list[dict[str, Any]]:
    return [
        flink.job(j["jid"])
        for j in flink.jobs()
        if j.get("state") not in TERMINAL_STATES and job_id in (None, j["jid"])
    ]


@components_bp.get("")
def list_components() -> Response:
    """Every stage of every live job (``?job=ID``: of that job only)."""
    require_read()
    flink: FlinkRest = current_app.extensions[FLINK_EXTENSION]
    job_id = request.args.get("job")
    items = [c for job in _live_jobs(flink, job_id) for c in job_components(flink, job)]
    return jsonify({"components": items})


@components_bp.get("/<component_id>")
def get_component(component_id: str) -> Response:
    """One stage, by ``<job id>.<stage>``; 404 when that job is not live or has no such stage."""
    require_read()
    flink: FlinkRest = current_app.extensions[FLINK_EXTENSION]
    job_id, _, stage = component_id.partition(".")
    for job in _live_jobs(flink, job_id):
        for item in job_components(flink, job):
            if item["stage"] == stage:
                return jsonify(item)
    raise not_found(f"no running pipeline stage with id {component_id!r}", id=component_id)
