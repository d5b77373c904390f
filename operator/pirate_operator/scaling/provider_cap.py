"""The provider's rate-limit cap (DESIGN §7, turn 2): a gated role gets no more pods than its
provider's rate limit can keep busy.

The llm workers share the provider's budget in Redis (:mod:`pirate_worker.contracts.rate_budget`);
from it, Little's law gives the calls in flight ``L`` that hold the provider at its tightest
limit: ``L = calls per second the limit sustains x seconds per call``. A pod holds
``workersPerPod x callsPerWorker`` calls, so more than ``ceil(L x (1 + margin) / slots per pod)``
pods only queue calls inside the workers (each waiting for the budget) and are paid for idling.

**Margin** (:data:`CAP_MARGIN`, 10 %): with exactly ``L`` slots the provider is at its limit only if
every slot calls without a gap. Each call has gaps (the dequeue, the budget's reservation and
settle scripts) and its time varies around the mean; ``L / (S + gap)`` calls per second stay
within 10 % of the limit only while the gap is under ``S / 9``. 10 % more slots, rounded up to
whole pods, keep the throughput at the limit for gaps up to a tenth of a call.

**Freshness** (:data:`BUDGET_FRESH_SECONDS`, 10 min): the budget counts only when a call settled
within it. Workers settle after every call, so a role that calls is always fresh; one that has
not called for 10 minutes may face another limit (a tier upgrade) or another call time (another
model), and a stale cap could hold it below what the provider now allows. Uncapped, the role
scales on demand until its first calls settle and the cap applies again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Final

from pirate_operator.api.roles import EffectiveRole
from pirate_worker.contracts.rate_budget import WINDOW_S, Budget

#: Extra call slots above the calls in flight that keep the provider at its limit.
CAP_MARGIN: Final = Fraction(1, 10)
#: A budget whose newest settle is older than this is ignored.
BUDGET_FRESH_SECONDS: Final = 600.0


@dataclass(frozen=True)
class ProviderCap:
    """The most pods a gated role's provider budget can keep busy, and why."""

    #: ceil(calls in flight x (1 + margin) / slots per pod), at least 1.
    replicas: int
    calls_in_flight: float
    #: The tightest limit, e.g. ``60 requests/min``.
    limit: str
    call_seconds: float

    def describe(self) -> str:
        """``provider limit 60 requests/min at 2.0s per call → 2.0 calls in flight``."""
        return (
            f"provider limit {self.limit} at {self.call_seconds:.1f}s per call "
            f"→ {self.calls_in_flight:.1f} calls in flight"
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
    slots = Fraction(in_flight) * (1 + CAP_MARGIN)
    replicas = max(1, math.ceil(slots / role.slots_per_pod))
    return ProviderCap(replicas, in_flight, tightest, budget.call_s)


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
