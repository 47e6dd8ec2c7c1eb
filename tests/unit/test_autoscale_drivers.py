"""The Kubernetes driver, on the exact requests it builds and on how it reports errors.

No cluster here: a recording session answers each request from a table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from flink_deploy.autoscaler.drivers import Driver, DriverError, KubernetesDriver
from flink_deploy.autoscaler.model import Profile, TaskManager

SMALL = Profile("small", 2, "3072m")
LARGE = Profile("large", 4, "5120m")
API = "https://10.0.0.1:443"
SCALE = API + "/apis/apps/v1/namespaces/alerts/deployments/alertflow-taskmanager-{}/scale"
FLINK = API + "/apis/flink.apache.org/v1beta1/namespaces/alerts/flinkdeployments/broker"
READ = {"Authorization": "Bearer tok-123", "Accept": "application/json"}
PATCH = {**READ, "Content-Type": "application/merge-patch+json"}


def response(status: int, body: Any) -> requests.Response:
    out = requests.Response()
    out.status_code = status
    out._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return out


class Session:
    """Answers from ``answers[(method, url)]`` (a list, consumed in order); records calls."""

    def __init__(self, answers: dict[tuple[str, str], list[requests.Response]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.calls.append((method, url, kwargs))
        queue = self.answers.get((method, url))
        if not queue:
            raise requests.ConnectionError(f"nothing answers {method} {url}")
        return queue.pop(0)


def scale(replicas: int) -> requests.Response:
    return response(200, {"kind": "Scale", "spec": {"replicas": replicas}})


def driver(session: Session, **kwargs: Any) -> KubernetesDriver:
    options = {"namespace": "alerts", "api_url": API, "token": "tok-123", "ca_cert": "/ca.crt"}
    return KubernetesDriver(
        kwargs.pop("profiles", (SMALL, LARGE)), session=session, **{**options, **kwargs}
    )  # type: ignore[arg-type]


def test_is_a_driver() -> None:
    assert isinstance(driver(Session({})), Driver)


def test_deployments_list_add_remove_requests() -> None:
    session = Session(
        {
            ("GET", SCALE.format("small")): [scale(2), scale(2), scale(3)],
            ("GET", SCALE.format("large")): [scale(1), scale(1)],
            ("PATCH", SCALE.format("small")): [scale(3)],
            ("PATCH", SCALE.format("large")): [scale(0)],
        }
    )
    k8s = driver(session)
    assert k8s.taskmanagers() == [
        TaskManager("alertflow-taskmanager-small/0", "small"),
        TaskManager("alertflow-taskmanager-small/1", "small"),
        TaskManager("alertflow-taskmanager-large/0", "large"),
    ]
    assert k8s.add(SMALL) == TaskManager("alertflow-taskmanager-small/2", "small")
    k8s.remove("alertflow-taskmanager-large/0")
    common = {"timeout": 10.0, "verify": "/ca.crt"}
    assert session.calls == [
        ("GET", SCALE.format("small"), {"headers": READ, **common}),
        ("GET", SCALE.format("large"), {"headers": READ, **common}),
        ("GET", SCALE.format("small"), {"headers": READ, **common}),
        (
            "PATCH",
            SCALE.format("small"),
            {"headers": PATCH, **common, "json": {"spec": {"replicas": 3}}},
        ),
        ("GET", SCALE.format("large"), {"headers": READ, **common}),
        (
            "PATCH",
            SCALE.format("large"),
            {"headers": PATCH, **common, "json": {"spec": {"replicas": 0}}},
        ),
    ]


def test_flinkdeployment_requests() -> None:
    body = {"kind": "FlinkDeployment", "spec": {"taskManager": {"replicas": 2}}}
    session = Session(
        {
            ("GET", FLINK): [response(200, body), response(200, body)],
            ("PATCH", FLINK): [response(200, body)],
        }
    )
    k8s = driver(session, mode="flinkdeployment", name="broker", profiles=(SMALL,))
    assert k8s.taskmanagers() == [
        TaskManager("broker/0", "small"),
        TaskManager("broker/1", "small"),
    ]
    k8s.remove("broker/1")
    assert session.calls[-1] == (
        "PATCH",
        FLINK,
        {
            "headers": PATCH,
            "timeout": 10.0,
            "verify": "/ca.crt",
            "json": {"spec": {"taskManager": {"replicas": 1}}},
        },
    )
    with pytest.raises(DriverError, match="no TaskManager flinkdeployment for profile 'large'"):
        k8s.add(LARGE)
    with pytest.raises(ValueError, match="one TaskManager profile"):
        driver(Session({}), mode="flinkdeployment", name="broker")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            response(
                404,
                {
                    "kind": "Status",
                    "message": 'deployments.apps "alertflow-taskmanager-small" not found',
                },
            ),
            "GET deployment alertflow-taskmanager-small in namespace alerts: Kubernetes answered "
            '404: deployments.apps "alertflow-taskmanager-small" not found',
        ),
        (
            response(403, {"kind": "Status", "message": "forbidden: cannot get scale"}),
            "GET deployment alertflow-taskmanager-small in namespace alerts: Kubernetes answered "
            "403: forbidden: cannot get scale",
        ),
        (
            response(503, "upstream unavailable"),
            "GET deployment alertflow-taskmanager-small in namespace alerts: Kubernetes answered "
            "503: upstream unavailable",
        ),
        (
            response(200, "not json"),
            "GET deployment alertflow-taskmanager-small: the answer is not JSON",
        ),
        (
            response(200, {"spec": {"replicas": "two"}}),
            "deployment alertflow-taskmanager-small: replicas 'two' is not a count",
        ),
    ],
)
def test_errors_name_the_object(answer: requests.Response, message: str) -> None:
    session = Session({("GET", SCALE.format("small")): [answer]})
    with pytest.raises(DriverError) as caught:
        driver(session).add(SMALL)
    assert str(caught.value) == message
    assert [c[0] for c in session.calls] == ["GET"]  # nothing was patched


def test_patch_failure_and_unreachable_api() -> None:
    session = Session(
        {
            ("GET", SCALE.format("large")): [scale(1)],
            ("PATCH", SCALE.format("large")): [response(422, {"message": "replicas: Invalid"})],
        }
    )
    with pytest.raises(
        DriverError,
        match="PATCH deployment alertflow-taskmanager-large in "
        "namespace alerts: Kubernetes answered 422",
    ):
        driver(session).remove("alertflow-taskmanager-large/0")
    with pytest.raises(DriverError, match="does not answer \\(ConnectionError\\)"):
        driver(Session({})).taskmanagers()


def test_remove_unknown_or_empty() -> None:
    with pytest.raises(DriverError, match="'tm-1' is not a TaskManager of this driver"):
        driver(Session({})).remove("tm-1")
    session = Session({("GET", SCALE.format("small")): [scale(0)]})
    with pytest.raises(DriverError, match="has no replicas to remove"):
        driver(session).remove("alertflow-taskmanager-small/0")


def test_in_cluster_defaults(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-from-file\n")
    (tmp_path / "namespace").write_text("alerts\n")
    session = Session(
        {("GET", SCALE.replace(API, "https://10.96.0.1:6443").format("small")): [scale(1)]}
    )
    k8s = KubernetesDriver(
        (SMALL,),
        service_account=tmp_path,
        session=session,  # type: ignore
        environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "6443"},
    )
    assert k8s.taskmanagers() == [TaskManager("alertflow-taskmanager-small/0", "small")]
    [(_, _, kwargs)] = session.calls
    assert kwargs["headers"]["Authorization"] == "Bearer tok-from-file"
    assert kwargs["verify"] == str(tmp_path / "ca.crt")
    with pytest.raises(DriverError, match="not in a Kubernetes pod"):
        KubernetesDriver((SMALL,), namespace="x", environ={}, service_account=tmp_path)
    with pytest.raises(DriverError, match="cannot read"):
        KubernetesDriver((SMALL,), service_account=tmp_path / "missing", environ={})
