"""Recovery from a provider outage over a sequence of decisions, with memory carried as the operator
carries it (the single rules are rows of the table in ``test_decide.py``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pirate_operator.api import RoleMemory, RoleStatus
from pirate_operator.scaling import Decision, decide
from pirate_worker.contracts.provider_state import ProviderCondition, ProviderState
from tests.unit.test_decide import NOW, OK, queued, role

RETRY_AT = NOW + timedelta(seconds=60)
BLOCKED = ProviderState(condition=ProviderCondition.QUOTA_EXCEEDED, retry_at=RETRY_AT, message="429")
PROBING = ProviderState(condition=ProviderCondition.PROBING, retry_at=RETRY_AT, message="429")


def provider_at(moment: datetime, success_at: datetime) -> ProviderState:
    """Blocked until retry_at, probing until the probe succeeds, then ok."""
    if moment < RETRY_AT:
        return BLOCKED
    return PROBING if moment < success_at else OK


def run(
    seconds: range, provider: ProviderState | None = None, success_after: float = 8.0
) -> tuple[dict[int, int], dict[int, Decision]]:
    """Decide every 2 s from NOW (a backlog of 400 jobs, llm max 20 pods of 1 worker)."""
    llm = role(max_replicas=20, workers_per_pod=1, target_jobs_per_worker=2)
    memory, current = RoleMemory(), 0
    replicas: dict[int, int] = {}
    decisions: dict[int, Decision] = {}
    for second in seconds:
        now = NOW + timedelta(seconds=second)
        state = provider or provider_at(now, RETRY_AT + timedelta(seconds=success_after))
        decision = decide(llm, memory, queued(400), state, now, current_replicas=current)
        memory, current = decision.memory, decision.desired_replicas
        replicas[second], decisions[second] = current, decision
    return replicas, decisions


def test_pods_start_one_pod_start_plus_one_poll_before_retry_at() -> None:
    replicas, _ = run(range(0, 90, 2))
    # retry_at is at 60 s; pods take 10 s to start and the next look is 2 s later.
    assert {replicas[s] for s in range(0, 48, 2)} == {0}
    assert replicas[48] == 20  # the whole target at once: no rate limit for the outage's backlog
    # Probing (60-67 s) keeps the prepared pods; the success at 68 s changes nothing.
    assert {replicas[s] for s in range(48, 90, 2)} == {20}


def test_gate_memory_closes_then_reopens() -> None:
    _, decisions = run(range(0, 90, 2))
    assert decisions[0].memory.gate_closed_since == NOW
    assert decisions[66].memory.gate_closed_since == NOW  # probing is still closed
    assert decisions[66].memory.gate_reopened_at is None
    assert decisions[68].memory.gate_closed_since is None
    assert decisions[68].memory.gate_reopened_at == NOW + timedelta(seconds=68)
    assert decisions[88].memory.gate_reopened_at == NOW + timedelta(seconds=68)
    assert decisions[88].memory.gate_closed_since is None


def test_without_a_prepare_the_backlog_scales_at_once_after_the_reopen() -> None:
    """Probing from the first look (the block was never seen before retry_at): one probe pod, then
    the whole target when the probe succeeds, not 1 → 5 → 10 → 20 over three scale-up periods."""
    llm = role(max_replicas=20, workers_per_pod=1, target_jobs_per_worker=2)
    probing = decide(llm, RoleMemory(), queued(400), PROBING, NOW, current_replicas=0)
    assert probing.desired_replicas == 1
    reopened = decide(llm, probing.memory, queued(400), OK, NOW + timedelta(seconds=10), current_replicas=1)
    assert reopened.desired_replicas == 20
    assert "provider gate reopened 0s ago (< 15s): scale-up rate limit (4) waived" in reopened.reason


def test_a_failed_probe_removes_the_prepared_pods_at_the_next_look() -> None:
    """The cost of preparing is bounded: a new block caps the role again at once."""
    replicas, decisions = run(range(0, 70, 2), success_after=1e9)
    assert replicas[64] == 20
    llm = role(max_replicas=20, workers_per_pod=1, target_jobs_per_worker=2)
    later = ProviderState(
        condition=ProviderCondition.QUOTA_EXCEEDED, retry_at=RETRY_AT + timedelta(seconds=600), message="429"
    )
    refused = decide(
        llm, decisions[68].memory, queued(400), later, NOW + timedelta(seconds=70), current_replicas=20
    )
    assert refused.desired_replicas == 0
    assert refused.memory.gate_closed_since == NOW


def test_an_operator_restart_mid_outage_still_sees_the_reopen() -> None:
    """The gate memory lives in status (camelCase, like the rest): read back, the reopen is seen."""
    _, decisions = run(range(0, 62, 2))
    stored = RoleStatus(replicas=1, **decisions[60].memory.model_dump())
    document = stored.model_dump(mode="json", by_alias=True)
    assert document["gateClosedSince"] == NOW.isoformat().replace("+00:00", "Z")
    restored = RoleStatus.model_validate(document).memory()
    llm = role(max_replicas=20, workers_per_pod=1, target_jobs_per_worker=2)
    after = decide(llm, restored, queued(400), OK, NOW + timedelta(seconds=70), current_replicas=1)
    fresh = decide(llm, RoleMemory(), queued(400), OK, NOW + timedelta(seconds=70), current_replicas=1)
    assert after.desired_replicas == 20
    assert fresh.desired_replicas == 5  # without the memory: rate limited (4 pods per 15 s)


def test_missing_redis_data_keeps_the_gate_memory() -> None:
    memory = RoleMemory(gate_closed_since=NOW - timedelta(seconds=30))
    decision = decide(role(), memory, None, OK, NOW, current_replicas=0)
    assert decision.memory == memory
