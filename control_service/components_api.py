"""``/api/v1/components``: every stage of the running pipeline, with state and counters.

One component per Flink vertex of each running job (Beam fuses steps into vertices; ``stages``
names the pipeline stages found in the vertex name: ingest, decode, annotate, filters, publish,
deadletter). Counters: ``elements_in``/``elements_out`` are Flink's read/write records of the
vertex; ``errors`` sums the vertex's metrics whose name speaks of errors or dead letters (the
Beam counters the stages keep), all subtasks added.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from control_service.auth import require_read
from control_service.errors import not_found
from control_service.jobs_api import FLINK_EXTENSION, TERMINAL, FlinkClient

components_bp = Blueprint("components", __name__, url_prefix="/api/v1/components")

STAGE_PATTERNS = (
    ("ingest", re.compile(r"ReadFromKafka|Ingest|KafkaIO|Read", re.I)),
    ("decode", re.compile(r"Decode", re.I)),
    ("annotate", re.compile(r"Annotat", re.I)),
    ("filters", re.compile(r"Filter", re.I)),
    ("publish", re.compile(r"Publish|WriteToKafka|Write", re.I)),
    ("deadletter", re.compile(r"Dead.?Letter", re.I)),
)
_ERROR_METRIC = re.compile(r"error|dead.?letter|failed", re.I)
_MAX_ERROR_METRICS = 50


def stages_of(name: str) -> list[str]:
    return [stage for stage, pattern in STAGE_PATTERNS if pattern.search(name)]


def component_view(flink: FlinkClient, job: dict[str, Any], vertex: dict[str, Any], with_metrics: bool = True) -> dict[str, Any]:
    metrics = vertex.get("metrics", {})
    errors = 0.0
    error_metrics: dict[str, float] = {}
    if with_metrics and vertex.get("status") == "RUNNING":
        ids = [m for m in flink.vertex_metric_ids(job["jid"], vertex["id"]) if _ERROR_METRIC.search(m)][:_MAX_ERROR_METRICS]
        error_metrics = flink.vertex_metrics(job["jid"], vertex["id"], ids)
        errors = sum(error_metrics.values())
    return {
        "id": vertex["id"],
        "name": vertex.get("name", ""),
        "job_id": job["jid"],
        "stages": stages_of(vertex.get("name", "")),
        "state": vertex.get("status", "UNKNOWN"),
        "parallelism": vertex.get("parallelism"),
        "elements_in": int(metrics.get("read-records", 0)),
        "elements_out": int(metrics.get("write-records", 0)),
        "errors": int(errors),
        "error_metrics": error_metrics,
    }


def _live_jobs(flink: FlinkClient) -> list[dict[str, Any]]:
    return [flink.job(j["jid"]) for j in flink.jobs() if j.get("state") not in TERMINAL]


@components_bp.get("")
def list_components() -> Response:
    require_read()
    flink: FlinkClient = current_app.extensions[FLINK_EXTENSION]
    items = [component_view(flink, job, v) for job in _live_jobs(flink) for v in job.get("vertices", [])]
    return jsonify({"components": items})


@components_bp.get("/<component_id>")
def get_component(component_id: str) -> Response:
    require_read()
    flink: FlinkClient = current_app.extensions[FLINK_EXTENSION]
    for job in _live_jobs(flink):
        for vertex in job.get("vertices", []):
            if vertex["id"] == component_id:
                return jsonify(component_view(flink, job, vertex))
    raise not_found(f"no running pipeline stage with id {component_id!r}", id=component_id)
