"""The pool's conditions from what a cycle saw (pure), keeping transition times of unchanged ones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pirate_operator.api import Condition, ConditionStatus, ConditionType, ProviderStatus
from pirate_operator.scaling import Decision
from pirate_worker.contracts.provider_state import ProviderCondition, ProviderState

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
#: Order of the conditions in status (stable, so an unchanged status compares equal).
ORDER = (
    ConditionType.READY,
    ConditionType.REDIS_REACHABLE,
    ConditionType.PROVIDER_BLOCKED,
    ConditionType.PROVIDER_LIMITED,
    ConditionType.FALLBACK,
    ConditionType.PAUSED,
    ConditionType.INVALID_SPEC,
    ConditionType.RESULTS_NOT_DURABLE,
)


@dataclass(frozen=True)
class Wanted:
    """A condition as this cycle sees it, before its transition time is settled."""

    status: ConditionStatus
    reason: str
    message: str = ""


def merge_conditions(
    previous: Iterable[Condition], wanted: Mapping[ConditionType, Wanted], now: datetime
) -> tuple[Condition, ...]:
    """New conditions: a condition whose status did not change keeps its ``lastTransitionTime``.

    Types missing from ``wanted`` keep their previous value (a cycle that could not tell, e.g.
    the provider state while Redis is down, does not overwrite what was known).
    """
    before = {condition.type: condition for condition in previous}
    merged: list[Condition] = []
    for kind in ORDER:
        old = before.get(kind)
        new = wanted.get(kind)
        if new is None:
            if old is not None:
                merged.append(old)
            continue
        since = old.last_transition_time if old is not None and old.status == new.status else now
        merged.append(
            Condition(
                type=kind,
                status=new.status,
                reason=new.reason,
                message=new.message,
                last_transition_time=since,
            )
        )
    return tuple(merged)


def invalid_spec(problems: Iterable[str]) -> Wanted:
    return Wanted(TRUE, "InvalidSpec", "; ".join(problems))


def valid_spec() -> Wanted:
    return Wanted(FALSE, "Valid")


def results_not_durable(problems: Iterable[str], ephemeral: bool) -> Wanted:
    """ResultsNotDurable: True while results would be deleted with the pods, unless opted out."""
    found = list(problems)
    if not found:
        return Wanted(FALSE, "Durable", "HSDS records and recorder files outlive the pods")
    if ephemeral:
        return Wanted(
            FALSE,
            "EphemeralResults",
            "spec.ephemeralResults is true: results on pods' own storage are deleted with the pods",
        )
    return Wanted(
        TRUE,
        "PodLocalResults",
        "; ".join(found) + " (or set spec.ephemeralResults: true for a throwaway run)",
    )


def paused(is_paused: bool, dry_run: bool) -> Wanted:
    if is_paused:
        return Wanted(TRUE, "Paused", "spec.paused is true: replicas are left as they are")
    if dry_run:
        return Wanted(
            FALSE, "DryRun", "spec.dryRun is true: decisions are reported, replicas are not changed"
        )
    return Wanted(FALSE, "Active")


def redis_reachable(error: str | None) -> Wanted:
    if error is None:
        return Wanted(TRUE, "Connected")
    return Wanted(FALSE, "Unreachable", error)


def fallback(error: str | None) -> Wanted:
    if error is None:
        return Wanted(FALSE, "QueueDataAvailable")
    return Wanted(TRUE, "RedisUnreachable", f"holding the current replicas: {error}")


def provider_blocked(state: ProviderState) -> Wanted:
    """ProviderBlocked: True while auth/quota blocks calls and while probing after ``retry_at``."""
    until = f" until {_utc(state.retry_at)}" if state.retry_at else ""
    detail = f": {state.message}" if state.message else ""
    if state.condition == ProviderCondition.QUOTA_EXCEEDED:
        return Wanted(TRUE, "QuotaExceeded", f"quota exceeded{until}{detail}")
    if state.condition == ProviderCondition.AUTH_FAILED:
        return Wanted(TRUE, "AuthFailed", f"credentials rejected{until}{detail}")
    if state.condition == ProviderCondition.PROBING:
        return Wanted(TRUE, "Probing", "retry time passed; probing until a call succeeds")
    return Wanted(FALSE, "ProviderOK")


def provider_limited(decisions: Mapping[str, Decision]) -> Wanted:
    """ProviderLimited: True while the provider's rate limit holds a gated role below its demand.

    The message names each capped role, its cap and the limit, not the call time behind it: a
    moving average would change the message, and post an Event, on every cycle.
    """
    capped = [
        f"{role} capped at {decision.desired_replicas} replicas by the provider limit {cap.limit}"
        for role, decision in sorted(decisions.items())
        if decision.provider_limited and (cap := decision.provider_cap) is not None
    ]
    if capped:
        return Wanted(TRUE, "RateLimitCap", "; ".join(capped))
    if any(decision.provider_cap is not None for decision in decisions.values()):
        return Wanted(
            FALSE, "WithinLimit", "demand needs no more replicas than the provider limit keeps busy"
        )
    return Wanted(FALSE, "NoBudget", "no fresh rate-limit budget from the workers: no cap")


def ready(problem_reason: str | None, message: str = "") -> Wanted:
    if problem_reason is None:
        return Wanted(TRUE, "Reconciled", "Deployments in place, scaling from queue demand")
    return Wanted(FALSE, problem_reason, message)


def provider_status(state: ProviderState) -> ProviderStatus:
    return ProviderStatus(state=state.condition, retry_at=state.retry_at, message=state.message)


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
