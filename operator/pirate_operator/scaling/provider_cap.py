"""The provider's rate-limit cap (DESIGN §7, turn 2): a gated role gets no more pods than its
provider's rate limit can keep busy.

The llm workers share the provider's budget in Redis (:mod:`pirate_worker.contracts.rate_budget`);
from it, Little's law gives the calls in flight ``L`` that hold the provider at its tightest
limit: ``L = calls per second the limit sustains x seconds per call``. A pod holds
``workersPerPod x callsPerWorker`` call slots; slots beyond what the limit keeps busy only queue
calls inside the workers (each waiting for the budget) and are paid for idling.

**How many slots** (the margin over ``L``): each slot cycles between a call (mean ``S``) and the
wait for the limit, so exactly ``L`` slots leave the provider idle whenever every slot happens to
be mid-call, and throughput falls well short of the limit (18 % short at ``L = 8``). That is the
machine-repair model: the share of time the limit idles with ``N`` slots is Erlang's loss formula
``B(N, L)``, whatever the distribution of call times, and smaller still when the provider admits
bursts (its bucket) instead of the exponential admissions the formula assumes. The cap is the
fewest slots with ``B(N, L) <= 2 %`` (:data:`LIMIT_IDLE_SHARE`), so throughput stays at 98 % of
the limit or more: ``N`` is 6 slots for ``L = 2``, 14 for 8, 113 for 100 — a margin that shrinks as
``L`` grows, where a fixed +10 % leaves small fleets well short and a fixed count wastes at scale.

**Freshness** (:data:`BUDGET_FRESH_SECONDS`, one day): the budget counts only when a call settled
within it. A capped role always keeps at least one pod calling, and every call settles with the
limit from the provider's newest headers, so a budget that has gone out of date (a tier upgrade,
another model) is corrected within one call. Ignoring a budget costs more: the role grows past the
cap, its extra workers each hold a job waiting for the budget, and the drain floor, which never
removes busy pods, keeps them until the backlog is gone. So the bound only drops what no longer
describes the fleet at all, and a provider block (no call settles during it) keeps the cap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pirate_operator.api.roles import EffectiveRole
from pirate_worker.contracts.rate_budget import WINDOW_S, Budget

#: Largest share of time the provider's limit may sit idle for want of a waiting call.
LIMIT_IDLE_SHARE: Final = 0.02
#: A budget whose newest settle is older than this is ignored.
BUDGET_FRESH_SECONDS: Final = 86_400.0


@dataclass(frozen=True)
class ProviderCap:
    """The most pods a gated role's provider budget can keep busy, and why."""

    #: ceil(slots / slots per pod), at least 1.
    replicas: int
    calls_in_flight: float
    #: Fewest call slots that keep the limit busy (:func:`slots_for`).
    slots: int
    #: The tightest limit, e.g. ``60 requests/min``.
    limit: str
    call_seconds: float

    def describe(self) -> str:
        """``provider limit 60 requests/min at 2.0s per call → 2.0 calls in flight, 6 slots``."""
        return (
            f"provider limit {self.limit} at {self.call_seconds:.1f}s per call "
            f"→ {self.calls_in_flight:.1f} calls in flight, {self.slots} slots"
        )


def provider_cap(role: EffectiveRole, budget: Budget | None, now: datetime) -> ProviderCap | None:
    """The cap of ``role`` from the budget read at ``now``; None when it does not apply.

    It applies to provider-gated roles with a fresh budget that knows a limit, the units a call
    uses and the call time.
    """
    if not role.gated_by_provider or budget is None:
        return None
    if budget.age_s(now.timestamp()) > BUDGET_FRESH_SECONDS:
        return None
    in_flight = budget.calls_in_flight()
    tightest = _tightest(budget)
    if in_flight is None or tightest is None or budget.call_s is None or not 0 < in_flight < math.inf:
        return None
    per_pod = role.slots_per_pod
    slots = slots_for(in_flight, most=max(role.max_replicas, 1) * per_pod)
    replicas = max(1, -(-slots // per_pod))
    return ProviderCap(replicas, in_flight, slots, tightest, budget.call_s)


def slots_for(calls_in_flight: float, *, most: int) -> int:
    """Fewest call slots ``N`` with Erlang's ``B(N, L) <= LIMIT_IDLE_SHARE``; ``most`` at most.

    ``B`` by its stable recursion ``B(n) = L B(n-1) / (n + L B(n-1))``, from ``B(0) = 1``.
    """
    slots, idle = 0, 1.0
    while idle > LIMIT_IDLE_SHARE and slots < most:
        slots += 1
        idle = calls_in_flight * idle / (slots + calls_in_flight * idle)
    return max(slots, 1)


def _tightest(budget: Budget) -> str | None:
    """The limit that allows the fewest calls per second, as ``<limit> <dimension>/min``."""
    rates = [
        ((limit / WINDOW_S) / budget.used_per_call[name], name, limit)
        for name, limit in sorted(budget.limits.items())
        if budget.used_per_call.get(name, 0.0) > 0.0
    ]
    if not rates:
        return None
    _, name, limit = min(rates)
    return f"{limit:g} {name}/min"
