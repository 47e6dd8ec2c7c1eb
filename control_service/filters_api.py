"""``/api/v1/filters``: users manage their filters as YAML (or JSON) documents over REST.

* ``GET /api/v1/filters`` (``?owner=``, ``?active=``), ``GET /api/v1/filters/<name>`` (JSON, or
  the YAML document with ``Accept: application/yaml``);
* ``POST /api/v1/filters``: apply one or more documents, all or none (create or replace; 201 if
  any was created);
* ``PUT /api/v1/filters/<name>``: replace (or create) that one filter;
* ``DELETE /api/v1/filters/<name>``; ``POST .../activate``, ``POST .../deactivate``;
* ``POST /api/v1/filters/<name>/test``: a dry run of the stored filter on the reference alerts,
  with the annotators it names, by the runner of every dry run
  (:class:`transforms.local.LocalRunner`): the matches as the ``lite`` output shows
  them, and the fraction. Changes nothing, so it needs no token.

Every change needs a bearer token; a user changes only filters it owns (``metadata.owner`` is
the user), an admin any. The body is YAML (``application/yaml``, ``text/yaml``) or JSON (one
document, a list, or ``{"filters": [...]}``); it is checked for size, YAML aliases and nesting
depth before it is parsed, then validated whole: 422 with every problem and its line and column
(for JSON, the line and column of the equivalent YAML). A bad request changes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, current_app, jsonify, request

from control_service.auth import require_read, require_token
from control_service.common import component, iter_issue_dicts
from control_service.errors import (
    bad_request,
    too_large,
    unavailable,
    unsupported_media_type,
    validation_failed,
)
from control_service.store import FilterStore, StoredFilter
from control_service.yaml_limits import YamlLimitExceeded, check_yaml_limits
from transforms.alert_model import Alert
from transforms.annotate.transform import AnnotateConfig, LoadedAnnotators, load_annotators
from transforms.decode import alert_files, decode_message
from transforms.decode_errors import DecodeError
from transforms.filters.document import load_filters
from transforms.filters.matches import FilterMatch, batch_reports
from transforms.filters.model import Filter, FilterSet, FilterValidationError
from transforms.local import LocalRunner
from transforms.publish import lite_record
from transforms.schemas import DEFAULT_LSST_SCHEMA_DIR, LsstSchemas

log = logging.getLogger(__name__)
STORE_EXTENSION = "alertflow.filters"
REFERENCE_EXTENSION = "alertflow.reference"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")

filters_bp = Blueprint("filters", __name__, url_prefix="/api/v1/filters")


# --- the reference alerts for dry runs ----------------------------------------------------------


class ReferenceAlerts:
    """The inputs of dry runs: real alerts decoded once, on first use, from alert files under
    the configured paths, and the annotators, loaded once on first use, as the broker runs them."""

    def __init__(self, paths: Sequence[Path], max_alerts: int) -> None:
        self.paths = tuple(paths)
        self.max_alerts = max_alerts
        self._alerts: tuple[Alert, ...] | None = None
        self._annotators: LoadedAnnotators | None = None
        self._lock = threading.Lock()

    def alerts(self) -> tuple[Alert, ...]:
        with self._lock:
            if self._alerts is None:
                self._alerts = self._load()
            return self._alerts

    def runner(self, filter_set: FilterSet) -> LocalRunner:
        """The runner of ``filter_set``, with the annotators it needs."""
        with self._lock:
            if self._annotators is None:
                self._annotators = load_annotators(AnnotateConfig())
            return LocalRunner(filter_set, loaded=self._annotators)

    def _load(self) -> tuple[Alert, ...]:
        schemas = LsstSchemas(DEFAULT_LSST_SCHEMA_DIR)
        files = [file for path in self.paths for file in alert_files(path)]
        alerts: list[Alert] = []
        for path in files:
            if len(alerts) >= self.max_alerts:
                break
            try:
                alerts.extend(decode_message(path.read_bytes(), schemas))
            except (DecodeError, OSError) as error:
                log.warning("reference alerts: skipping %s: %s", path, error)
        log.info("reference alerts: %d from %d files", len(alerts[: self.max_alerts]), len(files))
        return tuple(alerts[: self.max_alerts])


# --- request parsing ----------------------------------------------------------------------------


def _store() -> FilterStore:
    store: FilterStore = current_app.extensions[STORE_EXTENSION]
    return store


def _settings() -> Any:
    return current_app.extensions["alertflow.config"]


def parse_filter_body() -> tuple[Filter, ...]:
    """The filters in the request body, validated; raises 413/415/400/422 as the case may be."""
    settings = _settings()
    raw = request.get_data(cache=True)
    if len(raw) > settings.max_yaml_bytes:
        raise too_large(
            f"a filter body may be at most {settings.max_yaml_bytes} bytes",
            limit=settings.max_yaml_bytes,
        )
    if not raw.strip():
        raise bad_request("the body is empty; send one or more filter documents")
    mimetype = request.mimetype
    if request.is_json:
        data = request.get_json(silent=True)
        if data is None:
            raise bad_request("the body is not valid JSON")
        if isinstance(data, dict) and set(data) == {"filters"}:
            data = data["filters"]
        documents = data if isinstance(data, list) else [data]
        if not documents or not all(isinstance(d, dict) for d in documents):
            raise bad_request(
                'send a filter document (an object), a list of them, or {"filters": [...]}'
            )
        text = yaml.safe_dump_all(documents, sort_keys=False)
        source = "json"
    elif mimetype in YAML_TYPES:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request("the body is not UTF-8") from None
        try:
            check_yaml_limits(text, settings.max_yaml_aliases, settings.max_yaml_depth)
        except YamlLimitExceeded as error:
            issue = {
                "line": error.line,
                "column": error.column,
                "path": "<yaml>",
                "message": str(error),
            }
            raise validation_failed(error.summary, [issue]) from None
        source = "yaml"
    else:
        raise unsupported_media_type(
            "send application/yaml or application/json", content_type=request.content_type or ""
        )
    try:
        return load_filters(text, source="<request>")
    except FilterValidationError as error:
        raise validation_failed(
            f"the filter document has {len(error.issues)} problem(s); nothing was changed",
            iter_issue_dicts(error.issues),
            format=source,
        ) from None
    except RecursionError:
        raise validation_failed(
            "the document nests too deep",
            [{"line": 0, "column": 0, "path": "<yaml>", "message": "nested too deep"}],
        ) from None


def _require_running() -> None:
    if component().state != "running":
        raise unavailable(
            f"the control service is {component().state}; changes are refused until "
            "POST /api/v1/actions/start",
            state=component().state,
        )


# --- responses ----------------------------------------------------------------------------------


def filter_view(stored: StoredFilter) -> dict[str, Any]:
    flt = stored.filter
    return {
        "name": flt.name,
        "owner": flt.owner,
        "description": flt.description,
        "active": stored.active,
        "document": flt.to_document(),
    }


# --- routes -------------------------------------------------------------------------------------


@filters_bp.get("")
def list_filters() -> Response:
    require_read()
    owner = request.args.get("owner")
    active = request.args.get("active")
    if active not in (None, "true", "false"):
        raise bad_request("active must be true or false", parameter="active")
    version, items = _store().all()
    items = [
        s
        for s in items
        if (owner is None or s.filter.owner == owner)
        and (active is None or s.active == (active == "true"))
    ]
    return jsonify({"version": version, "filters": [filter_view(s) for s in items]})


@filters_bp.post("")
def apply_filters() -> tuple[Response, int]:
    principal = require_token()
    _require_running()
    filters = parse_filter_body()
    result = _store().apply(filters, principal)
    views = [filter_view(_store().get(f.name)) for f in filters]
    body = {
        "version": result.version,
        "created": list(result.created),
        "updated": list(result.updated),
        "filters": views,
    }
    return jsonify(body), 201 if result.created else 200


@filters_bp.get("/<name>")
def get_filter(name: str) -> Response:
    require_read()
    stored = _store().get(name)
    if (
        request.accept_mimetypes.best_match(["application/json", "application/yaml"])
        == "application/yaml"
    ):
        text = yaml.safe_dump(stored.filter.to_document(), sort_keys=False)
        return Response(text, mimetype="application/yaml")
    return jsonify({**filter_view(stored), "version": _store().version})


@filters_bp.put("/<name>")
def put_filter(name: str) -> tuple[Response, int]:
    principal = require_token()
    _require_running()
    filters = parse_filter_body()
    if len(filters) != 1 or filters[0].name != name:
        names = ", ".join(f.name for f in filters)
        raise validation_failed(
            f"PUT /api/v1/filters/{name} takes exactly one document named {name!r}",
            [
                {
                    "line": 0,
                    "column": 0,
                    "path": "metadata.name",
                    "message": f"expected one filter named {name!r}, got: {names}",
                }
            ],
        )
    result = _store().apply(filters, principal)
    return jsonify(
        {
            "version": result.version,
            "created": list(result.created),
            "updated": list(result.updated),
            "filters": [filter_view(_store().get(name))],
        }
    ), 201 if result.created else 200


@filters_bp.delete("/<name>")
def delete_filter(name: str) -> Response:
    principal = require_token()
    _require_running()
    version = _store().delete(name, principal)
    return jsonify({"version": version, "deleted": name})


def _set_active(name: str, active: bool) -> Response:
    principal = require_token()
    _require_running()
    version = _store().set_active(name, active, principal)
    return jsonify({"version": version, "filters": [filter_view(_store().get(name))]})


@filters_bp.post("/<name>/activate")
def activate_filter(name: str) -> Response:
    return _set_active(name, True)


@filters_bp.post("/<name>/deactivate")
def deactivate_filter(name: str) -> Response:
    return _set_active(name, False)


@filters_bp.post("/<name>/test")
def test_filter(name: str) -> Response:
    require_read()
    stored = _store().get(name)
    reference: ReferenceAlerts = current_app.extensions[REFERENCE_EXTENSION]
    flt = stored.filter
    try:
        alerts = reference.alerts()
        runner = reference.runner(FilterSet(0, (flt,)))
    except Exception as error:  # noqa: BLE001 - a broken reference set is "unavailable", not a 500
        log.error("the dry run's reference alerts or annotators could not be loaded: %s", error)
        raise unavailable("the reference alerts or the annotators could not be loaded") from None
    if not alerts:
        raise unavailable("no reference alerts are configured (reference_alerts)")
    batch = runner.evaluate(alerts)
    outcome = batch.result.outcomes[flt.name]
    limit = _settings().max_test_matches
    matches = [
        lite_record(item)
        for item in batch_reports(runner.compiled, batch.result, batch.alerts, batch.annotations)
        if isinstance(item, FilterMatch)
    ][:limit]
    n = len(batch.alerts)
    return jsonify(
        {
            "filter": flt.name,
            "active": stored.active,
            "evaluated": n,
            "rejected": len(batch.rejected),
            "matched": outcome.matched,
            "fraction": outcome.matched / n if n else 0.0,
            "errors": outcome.errors,
            "failure": outcome.failure,
            "matches": matches,
            "truncated": outcome.matched > len(matches),
        }
    )
