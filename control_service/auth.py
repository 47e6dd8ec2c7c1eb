"""Bearer-token authentication: API keys from the configuration, each bound to a user and a role.

Reads may be open (``open_reads``), every change needs a token. :data:`ApiKeys` is the keys'
form in every service's settings. Roles: ``user`` (changes only
what it owns) and ``admin`` (changes anything, drives jobs, actions and config).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from flask import current_app, g, request
from pydantic import AfterValidator, BeforeValidator, PlainSerializer
from pydantic_core import PydanticCustomError

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


def _api_keys_from(value: Any) -> Any:
    """The environment's ``token:user:role,...`` or a file's list of ``{token, user, role}``."""
    if isinstance(value, str):
        return parse_api_keys(value)
    if not isinstance(value, list | tuple):
        raise PydanticCustomError("api_keys", "must be a list of {token, user, role}")
    keys = []
    for index, item in enumerate(value):
        if isinstance(item, ApiKey):
            keys.append(item)
        elif (
            isinstance(item, dict)
            and not set(item) - {"token", "user", "role"}
            and all(isinstance(item.get(k), str) for k in ("token", "user"))
            and isinstance(item.get("role", "user"), str)
        ):
            keys.append(ApiKey(item["token"], item["user"], item.get("role", "user")))
        else:
            raise PydanticCustomError(
                "api_key",
                "item {index}: must be {shape}",
                {"index": index, "shape": "{token: str, user: str, role: user|admin}"},
            )
    return tuple(keys)


def _checked(keys: tuple[ApiKey, ...]) -> tuple[ApiKey, ...]:
    problems = []
    tokens = [k.token for k in keys]
    if len(set(tokens)) != len(tokens):
        problems.append("two keys share a token")
    problems += [
        f"key of {key.user!r}: token >= 8 characters, a user, role in {ROLES}"
        for key in keys
        if len(key.token) < 8 or not key.user or key.role not in ROLES
    ]
    if problems:
        raise PydanticCustomError("api_keys", "{problems}", {"problems": "; ".join(problems)})
    return keys


#: The API keys of a service's settings: ``token:user:role`` items separated by commas in the
#: environment (role defaults to ``user``), a list of ``{token, user, role}`` in a file; tokens
#: of 8 characters or more, none shared. Their JSON form leaves the tokens out.
ApiKeys = Annotated[
    tuple[ApiKey, ...],
    BeforeValidator(_api_keys_from),
    AfterValidator(_checked),
    # In JSON (GET /api/v1/config) a key shows its user and role, never its token.
    PlainSerializer(
        lambda keys: [{"user": k.user, "role": k.role} for k in keys], when_used="json"
    ),
]


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
