"""The provider rate-limit cap (DESIGN §7, turn 2) in the decision, number by number.

A gated role gets at most ceil(N / (workersPerPod x callsPerWorker)) pods while the workers'
budget is fresh, N the fewest call slots with Erlang's B(N, L) <= 2 % for L calls in flight; the
budget is observed data, passed to ``decide()`` as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import pytest

from pirate_operator.api import EffectiveRole, RoleMemory
from pirate_operator.scaling import (
    BUDGET_FRESH_SECONDS,
    LIMIT_IDLE_SHARE,
    RoleObservation,
    decide,
    provider_cap,
    slots_for,
)
from pirate_worker.contracts.provider_state import ProviderState
from pirate_worker.contracts.rate_budget import Budget, parse_budget
from tests.unit.test_decide import NO_WINDOW, NOW, OK, queued, quota_exceeded, role


def budget(per_minute: float = 60, call_s: float | None = 2.0, age: float = 5.0, **limits: float) -> Budget:
    """A budget as the workers write it: ``per_minute`` requests, 1 request per call, ``age`` s old."""
    fields = {"requests:limit": per_minute, "requests:used": 1, "updated": NOW.timestamp() - age}
    if call_s is not None:
        fields["call_s"] = call_s
    for name, value in limits.items():
        fields[name.replace("_limit", ":limit").replace("_used", ":used")] = value
    parsed = parse_budget({key: str(value) for key, value in fields.items()})
    assert parsed is not None
    return parsed


@dataclass(frozen=True)
class Case:
    id: str
    role: EffectiveRole
    observation: RoleObservation
    current: int
    budget: Budget | None
    want: int
    reason: str
    limited: bool
    provider: ProviderState | None = None


CASES = [
    Case(
        "60 requests/min at 2 s per call: 2 calls in flight, 6 slots → 3 pods of 2 workers",
        role(),
        queued(40),
        0,
        budget(),
        3,
        "provider limit 60 requests/min at 2.0s per call → 2.0 calls in flight, 6 slots → capped at 3",
        True,
    ),
    Case(
        "300 requests/min at 2 s: 10 in flight, 17 slots → 9 pods",
        role(max_replicas=30),
        queued(100),
        10,
        budget(300),
        9,
        "→ 10.0 calls in flight, 17 slots → capped at 9",
        True,
    ),
    Case(
        "callsPerWorker counts: 600/min at 6 s = 60 in flight, 71 slots / (2 x 8) → 5 pods",
        role(max_replicas=30, calls_per_worker=8),
        queued(400),
        10,
        budget(600, call_s=6.0),
        5,
        "→ 60.0 calls in flight, 71 slots → capped at 5",
        True,
    ),
    Case(
        "the tightest limit wins: 40k tokens/min at 2k tokens per call = 20 calls/min",
        role(),
        queued(40),
        0,
        budget(600, call_s=3.0, tokens_limit=40_000, tokens_used=2_000),
        2,
        "provider limit 40000 tokens/min at 3.0s per call → 1.0 calls in flight, 4 slots → capped at 2",
        True,
    ),
    Case(
        "demand below the cap: no cap in the reason",
        role(),
        queued(2),
        0,
        budget(),
        1,
        "demand 2 / target 2 per pod → 1",
        False,
    ),
    Case(
        "a stale budget (older than 10 min) caps nothing",
        role(),
        queued(40),
        0,
        budget(age=BUDGET_FRESH_SECONDS + 1),
        4,
        "scale-up rate limit → 4",
        False,
    ),
    Case(
        "a budget without a call time caps nothing",
        role(),
        queued(40),
        0,
        budget(call_s=None),
        4,
        "scale-up rate limit → 4",
        False,
    ),
    Case(
        "no budget in Redis caps nothing",
        role(),
        queued(40),
        0,
        None,
        4,
        "scale-up rate limit → 4",
        False,
    ),
    Case(
        "roles not gated by the provider are never capped",
        role("reconciler"),
        queued(40),
        0,
        budget(),
        4,
        "scale-up rate limit → 4",
        False,
    ),
    Case(
        "never below the drain floor: 8 busy workers keep 4 of 6 pods",
        role(down=NO_WINDOW),
        RoleObservation(queued=40, live_in_flight=8, busy_workers=8),
        6,
        budget(),
        4,
        "capped at 3, drain floor 4 (8 busy workers)",
        True,
    ),
    Case(
        "never below minReplicas: a cap of 3 holds min 4",
        role(min_replicas=4),
        queued(40),
        4,
        budget(),
        4,
        "scale-up rate limit → 8, provider limit 60 requests/min at 2.0s per call → 2.0 calls in flight, "
        "6 slots → capped at 4",
        True,
    ),
    Case(
        "scale-in to the cap raised to minReplicas",
        role(min_replicas=4),
        queued(40),
        6,
        budget(),
        4,
        "→ 2.0 calls in flight, 6 slots → capped at 4",
        True,
    ),
    Case(
        "never above maxReplicas: a cap of 36 leaves max 10 alone",
        role(),
        queued(100),
        10,
        budget(1800),
        10,
        "capped at max 10",
        False,
    ),
    Case(
        "a blocked provider's gate is tighter than the cap",
        role(),
        queued(40),
        2,
        budget(),
        0,
        "capped at 0",
        False,
        quota_exceeded(),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_provider_cap_table(case: Case) -> None:
    decision = decide(
        case.role,
        RoleMemory(),
        case.observation,
        case.provider or OK,
        NOW,
        current_replicas=case.current,
        budget=case.budget,
    )
    assert decision.desired_replicas == case.want, decision.reason
    assert case.reason in decision.reason
    assert decision.provider_limited == case.limited


def test_the_recorded_recommendation_is_the_uncapped_one() -> None:
    """The memory reflects demand: when the cap lifts, the stabilization windows know the demand."""
    decision = decide(role(), RoleMemory(), queued(40), OK, NOW, current_replicas=0, budget=budget())
    assert decision.desired_replicas == 3
    assert decision.recommendation == 20
    assert [rec.replicas for rec in decision.memory.recommendations] == [20]


def test_the_cap_follows_the_budget_over_time() -> None:
    """Fresh until a day after the newest settle, then the demand rule alone."""
    llm = role()
    stale_at = NOW + timedelta(seconds=BUDGET_FRESH_SECONDS + 5)
    fresh = provider_cap(llm, budget(), NOW)
    assert fresh is not None
    assert fresh.replicas == 3
    assert provider_cap(llm, budget(), stale_at) is None
    decision = decide(llm, RoleMemory(), queued(40), OK, stale_at, current_replicas=10, budget=budget())
    assert decision.provider_cap is None
    assert decision.desired_replicas == 10


@pytest.mark.parametrize(
    ("per_minute", "call_s", "workers", "calls", "want"),
    [
        (60, 2.0, 1, 1, 6),  # 2 in flight: B(6, 2) = 1.2 %, B(5, 2) = 3.7 %
        (60, 1.0, 1, 1, 4),  # 1 in flight: 4 slots
        (60, 0.5, 2, 1, 2),  # half a call in flight: 3 slots, 2 pods of 2
        (3000, 4.0, 2, 16, 7),  # 200 in flight, 214 slots / 32 per pod
        (3000, 4.0, 1, 1, 10),  # 214 slots, but never above maxReplicas (10)
    ],
)
def test_cap_replicas(per_minute: float, call_s: float, workers: int, calls: int, want: int) -> None:
    cap = provider_cap(role(workers_per_pod=workers, calls_per_worker=calls), budget(per_minute, call_s), NOW)
    assert cap is not None
    assert cap.replicas == want


def test_slots_keep_the_limit_busy_98_percent_of_the_time() -> None:
    """Erlang's loss formula, computed directly: N slots suffice, N - 1 would not."""

    def erlang_b(slots: int, load: float) -> float:
        terms = [load**k / math.factorial(k) for k in range(slots + 1)]
        return terms[-1] / sum(terms)

    for load in (0.5, 2.0, 8.0, 30.0, 100.0):
        slots = slots_for(load, most=10_000)
        assert erlang_b(slots, load) <= LIMIT_IDLE_SHARE < erlang_b(slots - 1, load)
        assert slots >= load  # never fewer slots than calls in flight at this share
    assert slots_for(100.0, most=40) == 40
