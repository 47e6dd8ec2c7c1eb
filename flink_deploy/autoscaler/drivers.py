"""Drivers: how a scaling decision reaches the cluster.

A :class:`Driver` lists the TaskManagers it manages (oldest first), adds one of a profile, and
removes one by name. The local driver (processes on this machine) is
``flink_deploy.autoscaler.local.LocalDriver``; :class:`KubernetesDriver` is here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import requests

from flink_deploy.autoscaler.model import Profile, TaskManager

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEPLOYMENT_PREFIX = "alertflow-taskmanager-"
MERGE_PATCH = "application/merge-patch+json"


class KubernetesMode(StrEnum):
    """What the Kubernetes driver scales: a Deployment per profile, or one FlinkDeployment."""

    DEPLOYMENTS = "deployments"
    FLINKDEPLOYMENT = "flinkdeployment"


class DriverError(RuntimeError):
    """The driver could not read or change the cluster; the message names the object."""


@runtime_checkable
class Driver(Protocol):
    """Adds and removes TaskManagers.

    ``taskmanagers()`` lists the TaskManagers the driver manages, oldest first (the decision
    engine removes from the end); ``add(profile)`` starts one of that profile and returns it;
    ``remove(name)`` stops that one. Each raises :class:`DriverError` (or OSError) on failure,
    having changed nothing it can undo.
    """

    def taskmanagers(self) -> list[TaskManager]: ...

    def add(self, profile: Profile) -> TaskManager: ...

    def remove(self, name: str) -> None: ...


class KubernetesDriver:
    """Scales TaskManagers through the Kubernetes API. NOT run against a real cluster yet:
    only unit-tested on the requests it builds (see tests/unit/test_autoscale_drivers.py).

    Two modes:

    - ``deployments``: one TaskManager Deployment per profile, named
      ``alertflow-taskmanager-<profile>``, each with its worker-pool sidecar. Replicas are read
      with ``GET .../deployments/<name>/scale`` and set with a merge-patch
      ``{"spec": {"replicas": n}}`` on the same scale subresource. TaskManager names are
      ``<deployment>/<index>`` (index 0 first): Kubernetes, not this driver, picks which pod
      goes when the count drops, so removing ``alertflow-taskmanager-large/1`` removes one
      ``large`` pod.
    - ``flinkdeployment``: a Flink Kubernetes Operator ``FlinkDeployment`` named ``name``
      (standalone mode, reactive), one profile only; its ``spec.taskManager.replicas`` is read
      with GET and set with a merge-patch. Names are ``<name>/<index>``.

    In-cluster defaults: the service-account token (re-read on every call, as bound tokens
    rotate), its CA certificate and namespace, ``KUBERNETES_SERVICE_HOST``/``_PORT``. Each can
    be given instead: ``api_url``, ``token``, ``ca_cert`` (a path, or False to skip TLS
    verification), ``namespace``. ``session`` replaces the HTTP session (tests).
    """

    def __init__(
        self,
        profiles: Sequence[Profile],
        *,
        mode: KubernetesMode | str = KubernetesMode.DEPLOYMENTS,
        name: str = "alertflow",
        namespace: str | None = None,
        api_url: str | None = None,
        token: str | None = None,
        ca_cert: str | bool | None = None,
        service_account: Path = SERVICE_ACCOUNT,
        environ: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        if mode not in tuple(KubernetesMode):
            choices = ", ".join(KubernetesMode)
            raise ValueError(f"mode must be one of {choices}, got {mode!r}")
        mode = KubernetesMode(mode)
        if not profiles:
            raise ValueError("at least one profile")
        if mode is KubernetesMode.FLINKDEPLOYMENT and len(profiles) != 1:
            raise ValueError(
                "the flinkdeployment mode has one TaskManager profile; got "
                + ", ".join(p.name for p in profiles)
            )
        env = os.environ if environ is None else environ
        self.profiles = {p.name: p for p in profiles}
        self.mode = mode
        self.name = name
        self.service_account = service_account
        if namespace is None:
            namespace = self._read(service_account / "namespace").strip()
        self.namespace = namespace
        if api_url is None:
            host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
            if not host or not port:
                raise DriverError(
                    "not in a Kubernetes pod (KUBERNETES_SERVICE_HOST/PORT unset) "
                    "and no api_url given"
                )
            api_url = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        self.api_url = api_url.rstrip("/")
        self._token = token
        self.verify: str | bool = str(service_account / "ca.crt") if ca_cert is None else ca_cert
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    # --- HTTP ---------------------------------------------------------------------------------

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except OSError as error:
            raise DriverError(f"cannot read {path}: {error.strerror}") from None

    def _headers(self, patch: bool = False) -> dict[str, str]:
        token = (
            self._token
            if self._token is not None
            else self._read(self.service_account / "token").strip()
        )
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if patch:
            headers["Content-Type"] = MERGE_PATCH
        return headers

    def _call(self, method: str, path: str, what: str, body: Any = None) -> dict[str, Any]:
        url = self.api_url + path
        kwargs: dict[str, Any] = {
            "headers": self._headers(patch=body is not None),
            "timeout": self.timeout_s,
            "verify": self.verify,
        }
        if body is not None:
            kwargs["json"] = body
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.RequestException as error:
            raise DriverError(
                f"{method} {what} in namespace {self.namespace}: the Kubernetes "
                f"API at {self.api_url} does not answer ({type(error).__name__})"
            ) from None
        if response.status_code >= 400:
            raise DriverError(
                f"{method} {what} in namespace {self.namespace}: Kubernetes "
                f"answered {response.status_code}: {_status_message(response)}"
            )
        try:
            data = response.json()
        except ValueError:
            raise DriverError(f"{method} {what}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise DriverError(f"{method} {what}: the answer is not a JSON object")
        return data

    # --- the two kinds of objects -------------------------------------------------------------

    def _deployment(self, profile: str) -> str:
        return DEPLOYMENT_PREFIX + profile

    def _scale_path(self, deployment: str) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{deployment}/scale"

    def _flink_path(self) -> str:
        return (
            f"/apis/flink.apache.org/v1beta1/namespaces/{self.namespace}/flinkdeployments/"
            f"{self.name}"
        )

    def replicas(self, profile: str) -> int:
        """The replicas the cluster is asked to run for ``profile`` (the desired count)."""
        if self.mode is KubernetesMode.DEPLOYMENTS:
            deployment = self._deployment(profile)
            data = self._call("GET", self._scale_path(deployment), f"deployment {deployment}")
            value = data.get("spec", {}).get("replicas", 0)
        else:
            data = self._call("GET", self._flink_path(), f"flinkdeployment {self.name}")
            value = data.get("spec", {}).get("taskManager", {}).get("replicas", 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DriverError(f"{self._object(profile)}: replicas {value!r} is not a count")
        return value

    def set_replicas(self, profile: str, count: int) -> None:
        if self.mode is KubernetesMode.DEPLOYMENTS:
            deployment = self._deployment(profile)
            self._call(
                "PATCH",
                self._scale_path(deployment),
                f"deployment {deployment}",
                {"spec": {"replicas": count}},
            )
        else:
            self._call(
                "PATCH",
                self._flink_path(),
                f"flinkdeployment {self.name}",
                {"spec": {"taskManager": {"replicas": count}}},
            )

    def _object(self, profile: str) -> str:
        if self.mode is KubernetesMode.DEPLOYMENTS:
            return f"deployment {self._deployment(profile)}"
        return f"flinkdeployment {self.name}"

    def _prefix(self, profile: str) -> str:
        return self._deployment(profile) if self.mode is KubernetesMode.DEPLOYMENTS else self.name

    # --- Driver -------------------------------------------------------------------------------

    def taskmanagers(self) -> list[TaskManager]:
        out: list[TaskManager] = []
        for profile in self.profiles:
            prefix = self._prefix(profile)
            out += [TaskManager(f"{prefix}/{i}", profile) for i in range(self.replicas(profile))]
        return out

    def add(self, profile: Profile) -> TaskManager:
        if profile.name not in self.profiles:
            raise DriverError(
                f"no TaskManager {self._kind()} for profile {profile.name!r} "
                f"(known: {', '.join(self.profiles)})"
            )
        count = self.replicas(profile.name)
        self.set_replicas(profile.name, count + 1)
        return TaskManager(f"{self._prefix(profile.name)}/{count}", profile.name)

    def remove(self, name: str) -> None:
        prefix, _, index = name.rpartition("/")
        profile = next((p for p in self.profiles if self._prefix(p) == prefix), None)
        if profile is None or not index.isdigit():
            raise DriverError(f"{name!r} is not a TaskManager of this driver")
        count = self.replicas(profile)
        if count == 0:
            raise DriverError(f"{self._object(profile)} has no replicas to remove")
        self.set_replicas(profile, count - 1)

    def _kind(self) -> str:
        return "deployment" if self.mode is KubernetesMode.DEPLOYMENTS else "flinkdeployment"


def _status_message(response: requests.Response) -> str:
    """The ``message`` of a Kubernetes Status answer, else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason or ""
    message = data.get("message") if isinstance(data, dict) else None
    if isinstance(message, str):
        return message
    return str(data)[:200]
