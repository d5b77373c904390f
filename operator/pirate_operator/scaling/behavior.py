"""The HPA's ``behavior`` semantics: stabilization windows and rate policies, over stored memory.

This follows the current upstream ``pkg/controller/podautoscaler/horizontal.go``
(``stabilizeRecommendationWithBehaviors``: both windows bound every decision;
``calculateScaleUpLimitWithScalingRules`` / ``calculateScaleDownLimitWithBehaviors``: the replicas
at the start of a period undo both the additions and the removals made within it; Kubernetes 1.20
still looked at one window and one direction only) with two deliberate differences:

* the memory is an argument and a result (kept in the pool's status), not controller state, so a
  restart changes nothing;
* a Percent scale-up policy always allows at least one pod more than the period started with. The
  HPA rounds up for the same reason ("the target would never scale up"), but from zero pods its
  ``ceil(0 x (1 + p))`` is still 0; the HPA never scales from zero, this operator must.

A scale-down window the spec leaves unset is the HPA's 300 s here; the decision passes the rules
of :attr:`~pirate_operator.api.roles.EffectiveRole.scaling_behavior`, where it is already resolved.

Times compare strictly (``time > now - window``) as the HPA's ``After(cutoff)`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pirate_operator.api.spec import (
    HPA_SCALE_DOWN_WINDOW_SECONDS,
    PolicyType,
    ScaleDownRules,
    ScaleUpRules,
    ScalingPolicy,
    SelectPolicy,
)
from pirate_operator.api.status import Recommendation, ScaleEvent


@dataclass(frozen=True)
class Stabilized:
    """A stabilized recommendation and which window, if any, held it back."""

    replicas: int
    held_by: str | None = None
    window_seconds: int = 0


def stabilize(
    recommendation: int,
    current: int,
    history: Iterable[Recommendation],
    up: ScaleUpRules,
    down: ScaleDownRules,
    now: datetime,
) -> Stabilized:
    """Move from ``current`` towards ``recommendation`` only as far as every window allows.

    Scale-up goes no higher than the lowest recommendation of the up window; scale-down no lower
    than the highest recommendation of the down window (both windows include ``recommendation``).
    """
    up_cutoff = now - timedelta(seconds=up.stabilization_window_seconds)
    down_window = down.window_seconds(HPA_SCALE_DOWN_WINDOW_SECONDS)
    down_cutoff = now - timedelta(seconds=down_window)
    lowest = highest = recommendation
    for past in history:
        if past.time > up_cutoff:
            lowest = min(lowest, past.replicas)
        if past.time > down_cutoff:
            highest = max(highest, past.replicas)
    result = min(max(current, lowest), highest)
    if result < recommendation:
        return Stabilized(result, "scale-up", up.stabilization_window_seconds)
    if result > recommendation:
        return Stabilized(result, "scale-down", down_window)
    return Stabilized(result)


def _changes_in_period(events: Iterable[ScaleEvent], period_seconds: int, now: datetime) -> tuple[int, int]:
    """Replicas added and removed by events younger than the period."""
    cutoff = now - timedelta(seconds=period_seconds)
    recent = [event.change for event in events if event.time > cutoff]
    return sum(change for change in recent if change > 0), -sum(change for change in recent if change < 0)


def _period_start(current: int, events: Iterable[ScaleEvent], policy: ScalingPolicy, now: datetime) -> int:
    added, removed = _changes_in_period(events, policy.period_seconds, now)
    return current - added + removed


def scale_up_limit(current: int, events: Iterable[ScaleEvent], rules: ScaleUpRules, now: datetime) -> int:
    """Most replicas the up policies allow now; never below ``current`` (Disabled: exactly current)."""
    if rules.select_policy == SelectPolicy.DISABLED:
        return current
    history = tuple(events)
    proposals = []
    for policy in rules.policies:
        start = _period_start(current, history, policy, now)
        if policy.type == PolicyType.PODS:
            proposals.append(start + policy.value)
        else:
            rounded_up = -(-start * (100 + policy.value) // 100)
            proposals.append(max(rounded_up, start + 1))
    pick = min if rules.select_policy == SelectPolicy.MIN else max
    return max(pick(proposals), current)


def scale_down_limit(current: int, events: Iterable[ScaleEvent], rules: ScaleDownRules, now: datetime) -> int:
    """Fewest replicas the down policies allow now; never above ``current`` (Disabled: exactly current)."""
    if rules.select_policy == SelectPolicy.DISABLED:
        return current
    history = tuple(events)
    proposals = []
    for policy in rules.policies:
        start = _period_start(current, history, policy, now)
        if policy.type == PolicyType.PODS:
            proposals.append(start - policy.value)
        else:
            proposals.append(start * (100 - policy.value) // 100)
    # Max selects the largest change, i.e. the fewest replicas.
    pick = max if rules.select_policy == SelectPolicy.MIN else min
    return max(min(pick(proposals), current), 0)


def remember(
    history: Iterable[Recommendation],
    replicas: int,
    now: datetime,
    up: ScaleUpRules,
    down: ScaleDownRules,
) -> tuple[Recommendation, ...]:
    """Append this recommendation and drop every one no future decision can need.

    A stored recommendation matters to a future down-window query only if it is inside the window
    and no later one is at least as high (and it is above 0, the floor of every recommendation);
    to a future up-window query only if it is inside the window and no later one is at most as
    low. Dropping the rest keeps the status small (one entry while demand is steady) without
    changing any decision.
    """
    candidates = [*history, Recommendation(time=now, replicas=replicas)]
    up_cutoff = now - timedelta(seconds=up.stabilization_window_seconds)
    down_cutoff = now - timedelta(seconds=down.window_seconds(HPA_SCALE_DOWN_WINDOW_SECONDS))
    kept: list[Recommendation] = []
    for index, entry in enumerate(candidates):
        later = [other.replicas for other in candidates[index + 1 :]]
        for_down = entry.time > down_cutoff and entry.replicas > 0 and all(v < entry.replicas for v in later)
        for_up = entry.time > up_cutoff and all(v > entry.replicas for v in later)
        if for_down or for_up:
            kept.append(entry)
    return tuple(kept)


def record_scale(
    events: Iterable[ScaleEvent],
    change: int,
    now: datetime,
    up: ScaleUpRules,
    down: ScaleDownRules,
) -> tuple[ScaleEvent, ...]:
    """Append a replica change (if any) and drop events older than every policy period."""
    longest = max(policy.period_seconds for policy in (*up.policies, *down.policies))
    cutoff = now - timedelta(seconds=longest)
    kept = [event for event in events if event.time > cutoff]
    if change:
        kept.append(ScaleEvent(time=now, change=change))
    return tuple(kept)
