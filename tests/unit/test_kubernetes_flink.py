"""The Flink parts of the Kubernetes manifests (flink_deploy/kubernetes/) agree with the code:
the job id, job class and reactive-mode settings are flink_deploy.stack's constants (config,
services); the TaskManager shapes are the default policy's profiles; every TaskManager runs the
Beam worker pool. Reading the manifests is tests/kubernetes_support.py.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from flink_deploy.stack.config import (
    APPLICATION_JOB_ID,
    PIPELINE_RUNNER_CLASS,
    read_versions,
)
from tests.kubernetes_support import (
    FOLDERS,
    K8S,
    WORKER_POOL_MODULE,
    WORKER_POOL_PORT,
    argv,
    dynamic_properties,
    flatten,
    memory_bytes,
    mounted_policy,
    objects,
    one,
    option,
    pod_specs,
    reactive_settings,
    taskmanager_deployments,
)

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
