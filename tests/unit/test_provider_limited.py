"""How the provider cap is reported: the ``ProviderLimited`` condition, its Events, the decision
category and the gauge (the pure parts of a cycle; the e2e tier checks them on a real apiserver)."""

from __future__ import annotations

from pirate_operator.api import ConditionStatus, ConditionType, RoleMemory
from pirate_operator.metrics import CATEGORIES, OperatorMetrics
from pirate_operator.reconcile import conditions as cond
from pirate_operator.reconcile.events import condition_events
from pirate_operator.reconcile.report import Mode, decision_category
from pirate_operator.scaling import Decision, decide
from pirate_worker.contracts.rate_budget import Budget
from tests.unit.test_decide import NOW, OK, queued, role

BUDGET = Budget(
    limits={"requests": 60.0}, used_per_call={"requests": 1.0}, call_s=2.0, updated=NOW.timestamp()
)


def _decide(jobs: int, budget: Budget | None = BUDGET, name: str = "llm") -> Decision:
    return decide(role(name), RoleMemory(), queued(jobs), OK, NOW, current_replicas=0, budget=budget)


def test_condition_names_the_capped_role_and_the_limit() -> None:
    wanted = cond.provider_limited({"llm": _decide(40), "reconciler": _decide(40, name="reconciler")})
    assert wanted.status == ConditionStatus.TRUE
    assert wanted.reason == "RateLimitCap"
    assert wanted.message == "llm capped at 3 replicas by the provider limit 60 requests/min"


def test_condition_is_false_within_the_limit_and_without_a_budget() -> None:
    within = cond.provider_limited({"llm": _decide(2)})
    assert (within.status, within.reason) == (ConditionStatus.FALSE, "WithinLimit")
    missing = cond.provider_limited({"llm": _decide(40, budget=None)})
    assert (missing.status, missing.reason) == (ConditionStatus.FALSE, "NoBudget")


def test_one_event_when_the_cap_binds_and_one_when_it_lifts() -> None:
    limited = cond.merge_conditions(
        (), {ConditionType.PROVIDER_LIMITED: cond.provider_limited({"llm": _decide(40)})}, NOW
    )
    events = condition_events((), limited)
    assert [(event.reason, event.message) for event in events] == [
        ("ProviderLimited", "llm capped at 3 replicas by the provider limit 60 requests/min")
    ]
    assert condition_events(limited, limited) == []
    lifted = cond.merge_conditions(
        limited, {ConditionType.PROVIDER_LIMITED: cond.provider_limited({"llm": _decide(2)})}, NOW
    )
    assert [event.reason for event in condition_events(limited, lifted)] == ["ProviderLimitLifted"]
    no_budget = cond.merge_conditions(
        (), {ConditionType.PROVIDER_LIMITED: cond.provider_limited({"llm": _decide(40, budget=None)})}, NOW
    )
    assert condition_events((), no_budget) == []


def test_decision_category_is_provider_limit() -> None:
    assert "provider_limit" in CATEGORIES
    assert decision_category(_decide(40), Mode.ACTIVE) == "provider_limit"
    assert decision_category(_decide(40, budget=None), Mode.ACTIVE) == "rate_limit"


def test_gauge_exports_the_cap_and_drops_it_without_one() -> None:
    metrics = OperatorMetrics()
    labels = {"namespace": "food", "pool": "pantry", "role": "llm"}
    metrics.set_provider_cap("food", "pantry", "llm", 2)
    assert metrics.registry.get_sample_value("pirate_operator_provider_cap_replicas", labels) == 2
    metrics.set_provider_cap("food", "pantry", "llm", None)
    assert metrics.registry.get_sample_value("pirate_operator_provider_cap_replicas", labels) is None
