"""How every alertflow process reads its settings: one pattern, written once.

Each component (the local stack, the control service, the replay service, the autoscaler) has
one immutable :class:`Settings` subclass, a pydantic-settings ``BaseSettings`` with its own
environment prefix (``ALERTFLOW_CONTROL_``, ...). :meth:`Settings.load` builds it at start from,
later wins: the defaults, a file's mapping (YAML), the prefixed environment variables, then the
caller's overrides (command-line options). Calling the class itself takes only its arguments and
the defaults (tests do that), never the environment.

Every problem is reported at once, as :class:`ConfigError`: ``(field, message)`` pairs, the
message naming the environment variable or the file the bad value came from. The field types
shared by several components are here too: :data:`Port`, :data:`NonEmpty` and the splitting of
list-valued variables (:func:`split_on`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import AfterValidator, AliasChoices, BeforeValidator, ValidationError
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources import DefaultSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

REPO_ROOT = Path(__file__).resolve().parents[1]


class ConfigError(ValueError):
    """The configuration is invalid; ``problems`` lists every ``(field, message)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {message}" for name, message in problems))


def _port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise PydanticCustomError("port", "must be 0-65535")
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("non_empty", "must be a non-empty string")
    return value


#: A TCP port (0: any free one).
Port = Annotated[int, AfterValidator(_port)]
#: A string with something in it (host names, topics, URLs).
NonEmpty = Annotated[str, AfterValidator(_non_empty)]


def split_on(separator: str | None) -> BeforeValidator:
    """A list-valued field's environment form: items separated by ``separator`` (None: any
    whitespace); empty items are dropped. Lists (from a file, or overrides) pass as they are."""

    def split(value: Any) -> Any:
        return (
            [item for item in value.split(separator) if item] if isinstance(value, str) else value
        )

    return BeforeValidator(split)


class _Environment(EnvSettingsSource):
    """The environment source of pydantic-settings, over a given mapping (``os.environ`` by
    default) so that tests can pass their own."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class _Values(PydanticBaseSettingsSource):
    """A file's mapping, already read."""

    def __init__(self, settings_cls: type[BaseSettings], values: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = dict(values)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._values


class Settings(BaseSettings):
    """The base of every component's settings (see the module docstring)."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        # Lists and key lists come from the environment in their own forms (split_on, API keys).
        enable_decoding=False,
    )

    def __init__(self, _origin: Callable[[str], str] | None = None, **values: Any) -> None:
        """Raises ConfigError listing every problem (``_origin(field)``: where its value came
        from, for the messages)."""
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigError(
                problems(error, _field_names(type(self)), _origin or (lambda _name: ""))
            ) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the class called directly: its arguments and defaults only

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        file_values: Mapping[str, Any] | None = None,
        file_label: str = "",
        **overrides: Any,
    ) -> Self:
        """Defaults < ``file_values`` < the environment (``os.environ`` if None) < overrides,
        an override of None (a command-line option not given) left out.

        Raises ConfigError listing every problem, each naming where its value came from."""
        overrides = {name: value for name, value in overrides.items() if value is not None}

        env = os.environ if env is None else env
        environment = _Environment(cls, env)
        names = _field_names(cls)
        from_env = {names.get(key, key) for key in environment()}
        given = {name.upper() for name in env}
        file_values = dict(file_values or {})
        sources = (
            InitSettingsSource(cls, overrides),
            environment,
            _Values(cls, file_values),
            DefaultSettingsSource(cls),
        )

        def origin(name: str) -> str:
            if name in from_env:  # the variable, not its value: it may be a secret
                used = [v for v in cls.env_names(name) if v in given] or cls.env_names(name)
                return f"{used[0]}: "
            return f"{file_label or 'the configuration file'}: " if name in file_values else ""

        return cls(origin, _build_sources=(sources, overrides))

    @classmethod
    def options(cls, args: argparse.Namespace, **renamed: str) -> dict[str, Any]:
        """The overrides a command line gives: each option named as a field (``--host``:
        ``host``), and each ``field=option`` of ``renamed`` (``bootstrap_servers="bootstrap"``)."""
        given = vars(args)
        names = {name: name for name in cls.model_fields if name in given} | renamed
        return {field: given[option] for field, option in names.items()}

    @classmethod
    def from_options(cls, args: argparse.Namespace, **renamed: str) -> Self:
        """:meth:`load` with the command line's :meth:`options` over the environment."""
        return cls.load(**cls.options(args, **renamed))

    def public_view(self) -> dict[str, Any]:
        """The settings as JSON (``GET /api/v1/config``); secrets leave themselves out (see
        ``control_service.auth.ApiKeys``)."""
        return self.model_dump(mode="json")

    @classmethod
    def env_names(cls, field_name: str) -> list[str]:
        """The environment variables of ``field_name``, in the order they are looked up: its
        aliases, else the prefix and its name."""
        aliases = _aliases(cls.model_fields[field_name].validation_alias)
        return aliases or [(cls.model_config.get("env_prefix", "") + field_name).upper()]


def _aliases(alias: object) -> list[str]:
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return []


def _field_names(cls: type[Settings]) -> dict[str, str]:
    """Each field's name, keyed by the name and by its alias (lower case, as the environment
    source gives them)."""
    names = {}
    for name, info in cls.model_fields.items():
        names[name] = name
        for alias in _aliases(info.validation_alias):
            names[alias] = names[alias.lower()] = name
    return names


_MESSAGES = {"extra_forbidden": "unknown field", "missing": "required"}


def problems(
    error: ValidationError, names: Mapping[str, str], origin: Callable[[str], str]
) -> list[tuple[str, str]]:
    """Every problem of ``error`` as ``(field, message)``: the field (by its name, ``names``
    mapping aliases to names; ``api_keys[1]`` for an item), the message prefixed with where the
    value came from (``origin(field)``)."""
    found = []
    for item in error.errors(include_url=False):
        loc = [str(part) for part in item["loc"]]
        name = names.get(loc[0], loc[0]) if loc else "config"
        field = name + "".join(f"[{part}]" for part in loc[1:] if part.isdigit())
        if item["type"] == "value_error":  # a validator's ValueError: its own words
            message = str(item.get("ctx", {}).get("error", item["msg"]))
        else:
            message = _MESSAGES.get(item["type"], item["msg"])
        found.append(
            (field, message if item["type"] == "extra_forbidden" else origin(name) + message)
        )
    return found
