"""The generated OpenAPI documents: every reference resolves, every operation is named once,
and the schemas are the models' (the schemathesis tests check the running apps against them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest

from control_service.control_models import control_spec
from control_service.openapi import ERRORS, common_spec
from control_service.replay_models import ReplaySettings, replay_spec
from flink_deploy.autoscaler.api_models import Scaling, autoscaler_spec

SPECS: dict[str, Callable[[str], dict[str, Any]]] = {
    "common": lambda version: common_spec("test", version),
    "control": control_spec,
    "replay": replay_spec,
    "autoscaler": autoscaler_spec,
}


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


@pytest.mark.parametrize("name", SPECS)
def test_every_reference_resolves_and_every_operation_is_named_once(name: str) -> None:
    spec = SPECS[name]("7")
    assert (spec["openapi"], spec["info"]["version"]) == ("3.1.0", "7")
    schemas = spec["components"]["schemas"]
    assert {ref.removeprefix("#/components/schemas/") for ref in refs(spec)} <= set(schemas)
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    for path in spec["paths"].values():
        for op in path.values():
            for code, response in op["responses"].items():
                if code in ERRORS and op["operationId"] != "ready":  # not ready: a Ready body
                    error = response["content"]["application/json"]["schema"]
                    assert error == {"$ref": "#/components/schemas/Error"}


def test_a_model_used_both_ways_has_both_schemas() -> None:
    """The replay settings: every field optional in a PUT, every field present in an answer."""
    schemas = replay_spec("1")["components"]["schemas"]
    assert "required" not in schemas["ReplaySettings-Input"]
    output = schemas["ReplaySettings-Output"]
    assert output["required"] == list(ReplaySettings.model_fields)
    assert schemas["ReplaySettings-Input"]["properties"]["rate"]["description"] == (
        "a positive number of alerts/s, or null (as fast as possible)"
    )


def test_a_schema_is_its_model_s() -> None:
    schemas = autoscaler_spec("1")["components"]["schemas"]
    assert schemas["Scaling"]["required"] == list(Scaling.model_fields)
    body = {"error": "not_found", "message": "no such filter", "details": {}}
    jsonschema.validate(body, control_spec("1")["components"]["schemas"]["Error"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"error": "x"}, control_spec("1")["components"]["schemas"]["Error"])
