"""The Kubernetes manifests (flink_deploy/kubernetes/) agree with the code that runs in them.

No cluster here, and nothing is taken from the manifests on trust: the objects the autoscaler
scales, and what it does to them, come from KubernetesDriver's own requests on a fake session;
the autoscaler's command line is parsed by the real `alertflow autoscale` parser; the job id,
job class and reactive-mode settings are flink_deploy.stack's constants (config, services); the
TaskManager shapes are the default policy's profiles.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest
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
    APPLICATION_JOB_ID,
    PIPELINE_RUNNER_CLASS,
    StackConfig,
    read_versions,
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


# --- every manifest ---------------------------------------------------------------------------


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_manifest_loads_and_is_namespaced_alike(folder: str) -> None:
    docs = load(folder)
    assert docs, f"no manifests in {K8S / folder}"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
    namespaces = {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"}
    [namespace] = [doc["metadata"]["name"] for doc in objects(folder, "Namespace")]
    assert namespaces == {namespace}
    names = [(doc["kind"], doc["metadata"]["name"]) for doc in docs]
    assert len(names) == len(set(names)), "an object defined twice"


# --- what the autoscaler's driver scales ------------------------------------------------------


def test_taskmanager_deployments_are_what_the_driver_scales() -> None:
    # The driver acts on these Deployments, and every TaskManager Deployment is one of them.
    scaled = targets("application")
    assert {t[:2] for t in scaled} == {("apps/v1", "deployments")}
    deployments = [manifest_object("application", t) for t in scaled]
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(
        d["metadata"]["name"] for d in taskmanager_deployments("application")
    )
    # ... through their scale subresource, with a merge-patch of spec.replicas.
    calls = driver_calls("application")
    assert {c["resource"] for c in calls} == {"deployments/scale"}
    for call in calls:
        if call["verb"] == "patch":
            assert set(call["body"]) == {"spec"} and set(call["body"]["spec"]) == {"replicas"}
    # The starting counts are within the policy's bounds.
    policy = mounted_policy("application")
    total = sum(d["spec"]["replicas"] for d in deployments)
    assert policy.min_taskmanagers <= total <= policy.max_taskmanagers


def test_flinkdeployment_is_what_the_driver_patches() -> None:
    [target] = targets("operator")
    assert target[:2] == ("flink.apache.org/v1beta1", "flinkdeployments")
    flink = manifest_object("operator", target)
    patches = [c["body"] for c in driver_calls("operator") if c["verb"] == "patch"]
    assert patches
    for body in patches:
        # Every key the driver patches is one the manifest has, ending in a count.
        spec, manifest = body, flink
        while isinstance(spec, dict):
            [(key, spec)] = spec.items()
            assert key in manifest, f"the driver patches {key!r}, absent from the manifest"
            manifest = manifest[key]
        assert isinstance(spec, int) and isinstance(manifest, int)
    assert set(patches[0]["spec"]["taskManager"]) == {"replicas"}
    # spec.taskManager.replicas is honoured in standalone mode only (native mode ignores it).
    assert flink["spec"]["mode"] == "standalone"


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_role_grants_exactly_what_the_driver_uses(folder: str) -> None:
    deployment, _ = autoscaler_args(folder)
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    namespace = deployment["metadata"]["namespace"]
    assert one(folder, "ServiceAccount", account)["metadata"]["namespace"] == namespace
    roles = [
        one(folder, binding["roleRef"]["kind"], binding["roleRef"]["name"])
        for binding in objects(folder, "RoleBinding")
        if {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        in binding["subjects"]
    ]
    assert [role["kind"] for role in roles] == ["Role"]
    granted: set[tuple[str, str, str]] = set()
    named: dict[tuple[str, str], set[str] | None] = {}
    for rule in roles[0]["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted |= {(group, resource, verb) for verb in rule["verbs"]}
                names = rule.get("resourceNames")
                named[(group, resource)] = set(names) if names is not None else None
    calls = driver_calls(folder)
    assert granted == {(c["group"], c["resource"], c["verb"]) for c in calls}
    for (group, resource), names in named.items():
        used = {c["name"] for c in calls if (c["group"], c["resource"]) == (group, resource)}
        assert names is None or names == used, (group, resource, names, used)


def test_application_policy_is_the_default_policy() -> None:
    assert mounted_policy("application").to_dict() == DEFAULT_POLICY.to_dict()


def test_operator_policy_is_the_default_with_its_one_profile() -> None:
    policy = mounted_policy("operator")
    [profile] = policy.profiles
    assert profile == DEFAULT_POLICY.profile(profile.name)
    assert policy.scale_up.profile == profile.name
    unchanged = {
        k: v for k, v in DEFAULT_POLICY.to_dict().items() if k not in ("profiles", "scale_up")
    }
    assert {k: v for k, v in policy.to_dict().items() if k in unchanged} == unchanged


# --- the job: id, class, reactive settings ----------------------------------------------------


def test_jobmanager_runs_the_broker_jar_under_the_fixed_job_id() -> None:
    [pod] = [spec for name, spec in pod_specs("application") if name == "alertflow-jobmanager"]
    [container] = pod["containers"]
    args = argv(container)
    assert args[0] == "standalone-job"
    assert option(args, "--job-classname") == PIPELINE_RUNNER_CLASS
    assert option(args, "--job-id") == APPLICATION_JOB_ID


def test_flinkdeployment_job_is_the_broker_jar() -> None:
    [flink] = objects("operator", "FlinkDeployment")
    job = flink["spec"]["job"]
    assert job["entryClass"] == PIPELINE_RUNNER_CLASS
    assert job["jarURI"].startswith("local:///opt/flink/usrlib/")
    assert flink["spec"]["flinkVersion"] == "v" + read_versions()["FLINK_MINOR"].replace(".", "_")


def flink_config() -> dict[str, Any]:
    config_map = one("application", "ConfigMap", "alertflow-flink-config")
    return flatten(yaml.safe_load(config_map["data"]["config.yaml"]))


def test_flink_config_has_the_application_mode_settings() -> None:
    config = flink_config()
    expected = reactive_settings()
    assert {key: config.get(key) for key in expected} == expected
    assert config["state.checkpoints.dir"]


def test_flinkdeployment_config_has_the_application_mode_settings() -> None:
    [flink] = objects("operator", "FlinkDeployment")
    config = flink["spec"]["flinkConfiguration"]
    assert all(isinstance(value, str) for value in config.values())  # the CRD's map of strings
    expected = {key: str(value) for key, value in reactive_settings().items()}
    assert {key: config.get(key) for key in expected} == expected
    assert config["state.checkpoints.dir"] and config["state.savepoints.dir"]


def test_flink_pods_find_the_jobmanager_and_their_config() -> None:
    config = flink_config()
    rpc = one("application", "Service", config["jobmanager.rpc.address"])
    assert {p["port"] for p in rpc["spec"]["ports"]} >= {
        config["jobmanager.rpc.port"],
        config["blob.server.port"],
    }
    jobmanager = one("application", "Deployment", "alertflow-jobmanager")
    labels = jobmanager["spec"]["template"]["metadata"]["labels"]
    rest = one("application", "Service", "alertflow-jobmanager-rest")
    for service in (rpc, rest):
        assert service["spec"]["selector"].items() <= labels.items()
    assert [p["port"] for p in rest["spec"]["ports"]] == [config["rest.port"]]
    for name, pod in pod_specs("application"):
        flink = [c for c in pod["containers"] if c["image"].split(":")[0].endswith("/flink")]
        for container in flink:
            # The image's entry point writes JOB_MANAGER_RPC_ADDRESS over the config's key.
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env["JOB_MANAGER_RPC_ADDRESS"] == config["jobmanager.rpc.address"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/opt/flink/conf"]], name
            [init] = pod["initContainers"]
            init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
            assert init_mounts[mounts["/opt/flink/conf"]] == "/opt/flink/conf"
            sources = [
                v
                for v in volumes.values()
                if v.get("configMap", {}).get("name") == "alertflow-flink-config"
            ]
            assert [init_mounts[v["name"]] + "/*" for v in sources] == [
                shlex.split(argv(init)[-1])[1]
            ], name


# --- TaskManager shapes and the worker pool ---------------------------------------------------


def test_taskmanager_slots_and_memory_are_the_policy_profiles() -> None:
    policy = mounted_policy("application")
    for deployment in taskmanager_deployments("application"):
        name = deployment["metadata"]["name"]
        profile = policy.profile(name.removeprefix("alertflow-taskmanager-"))
        [container] = [
            c
            for c in deployment["spec"]["template"]["spec"]["containers"]
            if argv(c)[:1] == ["taskmanager"]
        ]
        wanted = dynamic_properties(profile.dynamic_properties())
        given = dynamic_properties(argv(container))
        assert {key: given.get(key) for key in wanted} == wanted, name
        limit = container["resources"]["limits"]["memory"]
        assert memory_bytes(limit) == memory_bytes(profile.process_memory), name


def test_flinkdeployment_taskmanager_is_the_policy_profile() -> None:
    [profile] = mounted_policy("operator").profiles
    [flink] = objects("operator", "FlinkDeployment")
    settings = profile.memory_settings()
    del settings["taskmanager.memory.process.size"]  # the operator sets it from the resource
    assert {k: flink["spec"]["flinkConfiguration"].get(k) for k in settings} == settings
    memory = flink["spec"]["taskManager"]["resource"]["memory"]
    assert memory_bytes(memory) == memory_bytes(profile.process_memory)


def runs_python_steps(owner: str, pod: dict[str, Any]) -> bool:
    """A TaskManager pod: the Flink image's `taskmanager`, or the operator's taskManager."""
    return owner.endswith("/taskManager") or any(
        argv(c)[:1] == ["taskmanager"] for c in pod["containers"]
    )


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_taskmanager_has_the_worker_pool_sidecar(folder: str) -> None:
    found = 0
    for owner, pod in pod_specs(folder):
        if not runs_python_steps(owner, pod):
            continue
        found += 1
        pools = [c for c in pod["containers"] if WORKER_POOL_MODULE in argv(c)]
        assert len(pools) == 1, f"{folder}: {owner} has no Beam worker pool beside it"
        args = argv(pools[0])
        assert f"--service_port={WORKER_POOL_PORT}" in args, owner
        assert WORKER_POOL_PORT in [p["containerPort"] for p in pools[0]["ports"]], owner
        assert pools[0]["image"] != "" and not pools[0]["image"].split(":")[0].endswith("/flink")
    assert found, f"{folder}: no TaskManager pods"


def test_flink_image_is_the_pinned_flink() -> None:
    text = (K8S / "images" / "flink.Dockerfile").read_text(encoding="utf-8")
    [base] = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert base.startswith(f"flink:{read_versions()['FLINK_VERSION']}-")
    assert "java17" in base
    assert "/opt/flink/usrlib/" in text


# --- the autoscaler's own Service and addresses -----------------------------------------------


@pytest.mark.parametrize("folder", FOLDERS)
def test_autoscaler_listens_where_its_service_points(folder: str) -> None:
    deployment, args = autoscaler_args(folder)
    service = one(folder, "Service", "alertflow-autoscaler")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(5001, args.port)]
    assert args.host == "0.0.0.0"
    assert deployment["spec"]["replicas"] == 1  # two autoscalers would both act


def test_autoscaler_reads_the_jobmanager_rest_service() -> None:
    _, args = autoscaler_args("application")
    url = urlparse(args.flink_rest_url)
    service = one("application", "Service", url.hostname)
    assert url.port in [p["port"] for p in service["spec"]["ports"]]
