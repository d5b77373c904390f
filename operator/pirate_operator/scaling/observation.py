"""Inputs of a decision besides the spec: what Redis says, and what the provider gate allows."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum

from pirate_worker.contracts.provider_state import ProviderCondition, ProviderState


@dataclass(frozen=True)
class RoleObservation:
    """One read of a role's queues in Redis (DESIGN §7.1); every count is of jobs or workers, ≥ 0.

    The caller passes ``None`` instead when Redis could not be read: missing data is never zero.
    """

    #: Jobs waiting in the role's queues (LLEN).
    queued: int = 0
    #: Jobs a worker has taken off a queue but not yet started (between dequeue and start).
    dequeued_not_started: int = 0
    #: Started jobs whose worker heartbeat is live.
    live_in_flight: int = 0
    #: Started jobs whose worker heartbeat expired: not demand, but while any exists one pod is kept
    #: (or started) so RQ's maintenance in a live worker can put them back on their queue.
    stale_in_flight: int = 0
    #: Scheduled jobs (retries, delays) that become due within the polling interval.
    retries_due: int = 0
    #: Workers of the role currently running a job.
    busy_workers: int = 0
    #: All scheduled jobs, due or not (reported only).
    scheduled: int = 0
    #: Mean seconds a job of the role takes, from its workers' rq statistics; None while unknown.
    mean_job_seconds: float | None = None

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is not None and not value >= 0:
                raise ValueError(f"RoleObservation.{spec.name} must be >= 0, got {value}")

    @property
    def demand(self) -> int:
        """Queued + dequeued-not-started + live in-flight + retries due (stale entries excluded)."""
        return self.queued + self.dequeued_not_started + self.live_in_flight + self.retries_due


class Gate(StrEnum):
    """What the provider's auth/quota state allows a role (DESIGN §7.4)."""

    #: The role does not call the provider; its state does not matter.
    UNGATED = "ungated"
    #: The provider answers: full scaling.
    OPEN = "open"
    #: A block's retry time has passed but no call has succeeded since: ``probeReplicas`` at most.
    PROBING = "probing"
    #: Auth failed or quota exceeded, retry time in the future: ``replicasWhenBlocked`` at most.
    BLOCKED = "blocked"


def provider_gate(gated: bool, provider: ProviderState, now: datetime) -> Gate:
    """The gate for a role from the provider state read from Redis.

    A block whose ``retry_at`` has already passed at ``now`` counts as probing even if the state was
    read as blocked a moment earlier; only a success (the state reading ``ok``) opens the gate fully.
    """
    if not gated:
        return Gate.UNGATED
    if provider.blocked:
        expired = provider.retry_at is not None and provider.retry_at <= now
        return Gate.PROBING if expired else Gate.BLOCKED
    if provider.condition == ProviderCondition.PROBING:
        return Gate.PROBING
    return Gate.OPEN
