"""One client for the common control API of any alertflow service (the control service, the
autoscaler, the replay service), plus the control service's filters, jobs and components.

Every error answer becomes :class:`ControlError` carrying the JSON error shape.
"""

from __future__ import annotations

from typing import Any

import requests


class ControlError(Exception):
    def __init__(
        self, status: int, error: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.details = details or {}


class ControlClient:
    """Speaks to ``base_url`` (e.g. ``http://127.0.0.1:5000``) with an optional bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout_s: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *, expect_json: bool = True, **kwargs: Any) -> Any:
        try:
            response = self.session.request(
                method, self.base_url + path, timeout=self.timeout_s, **kwargs
            )
        except requests.RequestException as error:
            raise ControlError(
                0, "unreachable", f"{self.base_url} does not answer: {type(error).__name__}"
            ) from None
        if response.status_code >= 400:
            try:
                body = response.json()
                raise ControlError(
                    response.status_code, body["error"], body["message"], body.get("details")
                )
            except (ValueError, KeyError, TypeError):
                raise ControlError(
                    response.status_code, "http_error", response.text[:200]
                ) from None
        return response.json() if expect_json else response.text

    def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """``request`` on a route that answers a JSON object."""
        body: dict[str, Any] = self.request(method, path, **kwargs)
        return body

    # --- the common control API ------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._object("GET", "/health")

    def ready(self) -> bool:
        try:
            return bool(self.request("GET", "/ready")["ready"])
        except ControlError as error:
            if error.status == 503:
                return False
            raise

    def status(self) -> dict[str, Any]:
        return self._object("GET", "/api/v1/status")

    def get_config(self) -> dict[str, Any]:
        return self._object("GET", "/api/v1/config")

    def put_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        return self._object("PUT", "/api/v1/config", json=changes)

    def action(self, name: str) -> dict[str, Any]:
        return self._object("POST", f"/api/v1/actions/{name}")

    def metrics(self) -> str:
        text: str = self.request("GET", "/metrics", expect_json=False)
        return text

    def openapi(self) -> dict[str, Any]:
        return self._object("GET", "/api/v1/openapi.json")

    # --- filters (control service) ---------------------------------------------------------

    def list_filters(self, owner: str | None = None, active: bool | None = None) -> dict[str, Any]:
        params = {
            k: v
            for k, v in {
                "owner": owner,
                "active": None if active is None else str(active).lower(),
            }.items()
            if v is not None
        }
        return self._object("GET", "/api/v1/filters", params=params)

    def get_filter(self, name: str, yaml_text: bool = False) -> Any:
        if yaml_text:
            return self.request(
                "GET",
                f"/api/v1/filters/{name}",
                expect_json=False,
                headers={"Accept": "application/yaml"},
            )
        return self.request("GET", f"/api/v1/filters/{name}")

    def apply_filters(self, yaml_text: str) -> dict[str, Any]:
        return self._object(
            "POST",
            "/api/v1/filters",
            data=yaml_text.encode(),
            headers={"Content-Type": "application/yaml"},
        )

    def put_filter(self, name: str, yaml_text: str) -> dict[str, Any]:
        return self._object(
            "PUT",
            f"/api/v1/filters/{name}",
            data=yaml_text.encode(),
            headers={"Content-Type": "application/yaml"},
        )

    def delete_filter(self, name: str) -> dict[str, Any]:
        return self._object("DELETE", f"/api/v1/filters/{name}")

    def set_active(self, name: str, active: bool) -> dict[str, Any]:
        return self._object(
            "POST", f"/api/v1/filters/{name}/{'activate' if active else 'deactivate'}"
        )

    def test_filter(self, name: str) -> dict[str, Any]:
        return self._object("POST", f"/api/v1/filters/{name}/test")

    # --- jobs and components ---------------------------------------------------------------

    def jobs(self) -> dict[str, Any]:
        return self._object("GET", "/api/v1/jobs")

    def submit_job(self, args: list[str] | None = None) -> dict[str, Any]:
        return self._object("POST", "/api/v1/jobs", json={"args": args or []})

    def stop_job(self, job_id: str, savepoint: bool = True) -> dict[str, Any]:
        return self._object(
            "DELETE", f"/api/v1/jobs/{job_id}", params={"savepoint": str(savepoint).lower()}
        )

    def upgrade_job(self, job_id: str, args: list[str] | None = None) -> dict[str, Any]:
        return self._object("POST", f"/api/v1/jobs/{job_id}/upgrade", json={"args": args or []})

    def components(self) -> dict[str, Any]:
        return self._object("GET", "/api/v1/components")
