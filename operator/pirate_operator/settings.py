"""The one settings object of the operator process, read from the environment once, at start.

The Helm chart relies on these names. Invalid values fail at start with one line naming the
variable (:class:`OperatorConfigError`); nothing falls back silently.

========================== ===================================================================
``OPERATOR_NAMESPACES``    comma-separated namespaces to watch; default ``POD_NAMESPACE`` if
                           set, else every namespace. ``--namespace``/``--all-namespaces`` win.
``POD_NAMESPACE``          the operator's own namespace (downward API).
``OPERATOR_PEERING``       kopf peering object name; unset runs ``--standalone``.
``OPERATOR_PEERING_PRIORITY``  this replica's peering priority; default random in [1, 2^31),
                           so replicas never tie (kopf pauses every operator of a tied top
                           priority); the highest live priority is the one that works.
``OPERATOR_PEERING_LIFETIME``  seconds a peer's keep-alive lasts (default 30): the longest a
                           standby waits after the active replica died without saying goodbye.
``OPERATOR_HTTP_PORT``     port of ``/healthz`` and ``/metrics`` (default 8080; 0 disables).
``OPERATOR_WATCH_TIMEOUT`` server-side watch timeout in seconds (default 300); the client gives
                           up 30 s later, so a silently dead watch is replaced within minutes.
``LOG_LEVEL``              DEBUG, INFO (default), WARNING or ERROR.
========================== ===================================================================
"""

from __future__ import annotations

import random
import re
from typing import Annotated, Final, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DNS_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
#: Random priorities are drawn from a range wide enough that two replicas practically never tie:
#: a tie at the top would pause both for good. kopf's ``--dev`` (666) no longer outranks them; a
#: developer takes over with ``--priority`` above this range.
_MAX_RANDOM_PRIORITY: Final = 2**31 - 1


class OperatorConfigError(ValueError):
    """An environment variable of the operator has an invalid value (one line, naming it)."""


class OperatorSettings(BaseSettings):
    """Environment of ``pirate-workers operator``."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", env_ignore_empty=True, frozen=True)

    OPERATOR_NAMESPACES: str | None = None
    POD_NAMESPACE: str | None = None
    OPERATOR_PEERING: str | None = None
    OPERATOR_PEERING_PRIORITY: Annotated[int, Field(ge=0, le=2**62)] | None = None
    OPERATOR_PEERING_LIFETIME: Annotated[int, Field(ge=5, le=3600)] = 30
    OPERATOR_HTTP_PORT: Annotated[int, Field(ge=0, le=65_535)] = 8080
    OPERATOR_WATCH_TIMEOUT: Annotated[int, Field(ge=10, le=3600)] = 300
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("OPERATOR_NAMESPACES")
    @classmethod
    def _namespace_list(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = [name.strip() for name in value.split(",") if name.strip()]
        bad = [name for name in names if not _DNS_LABEL.match(name)]
        if bad:
            raise ValueError(f"not a namespace name: {bad[0]!r}")
        return ",".join(names) or None

    @field_validator("OPERATOR_PEERING")
    @classmethod
    def _peering_name(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_NAME.match(value):
            raise ValueError("must be a Kubernetes object name (lowercase letters, digits, '-', '.')")
        return value

    @property
    def namespaces(self) -> list[str]:
        """Namespaces to watch from the environment; empty means every namespace."""
        if self.OPERATOR_NAMESPACES:
            return self.OPERATOR_NAMESPACES.split(",")
        if self.POD_NAMESPACE:
            return [self.POD_NAMESPACE]
        return []

    @property
    def peering_priority(self) -> int:
        """The configured priority, else a random one (fixed for this process by the caller)."""
        if self.OPERATOR_PEERING_PRIORITY is not None:
            return self.OPERATOR_PEERING_PRIORITY
        return random.SystemRandom().randint(1, _MAX_RANDOM_PRIORITY)


def load_operator_settings() -> OperatorSettings:
    """Read the environment; raises :class:`OperatorConfigError` naming the first bad variable."""
    try:
        return OperatorSettings()
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = ".".join(str(part) for part in error["loc"]) or "environment"
        message = error["msg"].removeprefix("Value error, ")
        raise OperatorConfigError(f"{name}: {message} (got {error.get('input')!r})") from exc
