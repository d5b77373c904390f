"""Prometheus metrics of the operator, on their own registry (served by :mod:`.http_server`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pirate_worker.contracts.provider_state import ProviderCondition

#: Values of the ``category`` label of ``pirate_operator_decisions_total``.
CATEGORIES: Final = (
    "demand",
    "start_up_horizon",
    "tolerance",
    "stabilization",
    "rate_limit",
    "bounds",
    "provider_gate",
    "provider_limit",
    "drain_floor",
    "fallback",
    "paused",
)
DIRECTIONS: Final = ("up", "down")
#: Values of the ``step`` label of ``pirate_operator_cycle_errors_total``.
STEPS: Final = ("deployments", "redis", "scale", "status", "events", "unexpected")
_ROLE: Final = ("namespace", "pool", "role")
_POOL: Final = ("namespace", "pool")


class OperatorMetrics:
    """Every series the operator exports; label sets of a deleted pool are dropped by :meth:`forget_pool`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.replicas = Gauge(
            "pirate_operator_replicas", "Replicas of the role's Deployment.", _ROLE, registry=r
        )
        self.desired_replicas = Gauge(
            "pirate_operator_desired_replicas", "Replicas the last decision asked for.", _ROLE, registry=r
        )
        self.demand = Gauge(
            "pirate_operator_demand_jobs",
            "Demand counted by the last decision: queued + dequeued + live in flight + retries due.",
            _ROLE,
            registry=r,
        )
        self.queued = Gauge(
            "pirate_operator_queued_jobs", "Jobs waiting in the role's queues.", _ROLE, registry=r
        )
        self.busy_workers = Gauge(
            "pirate_operator_busy_workers", "Workers of the role running a job.", _ROLE, registry=r
        )
        self.mean_job_seconds = Gauge(
            "pirate_operator_mean_job_seconds",
            "Mean run time of the role's jobs from its live workers' rq statistics (absent while unknown).",
            _ROLE,
            registry=r,
        )
        self.provider_cap_replicas = Gauge(
            "pirate_operator_provider_cap_replicas",
            "Most replicas the provider's rate limit keeps busy (gated roles with a fresh budget; absent "
            "otherwise).",
            _ROLE,
            registry=r,
        )
        self.decisions = Counter(
            "pirate_operator_decisions_total",
            "Scaling decisions by what determined them: " + ", ".join(CATEGORIES) + ".",
            (*_ROLE, "category"),
            registry=r,
        )
        self.scale_events = Counter(
            "pirate_operator_scale_events_total",
            "Replica changes applied.",
            (*_ROLE, "direction"),
            registry=r,
        )
        self.provider_state = Gauge(
            "pirate_operator_provider_state",
            "1 for the provider's current auth/quota state, 0 for the others.",
            (*_POOL, "state"),
            registry=r,
        )
        self.redis_up = Gauge(
            "pirate_operator_redis_up", "1 when the pool's Redis answered the last read.", _POOL, registry=r
        )
        self.cycle_seconds = Histogram(
            "pirate_operator_cycle_seconds",
            "Duration of one pool's polling cycle.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.cycle_errors = Counter(
            "pirate_operator_cycle_errors_total",
            "Failed steps of polling cycles.",
            (*_POOL, "step"),
            registry=r,
        )
        self.pools = Gauge("pirate_operator_pools", "Pools this operator is scaling now.", registry=r)

    def set_provider_state(self, namespace: str, pool: str, state: ProviderCondition) -> None:
        for candidate in ProviderCondition:
            self.provider_state.labels(namespace, pool, candidate.value).set(1 if candidate == state else 0)

    def set_mean_job_seconds(self, namespace: str, pool: str, role: str, seconds: float | None) -> None:
        """Export the role's mean job time; no series while it is unknown (no job run yet)."""
        if seconds is None:
            _remove(self.mean_job_seconds, namespace, pool, role)
        else:
            self.mean_job_seconds.labels(namespace, pool, role).set(seconds)

    def set_provider_cap(self, namespace: str, pool: str, role: str, replicas: int | None) -> None:
        """Export the role's provider cap; no series while none applies."""
        if replicas is None:
            _remove(self.provider_cap_replicas, namespace, pool, role)
        else:
            self.provider_cap_replicas.labels(namespace, pool, role).set(replicas)

    def forget_pool(self, namespace: str, pool: str, roles: Iterable[str]) -> None:
        """Drop every series of a pool that is gone (or no longer scaled by this replica)."""
        for role in roles:
            for gauge in (
                self.replicas,
                self.desired_replicas,
                self.demand,
                self.queued,
                self.busy_workers,
                self.mean_job_seconds,
                self.provider_cap_replicas,
            ):
                _remove(gauge, namespace, pool, role)
            for category in CATEGORIES:
                _remove(self.decisions, namespace, pool, role, category)
            for direction in DIRECTIONS:
                _remove(self.scale_events, namespace, pool, role, direction)
        for candidate in ProviderCondition:
            _remove(self.provider_state, namespace, pool, candidate.value)
        _remove(self.redis_up, namespace, pool)
        for step in STEPS:
            _remove(self.cycle_errors, namespace, pool, step)


def _remove(family: Counter | Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        family.remove(*labels)
