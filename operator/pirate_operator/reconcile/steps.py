"""The named steps of a pool's polling cycle; :mod:`.loop` runs them in order.

Each step does one thing, reports failures as values (a one-line message) instead of raising,
and leaves deciding what a failure means for the pool to the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pirate_operator.api import (
    EffectiveRole,
    InvalidPoolError,
    PirateWorkerPool,
    PoolStatus,
    RoleStatus,
    effective_roles,
    parse_pool,
)
from pirate_operator.api.results import durability_problems
from pirate_operator.kube import (
    Applied,
    DeploymentView,
    KubeError,
    build_deployment,
    delete_deployment,
    deployment_name,
    ensure_deployment,
    patch_pool_status,
    post_event,
    read_secret_value,
    scale_deployment,
    set_pod_deletion_costs,
)
from pirate_operator.reconcile.context import OperatorContext
from pirate_operator.reconcile.events import PoolEvent
from pirate_operator.reconcile.report import Mode
from pirate_operator.scaling import Decision, decide
from pirate_operator.sources import PoolObservation, RedisUnavailable, read_pool_observation
from pirate_worker.contracts.connection import check_redis_url
from pirate_worker.contracts.provider_state import ProviderCondition, ProviderState

logger = logging.getLogger(__name__)

#: Longest a status that changed only in observed counts or timestamps goes unwritten.
STATUS_REFRESH_SECONDS: Final = 10.0


@dataclass
class LoopMemory:
    """What one pool's loop remembers between cycles (lost on restart by design: status has the rest)."""

    #: The status this loop computed last; the watched copy may lag behind its own write.
    status: PoolStatus | None = None
    #: The last status write failed: write again even if nothing changed.
    dirty: bool = False
    #: The status as last written by this loop, and when.
    written: PoolStatus | None = None
    written_at: datetime | None = None
    written_key: tuple[object, ...] | None = None
    #: Replicas and resourceVersion of this loop's last scale write, per role.
    applied: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: Redis URL resolved from spec.redis (a Secret read is cached until Redis fails).
    redis_url: str | None = None
    redis_source: tuple[str | None, str | None, str | None] | None = None


@dataclass(frozen=True)
class ParsedPool:
    """A pool's spec, parsed, resolved and built once per generation (spec edits bump it)."""

    key: tuple[Any, Any]
    pool: PirateWorkerPool | None
    roles: dict[str, EffectiveRole] = field(default_factory=dict)
    #: The Deployment each role should have (:func:`build_deployment`).
    desired: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    #: How the pool's results would be lost with its pods (:func:`durability_problems`).
    durability: tuple[str, ...] = ()


def parse_spec(body: Mapping[str, Any], cached: ParsedPool | None) -> ParsedPool:
    """Parse and check the pool, resolve its roles and build its Deployments, unless already done.

    Only ``metadata.generation`` (and the uid) decide whether the cached result still holds:
    status writes do not bump it, spec edits always do. The status is not part of the result.
    """
    metadata = body.get("metadata") or {}
    key = (metadata.get("uid"), metadata.get("generation"))
    if cached is not None and cached.key == key and key[1] is not None:
        return cached
    try:
        pool = parse_pool({name: value for name, value in body.items() if name != "status"})
    except InvalidPoolError as exc:
        return ParsedPool(key, None, problems=exc.problems)
    roles = effective_roles(pool.spec)
    desired = {name: build_deployment(pool, role) for name, role in roles.items()}
    return ParsedPool(key, pool, roles, desired, durability=tuple(durability_problems(pool.spec, roles)))


@dataclass(frozen=True)
class DeploymentsResult:
    #: Replicas per role whose Deployment exists.
    current: dict[str, int]
    changes: dict[str, Applied]
    error: str | None = None


