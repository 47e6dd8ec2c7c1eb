"""Bearer-token authentication: API keys from the configuration, each bound to a user and a role.

Reads may be open (``open_reads``), every change needs a token. Roles: ``user`` (changes only
what it owns) and ``admin`` (changes anything, drives jobs, actions and config).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from flask import current_app, g, request

from control_service.errors import forbidden, unauthorized

ROLES = ("user", "admin")
EXTENSION = "alertflow.auth"


@dataclass(frozen=True, slots=True)
class ApiKey:
    token: str
    user: str
    role: str

    def __repr__(self) -> str:  # never print the secret
        return f"ApiKey(user={self.user!r}, role={self.role!r})"


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """``token:user:role`` items separated by commas (role defaults to ``user``)."""
    keys = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        token, _, rest = part.partition(":")
        user, _, role = rest.partition(":")
        keys.append(ApiKey(token, user, role or "user"))
    return tuple(keys)


def api_key_problems(keys: Iterable[object]) -> list[tuple[str, str]]:
    """What is wrong with configured ``keys``, as (field, message) pairs for a ConfigError."""
    keys = list(keys)
    problems = []
    tokens = [k.token for k in keys if isinstance(k, ApiKey)]
    if len(set(tokens)) != len(tokens):
        problems.append(("api_keys", "two keys share a token"))
    for key in keys:
        if not isinstance(key, ApiKey):
            problems.append(("api_keys", "must be a list of {token, user, role}"))
        elif len(key.token) < 8 or not key.user or key.role not in ROLES:
            problems.append(
                ("api_keys", f"key of {key.user!r}: token >= 8 characters, a user, role in {ROLES}")
            )
    return problems


class Authenticator:
    """Maps a bearer token to its :class:`Principal`; compares in constant time."""

    def __init__(self, keys: Iterable[ApiKey], open_reads: bool = True) -> None:
        self._keys = tuple((key.token.encode(), Principal(key.user, key.role)) for key in keys)
        self.open_reads = open_reads

    def identify(self, header: str | None) -> Principal | None:
        """The principal of an ``Authorization`` header; None if absent; raises 401 if wrong."""
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("the Authorization header must be 'Bearer <token>'")
        given = token.strip().encode()
        found = None
        for secret, principal in self._keys:
            if hmac.compare_digest(secret, given):
                found = principal
        if found is None:
            raise unauthorized("unknown API token")
        return found


def _authenticator() -> Authenticator:
    authenticator: Authenticator = current_app.extensions[EXTENSION]
    return authenticator


def current_principal() -> Principal | None:
    """The caller, if it sent a valid token (cached per request)."""
    if "principal" not in g:
        g.principal = _authenticator().identify(request.headers.get("Authorization"))
    principal: Principal | None = g.principal
    return principal


def require_token() -> Principal:
    principal = current_principal()
    if principal is None:
        raise unauthorized("this call changes state and needs a bearer token")
    return principal


def require_admin() -> Principal:
    principal = require_token()
    if not principal.is_admin:
        raise forbidden("this call needs the admin role", user=principal.user)
    return principal


def require_read() -> Principal | None:
    """Reads are open unless the configuration closes them; a sent token is still checked."""
    principal = current_principal()
    if principal is None and not _authenticator().open_reads:
        raise unauthorized("reads need a bearer token on this service")
    return principal
