"""Checks the schema cannot express, and parsing of raw objects into models.

Every problem is one line that names the field (``spec.roles.llm: minReplicas 5 is above
maxReplicas 2``), so the operator can put it in the ``InvalidSpec`` condition and an Event as is.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pirate_operator.api.errors import InvalidPoolError
from pirate_operator.api.pool import PirateWorkerPool
from pirate_operator.api.results import database_url_problems
from pirate_operator.api.roles import GRACE_MARGIN_SECONDS, effective_role
from pirate_operator.api.spec import PoolSpec, ProviderName, RoleSpec
from pirate_operator.api.status import PoolStatus
from pirate_worker.contracts.queues import BUILTIN_ROLES

logger = logging.getLogger(__name__)

_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")
_KEYED_PROVIDERS: Final = frozenset({ProviderName.ANTHROPIC, ProviderName.CLAUDE})
#: Kubernetes label values (the pool name is one) are at most 63 characters.
MAX_POOL_NAME: Final = 63
_MAX_SHOWN_INPUT: Final = 40
#: Pydantic's "Input should be ...", "String should have ..." read as "must be", "must have".
_SHOULD: Final = re.compile(r"^(?:Input|String|Dictionary|Tuple|List|Value) should ")


def parse_pool(body: Mapping[str, Any]) -> PirateWorkerPool:
    """Parse a raw ``PirateWorkerPool`` (as the apiserver or kopf gives it) and check its spec.

    Raises :class:`InvalidPoolError` listing every problem, one line each. An unreadable
    ``status`` is not the user's problem: it is logged and replaced by an empty one (the decision
    memory restarts, which only relaxes stabilization once).
    """
    plain = _plain(body)
    status = plain.pop("status", None) or {}
    try:
        pool = PirateWorkerPool.model_validate(plain)
    except ValidationError as exc:
        raise InvalidPoolError(validation_problems(exc)) from exc
    try:
        pool = pool.model_copy(update={"status": PoolStatus.model_validate(status)})
    except ValidationError as exc:
        logger.warning("ignoring unreadable status of %s: %s", pool.name, "; ".join(validation_problems(exc)))
    problems = pool_problems(pool)
    if problems:
        raise InvalidPoolError(problems)
    return pool


def pool_problems(pool: PirateWorkerPool) -> list[str]:
    """Problems of a parsed pool: its name, then its spec."""
    problems: list[str] = []
    if len(pool.name) > MAX_POOL_NAME:
        problems.append(f"metadata.name: at most {MAX_POOL_NAME} characters, it is used as a label value")
    return problems + spec_problems(pool.spec)


def spec_problems(spec: PoolSpec) -> list[str]:
    """Every semantic problem of ``spec``, one line each; empty when the pool can be run."""
    problems = (
        _redis_problems(spec) + _database_problems(spec) + _provider_problems(spec) + _quota_problems(spec)
    )
    for name in sorted(spec.roles):
        problems += _role_problems(name, spec.roles[name], spec)
    return problems + _shared_queue_problems(spec)


def validation_problems(exc: ValidationError) -> list[str]:
    """Pydantic's errors as one readable line each: ``<field path>: <what is wrong> (got <input>)``.

    An error on a container whose item is itself in error (a tuple "too short" because its only
    item failed) is a consequence, not a problem of its own, and is left out.
    """
    errors = exc.errors(include_url=False)
    locations = [error["loc"] for error in errors]
    return [
        f"{_location(error['loc'])}: {_message(error)}"
        for error in errors
        if not any(
            len(other) > len(error["loc"]) and other[: len(error["loc"])] == error["loc"]
            for other in locations
        )
    ]


def _redis_problems(spec: PoolSpec) -> list[str]:
    redis = spec.redis
    if redis.url is not None and redis.url_secret_ref is not None:
        return ["spec.redis: give either url or urlSecretRef, not both"]
    if redis.url is None and redis.url_secret_ref is None:
        return ["spec.redis: give url or urlSecretRef"]
    if redis.url is not None and not redis.url.startswith(_REDIS_SCHEMES):
        return [f"spec.redis.url: must start with {', '.join(_REDIS_SCHEMES)} (got {_shown(redis.url)})"]
    return []


def _database_problems(spec: PoolSpec) -> list[str]:
    database = spec.database
    if database is None:
        return []
    if database.url is not None and database.url_secret_ref is not None:
        return ["spec.database: give either url or urlSecretRef, not both"]
    if database.url is None and database.url_secret_ref is None:
        return ["spec.database: give url or urlSecretRef"]
    return database_url_problems(database.url) if database.url is not None else []


def _provider_problems(spec: PoolSpec) -> list[str]:
    provider = spec.provider
    if provider.api_key_secret_ref is not None:
        return []
    if provider.name in _KEYED_PROVIDERS:
        return [f"spec.provider.apiKeySecretRef: required for provider {provider.name}"]
    if provider.name == ProviderName.OPENAI and provider.base_url is None:
        return ["spec.provider.apiKeySecretRef: required for provider openai unless baseUrl is set"]
    return []


def _quota_problems(spec: PoolSpec) -> list[str]:
    quota = spec.quota
    if quota.replicas_when_blocked > quota.probe_replicas:
        return [
            f"spec.quota: replicasWhenBlocked {quota.replicas_when_blocked} is above probeReplicas "
            f"{quota.probe_replicas}, so probing would shrink the pool"
        ]
    return []


def _role_problems(name: str, role: RoleSpec, spec: PoolSpec) -> list[str]:
    where = f"spec.roles.{name}"
    problems: list[str] = []
    if not _DNS_LABEL.match(name):
        problems.append(
            f"{where}: role name must be a DNS label (lowercase letters, digits and '-', at most 63), "
            "it names the Deployment"
        )
    builtin = BUILTIN_ROLES.get(name)
    if builtin is None and not role.queues:
        builtins = ", ".join(BUILTIN_ROLES)
        return [*problems, f"{where}.queues: required for custom role {name} (built-in roles: {builtins})"]
    if builtin is not None and role.queues and tuple(role.queues) != builtin:
        problems.append(
            f"{where}.queues: built-in role {name} listens on {', '.join(builtin)}; "
            "give a custom role name to serve other queues"
        )
    problems += [f"{where}.queues: {queue!r} is listed twice" for queue in _duplicates(role.queues or ())]
    problems += _env_problems(where, role)
    effective = effective_role(name, role, spec)
    if effective.min_replicas > effective.max_replicas:
        problems.append(
            f"{where}: minReplicas {effective.min_replicas} is above maxReplicas {effective.max_replicas}"
        )
    least_grace = effective.job_timeout_seconds + GRACE_MARGIN_SECONDS
    if effective.termination_grace_period_seconds < least_grace:
        problems.append(
            f"{where}.terminationGracePeriodSeconds: {effective.termination_grace_period_seconds} is below "
            f"jobTimeoutSeconds {effective.job_timeout_seconds} + {GRACE_MARGIN_SECONDS}, "
            "so scale-in would kill running jobs"
        )
    if effective.calls_per_worker > 1 and not effective.consumes_llm:
        problems.append(
            f"{where}.callsPerWorker: {effective.calls_per_worker} needs a role that consumes the llm queue "
            "(only llm jobs hold provider calls)"
        )
    probe = spec.quota.probe_replicas
    if effective.gated_by_provider and 0 < effective.max_replicas < probe:
        problems.append(
            f"spec.quota.probeReplicas: {probe} is above maxReplicas {effective.max_replicas} "
            f"of provider-gated role {name}"
        )
    return problems


def _env_problems(where: str, role: RoleSpec) -> list[str]:
    problems = [f"{where}.env: {name} is set twice" for name in _duplicates(var.name for var in role.env)]
    for index, var in enumerate(role.env):
        if var.value is not None and var.value_from is not None:
            problems.append(f"{where}.env[{index}] ({var.name}): give value or valueFrom, not both")
    return problems


def _shared_queue_problems(spec: PoolSpec) -> list[str]:
    """Two roles on one queue would both count its demand and each scale for all of it."""
    owners: dict[str, list[str]] = {}
    for name in sorted(spec.roles):
        queues = spec.roles[name].queues or BUILTIN_ROLES.get(name, ())
        for queue in dict.fromkeys(queues):
            owners.setdefault(queue, []).append(name)
    return [
        f"spec.roles: queue {queue!r} is served by roles {' and '.join(names)}; give each queue one role"
        for queue, names in sorted(owners.items())
        if len(names) > 1
    ]


def _duplicates(items: Iterable[str]) -> list[str]:
    return sorted(item for item, count in Counter(items).items() if count > 1)


def _location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "object"


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be an object (got {_shown(error['input'])})"
    message = _SHOULD.sub("must ", error["msg"].replace("Value error, ", ""))
    message = " ".join(message.split())
    value = error.get("input")
    if isinstance(value, Mapping | list | tuple):
        return message
    return f"{message} (got {_shown(value)})"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_INPUT else text[: _MAX_SHOWN_INPUT - 3] + "..."


def _plain(value: Any) -> Any:
    """Deep copy into dicts and lists: kopf hands out read-only mapping views."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
