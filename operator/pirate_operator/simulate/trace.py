"""Demand traces (``examples/traces/*.json``): parsing and checking, no simulation.

A trace names the demand (arrivals per role), how long jobs take (mean and coefficient of
variation per role), the chaining between roles, the provider's blocked windows, optionally its
rate limit (``provider_limit``), and the pool the trace is replayed with. The pool part reads like
``PirateWorkerPool.spec`` (camelCase, ``roles``, optionally ``pollingIntervalSeconds``,
``podStartSeconds``, ``quota``, ``behavior``) and is checked
with the same models and rules as a real pool, so a trace cannot describe a pool the operator
would refuse. Unless the pool sets ``podStartSeconds``, it is the trace's ``pod_start_s`` (rounded
up): the pool is told how long its pods take to start, as its owner would measure and set it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pirate_operator.api import EffectiveRole, PoolSpec, effective_roles, spec_problems, validation_problems
from pirate_operator.api.spec import MAX_POD_START_SECONDS

#: Placeholders for the parts of a pool spec a simulation never uses.
_POOL_PLACEHOLDERS: dict[str, Any] = {
    "image": "simulator",
    "redis": {"url": "redis://simulator:6379/0"},
    "provider": {"name": "rules"},
}


class TraceError(Exception):
    """A trace that cannot be replayed; the message is one line naming the file and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class JobTiming(_Strict):
    """How long one role's jobs take: a mean and a coefficient of variation (std / mean)."""

    service_time_s: float = Field(gt=0)
    cv: float = Field(ge=0)


class Arrival(_Strict):
    """``jobs`` new jobs enqueued on ``role`` at second ``t``."""

    t: float = Field(ge=0)
    role: str
    jobs: int = Field(ge=0)


class BlockedWindow(_Strict):
    """The provider answers ``kind`` to every call started in ``[from, to)``."""

    start: float = Field(alias="from", ge=0)
    end: float = Field(alias="to", gt=0)
    kind: Literal["quota_exceeded", "auth_failed"] = "quota_exceeded"

    def covers(self, t: float) -> bool:
        """Whether a call started at ``t`` is refused."""
        return self.start <= t < self.end


class ProviderLimit(_Strict):
    """The provider's rate limit on the calls of provider-gated roles (one request per call).

    Calls beyond it wait inside the worker that took the job (as the workers' shared budget makes
    them wait) until the provider admits them: at most ``calls_per_minute / 60`` per second, and
    ``burst_calls`` at once after an idle spell. The default burst of 1 spaces calls evenly: both
    providers say a per-minute limit may be enforced over shorter intervals.
    """

    calls_per_minute: float = Field(gt=0)
    burst_calls: int = Field(default=1, ge=1)


class _TraceDocument(_Strict):
    name: str = Field(min_length=1)
    duration_s: float = Field(gt=0)
    pod_start_s: float = Field(ge=0)
    roles: dict[str, JobTiming] = Field(min_length=1)
    chain: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    pool: dict[str, Any]
    arrivals: tuple[Arrival, ...]
    provider_blocked: tuple[BlockedWindow, ...] = ()
    provider_limit: ProviderLimit | None = None


@dataclass(frozen=True)
class Trace:
    """A checked trace: every role it mentions exists in its pool and has a job timing."""

    name: str
    duration_s: float
    pod_start_s: float
    timings: dict[str, JobTiming]
    chain: dict[str, tuple[str, ...]]
    pool: PoolSpec
    roles: dict[str, EffectiveRole]
    arrivals: tuple[Arrival, ...]
    blocked: tuple[BlockedWindow, ...]
    limit: ProviderLimit | None = None

    def blocked_at(self, t: float) -> BlockedWindow | None:
        """The blocked window a call started at ``t`` falls in, if any."""
        return next((window for window in self.blocked if window.covers(t)), None)


def load_trace(path: Path) -> Trace:
    """Read and check a trace file; raises :class:`TraceError` with a one-line reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{path}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    try:
        return parse_trace(raw)
    except TraceError as exc:
        raise TraceError(f"{path}: {exc}") from exc


def parse_trace(raw: object) -> Trace:
    """Check a decoded trace document; raises :class:`TraceError` with a one-line reason."""
    if not isinstance(raw, dict):
        raise TraceError(f"a trace is a JSON object, got {type(raw).__name__}")
    try:
        document = _TraceDocument.model_validate(raw)
    except ValidationError as exc:
        raise TraceError("; ".join(validation_problems(exc))) from exc
    pod_start = min(math.ceil(document.pod_start_s), MAX_POD_START_SECONDS)
    pool = _parse_pool({"podStartSeconds": pod_start, **document.pool})
    try:
        roles = effective_roles(pool)
    except ValueError as exc:
        raise TraceError(f"pool: {exc}") from exc
    problems = _reference_problems(document, set(roles))
    if problems:
        raise TraceError("; ".join(problems))
    return Trace(
        name=document.name,
        duration_s=document.duration_s,
        pod_start_s=document.pod_start_s,
        timings=dict(document.roles),
        chain={role: tuple(targets) for role, targets in document.chain.items()},
        pool=pool,
        roles=roles,
        arrivals=tuple(sorted(document.arrivals, key=lambda arrival: arrival.t)),
        blocked=tuple(sorted(document.provider_blocked, key=lambda window: window.start)),
        limit=document.provider_limit,
    )


def _parse_pool(raw: dict[str, Any]) -> PoolSpec:
    if "roles" not in raw:
        raise TraceError("pool.roles: required")
    try:
        pool = PoolSpec.model_validate({**_POOL_PLACEHOLDERS, **raw})
    except ValidationError as exc:
        raise TraceError("; ".join(f"pool.{problem}" for problem in validation_problems(exc))) from exc
    problems = spec_problems(pool)
    if problems:
        raise TraceError("; ".join(problem.replace("spec.", "pool.", 1) for problem in problems))
    return pool


def _reference_problems(document: _TraceDocument, pool_roles: set[str]) -> list[str]:
    problems = [
        f"roles: pool role {role!r} has no job timing" for role in sorted(pool_roles - set(document.roles))
    ]
    problems += [f"roles.{role}: not a role of the pool" for role in sorted(set(document.roles) - pool_roles)]
    for source, targets in sorted(document.chain.items()):
        problems += [
            f"chain.{source}: {role!r} is not a role of the pool"
            for role in (source, *targets)
            if role not in pool_roles
        ]
    unknown = sorted({arrival.role for arrival in document.arrivals} - pool_roles)
    problems += [f"arrivals: role {role!r} is not a role of the pool" for role in unknown]
    problems += [
        f"provider_blocked[{index}]: from {window.start:g} is not before to {window.end:g}"
        for index, window in enumerate(document.provider_blocked)
        if window.start >= window.end
    ]
    return problems
