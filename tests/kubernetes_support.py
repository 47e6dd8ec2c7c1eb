"""Reading the Kubernetes manifests (flink_deploy/kubernetes/), for the tests that check them
against the code that runs in them: the objects of a folder, their pod specs and command lines,
Flink's options and memory sizes; and the autoscaler as the manifests run it (its command line
parsed by the real `alertflow autoscale` parser, its mounted policy, and every request its
KubernetesDriver makes, on a fake session).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

import requests
import yaml

from control_service.commands import autoscale
from flink_deploy.autoscaler.drivers import KubernetesDriver
from flink_deploy.autoscaler.policy import (
    DEFAULT_POLICY_FILE,
    Policy,
    load_policy,
    load_policy_file,
)
from flink_deploy.settings import REPO_ROOT
from flink_deploy.stack.config import (
    StackConfig,
)
from flink_deploy.stack.services import APPLICATION_SCHEDULER, APPLICATION_SETTINGS

K8S = REPO_ROOT / "flink_deploy" / "kubernetes"
FOLDERS = ("application", "operator")
DEFAULT_POLICY = load_policy_file(DEFAULT_POLICY_FILE)
WORKER_POOL_PORT = StackConfig.model_fields["worker_pool_port"].default
WORKER_POOL_MODULE = "apache_beam.runners.worker.worker_pool_main"
FLINK_MAIN_CONTAINER = "flink-main-container"  # the operator's name for the Flink container
VERBS = {"GET": "get", "PATCH": "patch"}
# /apis/<group>/<version>/namespaces/<namespace>/<resource>/<name>[/<subresource>]
API_PATH = re.compile(
    r"/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<namespace>[^/]+)"
    r"/(?P<resource>[^/]+)/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?"
)


# --- reading the manifests --------------------------------------------------------------------


def load(folder: str) -> list[dict[str, Any]]:
    docs = []
    for path in sorted((K8S / folder).glob("*.yaml")):
        with path.open(encoding="utf-8") as stream:
            docs += [doc for doc in yaml.safe_load_all(stream) if doc is not None]
    return docs


def objects(folder: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in load(folder) if doc["kind"] == kind]


def one(folder: str, kind: str, name: str) -> dict[str, Any]:
    [found] = [doc for doc in objects(folder, kind) if doc["metadata"]["name"] == name]
    return found


def pod_specs(folder: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(the owner's name, pod spec) of every pod template: Deployments' and the
    FlinkDeployments' (their jobManager and taskManager pod templates)."""
    for doc in load(folder):
        if doc["kind"] == "Deployment":
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        elif doc["kind"] == "FlinkDeployment":
            for role in ("jobManager", "taskManager"):
                template = doc["spec"][role].get("podTemplate", {"spec": {"containers": []}})
                yield f"{doc['metadata']['name']}/{role}", template["spec"]


def argv(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def dynamic_properties(args: list[str]) -> dict[str, str]:
    """Flink's ``-D key=value`` (or ``-Dkey=value``) options."""
    out = {}
    for i, arg in enumerate(args):
        if arg == "-D":
            key, _, value = args[i + 1].partition("=")
        elif arg.startswith("-D"):
            key, _, value = arg[2:].partition("=")
        else:
            continue
        out[key] = value
    return out


def option(args: list[str], name: str) -> str:
    [value] = [args[i + 1] for i, arg in enumerate(args) if arg == name]
    return value


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flink's nested YAML keys as the flat keys they stand for."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def reactive_settings() -> dict[str, Any]:
    """What the local application mode adds to Flink's config (flink_deploy/stack/services.py)."""
    return {
        **flatten(APPLICATION_SETTINGS),
        **flatten({"jobmanager": {"adaptive-scheduler": APPLICATION_SCHEDULER}}),
    }


def memory_bytes(quantity: str) -> int:
    """A Flink memory size (3072m, 4g: binary units) or a Kubernetes quantity (3072Mi, 3Gi)."""
    match = re.fullmatch(r"([0-9]+)\s*(m|mb|mi|g|gb|gi)", quantity.strip(), re.IGNORECASE)
    assert match, f"not a memory size: {quantity!r}"
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * (2**20 if unit.startswith("m") else 2**30)


# --- the autoscaler as the manifests run it ---------------------------------------------------


def autoscaler_args(folder: str) -> tuple[dict[str, Any], argparse.Namespace]:
    """The autoscaler Deployment, and its command line as `alertflow autoscale` parses it."""
    deployment = one(folder, "Deployment", "alertflow-autoscaler")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    command = argv(container)
    assert command[:2] == ["alertflow", "autoscale"], command
    parser = argparse.ArgumentParser()
    autoscale.register(parser.add_subparsers())
    return deployment, parser.parse_args(command[1:])


def mounted_policy(folder: str) -> Policy:
    """The policy file the autoscaler reads: its --policy path, through the pod's volume
    mounts, to the ConfigMap key that file is."""
    deployment, args = autoscaler_args(folder)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    path = PurePosixPath(args.policy)
    [mount] = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == path.parent]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config_map = one(folder, "ConfigMap", volume["configMap"]["name"])
    return load_policy(config_map["data"][path.name], source=f"{folder}: {path}")