async def ensure_deployments(
    ctx: OperatorContext,
    pool: PirateWorkerPool,
    roles: Mapping[str, EffectiveRole],
    desired: Mapping[str, dict[str, Any]],
    live: Mapping[str, DeploymentView],
    memory: LoopMemory,
) -> DeploymentsResult:
    """Create or update each role's Deployment, delete those of removed roles; read the replicas.

    Replicas come from the watched Deployment unless this loop's own scale write is newer than
    what the watch has delivered so far.
    """
    uid = pool.metadata.get("uid")
    current: dict[str, int] = {}
    changes: dict[str, Applied] = {}
    errors: list[str] = []
    for name, role in roles.items():
        view = live.get(name)
        owned = view if view is not None and view.owner_uid == uid else None
        try:
            view, applied = await ensure_deployment(
                ctx.kube, desired[name], owned, initial_replicas=role.min_replicas
            )
        except KubeError as exc:
            errors.append(str(exc))
            continue
        changes[name] = applied
        current[name] = _replicas(view, memory.applied.get(name))
    for name, view in live.items():
        if name not in roles and view.owner_uid == uid:
            try:
                await delete_deployment(ctx.kube, view)
                logger.info("deleted Deployment %s/%s of removed role %s", view.namespace, view.name, name)
            except KubeError as exc:
                errors.append(str(exc))
    return DeploymentsResult(current, changes, "; ".join(errors) or None)


def _replicas(view: DeploymentView, applied: tuple[int, str] | None) -> int:
    if applied is not None and not view.newer_than(applied[1]):
        return applied[0]
    return view.replicas


async def observe_pool(
    ctx: OperatorContext,
    pool: PirateWorkerPool,
    roles: Mapping[str, EffectiveRole],
    memory: LoopMemory,
    now: datetime,
) -> tuple[PoolObservation | None, str | None]:
    """Read the pool's Redis; ``(None, why)`` when the URL or the data cannot be had."""
    namespace, name = str(pool.metadata.get("namespace")), pool.name
    try:
        url = await _redis_url(ctx, pool, memory)
    except KubeError as exc:
        return None, f"Redis URL from spec.redis.urlSecretRef: {exc}"
    except ValueError as exc:
        # redis-py would raise TypeError/ValueError (not a RedisError) on first use and end the loop.
        return None, f"Redis URL is not usable: {exc}"
    client = ctx.redis.get(namespace, name, url)
    async with ctx.redis_slots:
        try:
            observation = await asyncio.to_thread(
                read_pool_observation, client, roles, now, provider=pool.spec.provider.name.value
            )
        except RedisUnavailable as exc:
            # A new connection (and a fresh Secret read) next time: the password may have rotated.
            ctx.redis.discard(namespace, name)
            memory.redis_url = None
            return None, str(exc)
    return observation, None


async def _redis_url(ctx: OperatorContext, pool: PirateWorkerPool, memory: LoopMemory) -> str:
    spec = pool.spec.redis
    ref = spec.url_secret_ref
    source = (spec.url, ref.name if ref else None, ref.key if ref else None)
    if memory.redis_url is not None and memory.redis_source == source:
        return memory.redis_url
    if ref is not None:
        url = await read_secret_value(ctx.kube, str(pool.metadata.get("namespace")), ref.name, ref.key)
        url = url.strip()
    else:
        url = spec.url or ""
    check_redis_url(url)  # the message never contains the URL, which may hold a password
    memory.redis_url, memory.redis_source = url, source
    return url


def decide_roles(
    roles: Mapping[str, EffectiveRole],
    base: PoolStatus,
    observation: PoolObservation | None,
    current: Mapping[str, int],
    mode: Mode,
    now: datetime,
) -> dict[str, Decision | None]:
    """``decide()`` for every role with a Deployment; nothing is decided while paused."""
    provider = observation.provider if observation else ProviderState(condition=ProviderCondition.OK)
    decisions: dict[str, Decision | None] = {}
    for name, role in roles.items():
        if mode == Mode.PAUSED or name not in current:
            decisions[name] = None
            continue
        previous = base.roles.get(name, RoleStatus())
        reading = observation.roles.get(name) if observation else None
        decisions[name] = decide(
            role,
            previous.memory(),
            reading.observation if reading else None,
            provider,
            now,
            current_replicas=current[name],
            budget=observation.budget if observation else None,
        )
    return decisions


