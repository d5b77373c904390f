"""One pool's level-based polling cycle: observe, decide, apply, report. Never raises.

Order of a cycle (DESIGN §7):

1. parse the pool; a bad spec sets ``InvalidSpec`` (one Event per distinct problem set) and stops;
2. ensure each role's Deployment (template only, never replicas) and read its replicas;
3. read the pool's Redis once (``None`` when unreachable: decisions hold, ``Fallback``);
4. ``decide()`` per role, with the memory kept in status (nothing while paused);
5. write changed replicas (not in a dry run), idle pods marked cheapest to delete first;
6. write status only if it changed, post one Event per replica change and per transition;
7. update the metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from pirate_operator.api import (
    ConditionType,
    EffectiveRole,
    PoolStatus,
    RoleStatus,
)
from pirate_operator.kube import DeploymentView
from pirate_operator.reconcile import conditions as cond
from pirate_operator.reconcile.context import OperatorContext
from pirate_operator.reconcile.events import condition_events, deployment_events, scale_events
from pirate_operator.reconcile.report import (
    Mode,
    RoleOutcome,
    decision_category,
    outcome_for,
    role_status,
    status_key,
    total_queued,
)
from pirate_operator.reconcile.steps import (
    LoopMemory,
    ParsedPool,
    apply_decisions,
    decide_roles,
    ensure_deployments,
    observe_pool,
    parse_spec,
    post_events,
    write_status,
)
from pirate_operator.sources import PoolObservation

logger = logging.getLogger(__name__)

#: Seconds between cycles when the pool's own interval cannot be read.
DEFAULT_INTERVAL: Final = 2.0


class PoolLoop:
    """The polling loop state of one pool; the handler calls :meth:`cycle` every interval."""

    def __init__(self, ctx: OperatorContext, namespace: str, name: str) -> None:
        self.ctx = ctx
        self.namespace = namespace
        self.name = name
        self.memory = LoopMemory()
        self._parsed: ParsedPool | None = None
        #: The last error of each step, so a persisting failure is logged once, not every cycle.
        self._errors: dict[str, str | None] = {}
        self._roles: set[str] = set()
        ctx.metrics.pools.inc()

    async def cycle(self, body: Mapping[str, Any], live: Mapping[str, DeploymentView]) -> float:
        """Run one cycle on the latest ``body``; returns the seconds until the next one."""
        started = time.perf_counter()
        try:
            return await self._cycle(body, live, self.ctx.clock())
        except Exception:  # a bug must not stop this pool's scaling, nor any other pool's
            logger.exception("cycle of %s/%s failed", self.namespace, self.name)
            self.ctx.metrics.cycle_errors.labels(self.namespace, self.name, "unexpected").inc()
            return _interval(body)
        finally:
            self.ctx.metrics.cycle_seconds.observe(time.perf_counter() - started)

    def close(self) -> None:
        """The pool is gone or no longer ours: close its Redis client, drop its metrics."""
        self.ctx.redis.discard(self.namespace, self.name)
        self.ctx.metrics.forget_pool(self.namespace, self.name, self._roles)
        self.ctx.metrics.pools.dec()

    async def _cycle(
        self, body: Mapping[str, Any], live: Mapping[str, DeploymentView], now: datetime
    ) -> float:
        base = self.memory.status if self.memory.status is not None else _stored_status(body)
        self._parsed = parsed = parse_spec(body, self._parsed)
        pool, roles = parsed.pool, parsed.roles
        if pool is None:
            await self._report_invalid(body, base, parsed.problems, now)
            return _interval(body)
        self._roles.update(roles)
        mode = Mode.PAUSED if pool.spec.paused else Mode.DRY_RUN if pool.spec.dry_run else Mode.ACTIVE
        ctx, memory = self.ctx, self.memory

        deployments = await ensure_deployments(ctx, pool, roles, parsed.desired, live, memory)
        observation, redis_error = await observe_pool(ctx, pool, roles, memory, now)
        decisions = decide_roles(roles, base, observation, deployments.current, mode, now)
        scaled, scale_error = await apply_decisions(ctx, pool, decisions, observation, memory, mode)
        outcomes = {
            name: outcome_for(
                name,
                decisions[name],
                base.roles.get(name, RoleStatus()),
                deployments.current.get(name, 0),
                mode,
                scaled.get(name, False),
            )
            for name in roles
        }
        kube_error = "; ".join(e for e in (deployments.error, scale_error) if e) or None
        new = self._status(parsed, base, outcomes, observation, redis_error, kube_error, mode, now)
        key = status_key(new, outcomes)
        status_error = await write_status(ctx, self.namespace, self.name, base, new, memory, now, key)
        events = (
            deployment_events(deployments.changes)
            + scale_events(outcomes.values(), base.roles, mode)
            + condition_events(base.conditions, new.conditions)
        )
        event_error = await post_events(ctx, pool.metadata, events, now)
        self._record(roles, outcomes, observation, redis_error, mode)
        self._report_errors(
            {
                "deployments": deployments.error,
                "redis": redis_error,
                "scale": scale_error,
                "status": status_error,
                "events": event_error,
            }
        )
        return float(pool.spec.polling_interval_seconds)

    def _report_errors(self, errors: Mapping[str, str | None]) -> None:
        """Count every failed step; log a failure when it starts or changes, and its end."""
        for step, error in errors.items():
            before = self._errors.get(step)
            if error is not None:
                self.ctx.metrics.cycle_errors.labels(self.namespace, self.name, step).inc()
                level = logging.DEBUG if error == before else logging.WARNING
                logger.log(level, "%s/%s %s: %s", self.namespace, self.name, step, error)
            elif before is not None:
                logger.info("%s/%s %s: working again", self.namespace, self.name, step)
            self._errors[step] = error

    def _status(
        self,
        parsed: ParsedPool,
        base: PoolStatus,
        outcomes: Mapping[str, RoleOutcome],
        observation: PoolObservation | None,
        redis_error: str | None,
        kube_error: str | None,
        mode: Mode,
        now: datetime,
    ) -> PoolStatus:
        pool = parsed.pool
        assert pool is not None, "only a parsed pool gets a status from its cycle"
        roles = {
            name: role_status(
                outcome,
                observation.roles.get(name) if observation else None,
                base.roles.get(name, RoleStatus()),
            )
            for name, outcome in outcomes.items()
        }
        wanted = {
            ConditionType.REDIS_REACHABLE: cond.redis_reachable(redis_error),
            ConditionType.FALLBACK: cond.fallback(redis_error),
            ConditionType.PAUSED: cond.paused(pool.spec.paused, pool.spec.dry_run),
            ConditionType.INVALID_SPEC: cond.valid_spec(),
            ConditionType.RESULTS_NOT_DURABLE: cond.results_not_durable(
                parsed.durability, pool.spec.ephemeral_results
            ),
        }
        if observation is not None:
            wanted[ConditionType.PROVIDER_BLOCKED] = cond.provider_blocked(observation.provider)
            decided = {
                name: outcome.decision
                for name, outcome in outcomes.items()
                if outcome.decision is not None and not outcome.decision.fallback
            }
            if decided:
                wanted[ConditionType.PROVIDER_LIMITED] = cond.provider_limited(decided)
        if kube_error is not None:
            wanted[ConditionType.READY] = cond.ready("KubernetesError", kube_error)
        elif redis_error is not None:
            wanted[ConditionType.READY] = cond.ready("RedisUnreachable", redis_error)
        else:
            wanted[ConditionType.READY] = cond.ready(None)
        return PoolStatus(
            observed_generation=pool.generation,
            provider=cond.provider_status(observation.provider) if observation else base.provider,
            roles=roles,
            queued=total_queued(roles),
            conditions=cond.merge_conditions(base.conditions, wanted, now),
        )

    async def _report_invalid(
        self, body: Mapping[str, Any], base: PoolStatus, problems: tuple[str, ...], now: datetime
    ) -> None:
        generation = (body.get("metadata") or {}).get("generation")
        wanted = {
            ConditionType.INVALID_SPEC: cond.invalid_spec(problems),
            ConditionType.READY: cond.ready("InvalidSpec", "; ".join(problems)),
        }
        new = base.model_copy(
            update={
                "observed_generation": generation
                if isinstance(generation, int)
                else base.observed_generation,
                "conditions": cond.merge_conditions(base.conditions, wanted, now),
            }
        )
        if new == base and not self.memory.dirty:
            self.memory.status = new
            return
        logger.warning("%s/%s is invalid: %s", self.namespace, self.name, "; ".join(problems))
        metadata = {**_plain(body.get("metadata") or {}), "namespace": self.namespace}
        error = await write_status(
            self.ctx, self.namespace, self.name, base, new, self.memory, now, status_key(new)
        )
        if error is not None:
            logger.warning("%s/%s status: %s", self.namespace, self.name, error)
        await post_events(self.ctx, metadata, condition_events(base.conditions, new.conditions), now)

    def _record(
        self,
        roles: Mapping[str, EffectiveRole],
        outcomes: Mapping[str, RoleOutcome],
        observation: PoolObservation | None,
        redis_error: str | None,
        mode: Mode,
    ) -> None:
        metrics, ns, name = self.ctx.metrics, self.namespace, self.name
        metrics.redis_up.labels(ns, name).set(0 if redis_error else 1)
        if observation is not None:
            metrics.set_provider_state(ns, name, observation.provider.condition)
        for role in roles:
            outcome = outcomes[role]
            metrics.replicas.labels(ns, name, role).set(outcome.replicas)
            metrics.desired_replicas.labels(ns, name, role).set(outcome.desired)
            reading = observation.roles.get(role) if observation else None
            if reading is not None:
                metrics.demand.labels(ns, name, role).set(reading.observation.demand)
                metrics.queued.labels(ns, name, role).set(reading.observation.queued)
                metrics.busy_workers.labels(ns, name, role).set(reading.observation.busy_workers)
                metrics.set_mean_job_seconds(ns, name, role, reading.observation.mean_job_seconds)
            if outcome.decision is not None and not outcome.decision.fallback:
                cap = outcome.decision.provider_cap
                metrics.set_provider_cap(ns, name, role, cap.replicas if cap is not None else None)
            if outcome.decision is not None or mode == Mode.PAUSED:
                category = decision_category(outcome.decision, mode)
                metrics.decisions.labels(ns, name, role, category).inc()
            if outcome.scaled and outcome.decision is not None:
                direction = (
                    "up" if outcome.decision.desired_replicas > outcome.decision.current_replicas else "down"
                )
                metrics.scale_events.labels(ns, name, role, direction).inc()


def _stored_status(body: Mapping[str, Any]) -> PoolStatus:
    raw = body.get("status") or {}
    try:
        return PoolStatus.model_validate(_plain(raw))
    except ValidationError:
        return PoolStatus()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _interval(body: Mapping[str, Any]) -> float:
    value = (body.get("spec") or {}).get("pollingIntervalSeconds")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return float(value)
    return DEFAULT_INTERVAL