class FakeKubernetes:
    """Answers every GET with one replica (both object kinds) and every PATCH with its body;
    records (method, path, body)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.calls.append((method, urlparse(url).path, kwargs.get("json")))
        body = kwargs.get("json") or {"spec": {"replicas": 1, "taskManager": {"replicas": 1}}}
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(body).encode()
        return response


def driver_calls(folder: str) -> list[dict[str, Any]]:
    """Every request KubernetesDriver makes, built as the folder's autoscaler builds it (its
    --k8s-mode, --k8s-name, --namespace or its pod's namespace, its mounted policy): list,
    add one of each profile, remove it. Each as {verb, group, version, namespace, resource,
    name, body}; resource with its subresource (deployments/scale)."""
    deployment, args = autoscaler_args(folder)
    assert args.driver == "kubernetes"
    policy = mounted_policy(folder)
    session = FakeKubernetes()
    driver = KubernetesDriver(
        policy.profiles,
        mode=args.k8s_mode,
        name=args.k8s_name,
        namespace=args.namespace or deployment["metadata"]["namespace"],
        api_url="https://kubernetes.test",
        token="t",
        ca_cert=False,
        session=session,
    )  # type: ignore[arg-type]
    driver.taskmanagers()
    for profile in policy.profiles:
        driver.remove(driver.add(profile).name)
    calls = []
    for method, path, body in session.calls:
        match = API_PATH.fullmatch(path)
        assert match, path
        part = match.groupdict()
        resource = part["resource"] + (f"/{part['sub']}" if part["sub"] else "")
        calls.append(
            {
                "verb": VERBS[method],
                "group": part["group"],
                "version": part["version"],
                "namespace": part["namespace"],
                "resource": resource,
                "name": part["name"],
                "body": body,
            }
        )
    return calls


def targets(folder: str) -> set[tuple[str, str, str, str]]:
    """(apiVersion, plural resource without subresource, namespace, name) the driver acts on."""
    return {
        (f"{c['group']}/{c['version']}", c["resource"].split("/")[0], c["namespace"], c["name"])
        for c in driver_calls(folder)
    }


PLURALS = {"Deployment": "deployments", "FlinkDeployment": "flinkdeployments"}


def manifest_object(folder: str, target: tuple[str, str, str, str]) -> dict[str, Any]:
    api_version, resource, namespace, name = target
    found = [
        doc
        for doc in load(folder)
        if (
            doc["apiVersion"],
            PLURALS.get(doc["kind"]),
            doc["metadata"].get("namespace"),
            doc["metadata"]["name"],
        )
        == target
    ]
    assert len(found) == 1, f"{folder}: no single {resource} {namespace}/{name} ({api_version})"
    return found[0]


def taskmanager_deployments(folder: str) -> list[dict[str, Any]]:
    """Deployments whose pods run a Flink TaskManager (the image's `taskmanager` command)."""
    return [
        doc
        for doc in objects(folder, "Deployment")
        if any(
            argv(c)[:1] == ["taskmanager"] for c in doc["spec"]["template"]["spec"]["containers"]
        )
    ]
