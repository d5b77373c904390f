"""What a cycle reports (pure): role status, the pool status, decision categories, Event texts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pirate_operator.api import PoolStatus, RoleMemory, RoleStatus
from pirate_operator.scaling import Decision, RoleObservation
from pirate_operator.sources import RoleReading


class Mode(StrEnum):
    """How a cycle treats the decision."""

    #: Decide and apply.
    ACTIVE = "active"
    #: Decide and report, never scale (spec.dryRun).
    DRY_RUN = "dry_run"
    #: No decision at all (spec.paused): replicas stay where they are.
    PAUSED = "paused"


@dataclass(frozen=True)
class RoleOutcome:
    """One role after a cycle: what was decided, what the Deployment has now, what to remember."""

    role: str
    #: Replicas of the Deployment after this cycle (changed only if a scale write succeeded).
    replicas: int
    desired: int
    reason: str
    memory: RoleMemory
    decision: Decision | None
    #: A replica change was written this cycle.
    scaled: bool = False


def outcome_for(
    role: str,
    decision: Decision | None,
    previous: RoleStatus,
    current: int,
    mode: Mode,
    applied: bool,
) -> RoleOutcome:
    """Settle one role's replicas, reason and memory from its decision and what was applied.

    ``applied`` says whether a changed decision's replicas were written. The memory a decision
    returns counts the change it made, so it is kept only when the change happened; a dry run
    keeps the recommendations (they reflect demand) but not the scale events.
    """
    old = previous.memory()
    if decision is None or mode == Mode.PAUSED:
        reason = f"paused: replicas left at {current}"
        return RoleOutcome(role, current, current, reason, old, decision)
    if mode == Mode.DRY_RUN:
        memory = decision.memory.model_copy(
            update={"scale_events": old.scale_events, "last_scale_time": old.last_scale_time}
        )
        reason = f"dry run: would set {decision.desired_replicas}: {decision.reason}"
        return RoleOutcome(role, current, decision.desired_replicas, reason, memory, decision)
    if decision.changed and not applied:
        return RoleOutcome(role, current, decision.desired_replicas, decision.reason, old, decision)
    replicas = decision.desired_replicas if decision.changed else current
    return RoleOutcome(
        role,
        replicas,
        decision.desired_replicas,
        decision.reason,
        decision.memory,
        decision,
        decision.changed,
    )


def role_status(outcome: RoleOutcome, reading: RoleReading | None, previous: RoleStatus) -> RoleStatus:
    """A role's status: counts from this read (the previous ones when Redis could not be read)."""
    seen: RoleObservation | None = reading.observation if reading is not None else None
    memory = outcome.memory
    return RoleStatus(
        replicas=outcome.replicas,
        desired_replicas=outcome.desired,
        queued=seen.queued if seen else previous.queued,
        in_flight=seen.live_in_flight if seen else previous.in_flight,
        scheduled=seen.scheduled if seen else previous.scheduled,
        stale_in_flight=seen.stale_in_flight if seen else previous.stale_in_flight,
        busy_workers=seen.busy_workers if seen else previous.busy_workers,
        reason=outcome.reason,
        recommendations=memory.recommendations,
        scale_events=memory.scale_events,
        last_scale_time=memory.last_scale_time,
        last_active_time=memory.last_active_time,
        gate_closed_since=memory.gate_closed_since,
        gate_reopened_at=memory.gate_reopened_at,
    )


def decision_category(decision: Decision | None, mode: Mode) -> str:
    """What determined a decision, for ``pirate_operator_decisions_total{category}``.

    The steps of ``decide()`` write fixed phrases into the reason; the last limiting step that
    applied wins (drain floor, then the provider's rate limit, then its gate, then the HPA's limits).
    """
    if decision is None or mode == Mode.PAUSED:
        return "paused"
    if decision.fallback:
        return "fallback"
    reason = decision.reason
    for phrase, category in _PHRASES:
        if phrase in reason:
            return category
    return "demand"


_PHRASES: tuple[tuple[str, str], ...] = (
    ("drain floor", "drain_floor"),
    ("provider limit", "provider_limit"),
    ("provider ", "provider_gate"),
    ("rate limit", "rate_limit"),
    ("stabilization", "stabilization"),
    ("capped at max", "bounds"),
    ("raised to min", "bounds"),
    ("above max", "bounds"),
    ("below min", "bounds"),
    ("scale-up disabled", "bounds"),
    ("scale-down disabled", "bounds"),
    ("tolerance", "tolerance"),
    ("a new pod needs", "start_up_horizon"),
)


def scale_message(role: str, before: int, after: int, reason: str) -> str:
    """The one Event message of a replica change."""
    return f"{role}: {before} → {after} replicas ({reason})"


def status_key(status: PoolStatus, outcomes: Mapping[str, RoleOutcome] | None = None) -> tuple[object, ...]:
    """What must be written at once when it changes (see ``write_status``).

    The replicas, each role's recommendation this cycle, the substance of the decision memory
    and the conditions. Left out: observed counts, the reason's wording, and the memory's times
    that only move forward while the same recommendation repeats.
    """
    recommendations = tuple(
        (name, outcome.decision.recommendation if outcome.decision else None)
        for name, outcome in sorted((outcomes or {}).items())
    )
    roles = tuple(
        (
            name,
            role.replicas,
            role.desired_replicas,
            tuple(recommendation.replicas for recommendation in role.recommendations),
            role.scale_events,
            role.last_scale_time,
            role.gate_closed_since,
            role.gate_reopened_at,
        )
        for name, role in sorted(status.roles.items())
    )
    return (status.observed_generation, status.provider, status.conditions, roles, recommendations)


def total_queued(statuses: Mapping[str, RoleStatus]) -> int:
    return sum(status.queued for status in statuses.values())
