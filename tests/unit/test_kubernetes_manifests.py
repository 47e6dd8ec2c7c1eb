"""The Kubernetes manifests (flink_deploy/kubernetes/) agree with the code that runs in them:
every manifest, what the autoscaler scales and may do, its policy and its Service. The Flink
job and TaskManagers are test_kubernetes_flink.py; reading the manifests is
tests/kubernetes_support.py.

No cluster here, and nothing is taken from the manifests on trust: the objects the autoscaler
scales, and what it does to them, come from KubernetesDriver's own requests on a fake session;
the autoscaler's command line is parsed by the real `alertflow autoscale` parser; the job id,
job class and reactive-mode settings are flink_deploy.stack's constants (config, services); the
TaskManager shapes are the default policy's profiles.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.kubernetes_support import (
    DEFAULT_POLICY,
    FOLDERS,
    K8S,
    autoscaler_args,
    driver_calls,
    load,
    manifest_object,
    mounted_policy,
    objects,
    one,
    targets,
    taskmanager_deployments,
)

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