async def apply_decisions(
    ctx: OperatorContext,
    pool: PirateWorkerPool,
    decisions: Mapping[str, Decision | None],
    observation: PoolObservation | None,
    memory: LoopMemory,
    mode: Mode,
) -> tuple[dict[str, bool], str | None]:
    """Write the changed replica counts (idle pods marked cheapest to delete before a scale-in).

    Returns which roles were scaled and the errors met; nothing is written unless ``mode`` is
    active.
    """
    namespace = str(pool.metadata.get("namespace"))
    scaled: dict[str, bool] = {}
    errors: list[str] = []
    for name, decision in decisions.items():
        if decision is None or not decision.changed or mode != Mode.ACTIVE:
            continue
        if decision.desired_replicas < decision.current_replicas:
            reading = observation.roles.get(name) if observation else None
            busy = reading.busy_pods if reading else {}
            try:
                await set_pod_deletion_costs(ctx.kube, namespace, pool.name, name, busy)
            except KubeError as exc:
                # The drain floor still holds; only the choice of pod is lost on >= 1.22.
                logger.warning("could not mark pods of %s/%s %s: %s", namespace, pool.name, name, exc)
        try:
            replicas, version = await scale_deployment(
                ctx.kube, namespace, deployment_name(pool.name, name), decision.desired_replicas
            )
        except KubeError as exc:
            errors.append(str(exc))
            scaled[name] = False
            continue
        memory.applied[name] = (replicas, version)
        scaled[name] = True
        logger.info(
            "scaled %s/%s %s %d -> %d: %s",
            namespace,
            pool.name,
            name,
            decision.current_replicas,
            decision.desired_replicas,
            decision.reason,
        )
    return scaled, "; ".join(errors) or None


async def write_status(
    ctx: OperatorContext,
    namespace: str,
    name: str,
    base: PoolStatus,
    new: PoolStatus,
    memory: LoopMemory,
    now: datetime,
    key: tuple[object, ...],
) -> str | None:
    """Patch the status when it changed; returns the error, if any.

    ``key`` is what must be written at once when it changes (:func:`~.report.status_key`: the
    decision, this cycle's recommendations, the memory's substance, the conditions). A status
    that differs in nothing else (observed counts, the reason's numbers, memory timestamps under
    steady demand) is written at most every :data:`STATUS_REFRESH_SECONDS`. The stored memory is
    exact whenever it matters: the cycle in which a recommendation changes writes the loop's
    whole memory, including the last time the previous recommendation was made.
    """
    memory.status = new
    stored = memory.written if memory.written is not None else base
    if new == stored and not memory.dirty:
        return None
    due = memory.written_at is None or (now - memory.written_at).total_seconds() >= STATUS_REFRESH_SECONDS
    if not memory.dirty and not due and key == memory.written_key:
        return None
    patch = new.as_merge_patch()
    removed = set(stored.roles) - set(new.roles)
    if removed:
        patch["status"]["roles"].update(dict.fromkeys(removed))
    try:
        await patch_pool_status(ctx.kube, namespace, name, patch)
    except KubeError as exc:
        memory.dirty = True
        return str(exc)
    memory.dirty = False
    memory.written, memory.written_at, memory.written_key = new, now, key
    return None


async def post_events(
    ctx: OperatorContext, pool_metadata: Mapping[str, object], events: list[PoolEvent], now: datetime
) -> str | None:
    """Post the cycle's Events; a failure is logged and reported, never retried (Events are best effort)."""
    errors = []
    for event in events:
        try:
            await post_event(ctx.kube, pool_metadata, event.kind, event.reason, event.message, now)
        except KubeError as exc:
            errors.append(str(exc))
    return "; ".join(errors) or None
