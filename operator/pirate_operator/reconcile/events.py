"""Which Events a cycle posts (pure): one per replica change, one per condition transition.

Transitions are computed against the status the cycle started from, which is read back from the
object after a restart, so a restarted operator posts nothing new for states it already reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pirate_operator.api import Condition, ConditionStatus, ConditionType, RoleStatus
from pirate_operator.kube import Applied, EventType
from pirate_operator.reconcile.report import Mode, RoleOutcome, scale_message

NORMAL, WARNING = EventType.NORMAL, EventType.WARNING


@dataclass(frozen=True)
class PoolEvent:
    kind: EventType
    reason: str
    message: str


def scale_events(
    outcomes: Iterable[RoleOutcome], previous: Mapping[str, RoleStatus], mode: Mode
) -> list[PoolEvent]:
    """One Event per replica change written; in a dry run, one per change of the would-be count."""
    events: list[PoolEvent] = []
    for outcome in outcomes:
        decision = outcome.decision
        if decision is None:
            continue
        if outcome.scaled:
            before, after = decision.current_replicas, decision.desired_replicas
            reason = "ScaledUp" if after > before else "ScaledDown"
            events.append(
                PoolEvent(NORMAL, reason, scale_message(outcome.role, before, after, decision.reason))
            )
        elif mode == Mode.DRY_RUN and decision.changed:
            old = previous.get(outcome.role)
            if old is None or old.desired_replicas != decision.desired_replicas:
                message = scale_message(
                    outcome.role, decision.current_replicas, decision.desired_replicas, decision.reason
                )
                events.append(PoolEvent(NORMAL, "DryRunScale", f"would scale {message}"))
    return events


def deployment_events(changes: Mapping[str, Applied]) -> list[PoolEvent]:
    events = []
    for role, applied in sorted(changes.items()):
        if applied == Applied.CREATED:
            events.append(PoolEvent(NORMAL, "DeploymentCreated", f"created the Deployment of role {role}"))
        elif applied == Applied.UPDATED:
            events.append(PoolEvent(NORMAL, "DeploymentUpdated", f"updated the Deployment of role {role}"))
    return events


def condition_events(before: Iterable[Condition], after: Iterable[Condition]) -> list[PoolEvent]:
    """Events for conditions that changed status or reason (a missing condition counts as False)."""
    old = {condition.type: condition for condition in before}
    events: list[PoolEvent] = []
    for condition in after:
        previous = old.get(condition.type)
        was_true = previous is not None and previous.status == ConditionStatus.TRUE
        same = previous is not None and (previous.status, previous.reason, previous.message) == (
            condition.status,
            condition.reason,
            condition.message,
        )
        if same or (previous is None and condition.status != ConditionStatus.TRUE):
            continue
        event = _transition(condition, was_true)
        if event is not None:
            events.append(event)
    return events


def _transition(condition: Condition, was_true: bool) -> PoolEvent | None:
    is_true = condition.status == ConditionStatus.TRUE
    message = condition.message
    match condition.type:
        case ConditionType.FALLBACK:
            if is_true:
                return PoolEvent(WARNING, "RedisUnreachable", message)
            return PoolEvent(NORMAL, "RedisReachable", "queue data available again") if was_true else None
        case ConditionType.PROVIDER_BLOCKED:
            if is_true:
                kind = NORMAL if condition.reason == "Probing" else WARNING
                return PoolEvent(kind, f"Provider{condition.reason}", message)
            return (
                PoolEvent(NORMAL, "ProviderRecovered", "provider calls succeed again") if was_true else None
            )
        case ConditionType.PROVIDER_LIMITED:
            if is_true:
                return PoolEvent(NORMAL, "ProviderLimited", message)
            return PoolEvent(NORMAL, "ProviderLimitLifted", message) if was_true else None
        case ConditionType.PAUSED:
            if is_true:
                return PoolEvent(NORMAL, "Paused", message)
            return PoolEvent(NORMAL, "Resumed", "scaling resumed") if was_true else None
        case ConditionType.INVALID_SPEC:
            if is_true:
                return PoolEvent(WARNING, "InvalidSpec", message)
            return PoolEvent(NORMAL, "SpecValid", "the spec is valid again") if was_true else None
        case ConditionType.RESULTS_NOT_DURABLE:
            if is_true:
                return PoolEvent(WARNING, "ResultsNotDurable", message)
            if was_true:
                reason = "ResultsDurable" if condition.reason == "Durable" else condition.reason
                return PoolEvent(NORMAL, reason, message)
            return None
        case ConditionType.READY:
            if not is_true and condition.reason == "KubernetesError":
                return PoolEvent(WARNING, "KubernetesError", message)
            return None
        case _:
            return None
