"""The simulated provider rate limit and the pirate policy's cap: calls beyond the limit wait, the
cap keeps the gated role at the pods the limit keeps busy, KEDA and the HPA stay blind to it."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pirate_operator.simulate import TraceError, parse_trace, report, simulate
from pirate_operator.simulate.cluster import RoleState
from pirate_operator.simulate.keda import KedaPolicy
from pirate_operator.simulate.pirate import PiratePolicy
from pirate_operator.simulate.provider import RateLimiter
from pirate_operator.simulate.trace import ProviderLimit
from tests.unit.test_simulate import LLM_ONLY, trace

#: 60 calls/min: one call a second; 10 s calls; 10 pods of one worker could start 1 a second.
LIMITED = {**LLM_ONLY, "provider_limit": {"calls_per_minute": 60}}


def _backlog(jobs: int, **changes: Any) -> dict[str, Any]:
    return {**LIMITED, "arrivals": [{"t": 1, "role": "llm", "jobs": jobs}], **changes}


def test_calls_beyond_the_limit_wait_for_it() -> None:
    """Two pods at the start, two jobs: the second call starts a second after the first."""
    subject = trace(_backlog(2), llm={"minReplicas": 2})
    outcome = simulate(subject, PiratePolicy(subject.roles, subject.chain))
    assert sorted(outcome.tallies["llm"].waits) == [0.0, 1.0]


def test_throughput_is_capped_at_the_limit_whatever_the_replicas() -> None:
    """60 jobs through 10 workers would take 60 s; at one call a second the last starts ~59 s later."""
    subject = trace(_backlog(60), llm={"minReplicas": 10})
    outcome = simulate(subject, PiratePolicy(subject.roles, subject.chain, cap=False))
    starts = sorted(wait + 1 for wait in outcome.tallies["llm"].waits)
    assert all(later - earlier >= 1.0 - 1e-9 for earlier, later in itertools.pairwise(starts))
    assert outcome.tallies["llm"].done == 60


def test_a_burst_lets_that_many_calls_start_at_once() -> None:
    limiter = RateLimiter(ProviderLimit(calls_per_minute=60, burst_calls=3))
    assert [limiter.admit(10.0) for _ in range(5)] == [10.0, 10.0, 10.0, 11.0, 12.0]
    assert limiter.budget() is None  # nothing settled yet: the workers wrote no budget
    limiter.settled(20.0, 10.0)
    budget = limiter.budget()
    assert budget is not None
    assert budget.calls_in_flight() == 10.0


#: A few calls settle the budget (the workers write it after a call), then a backlog far above
#: what the limit drains: without a budget the role scales on demand and the drain floor then
#: keeps every pod whose worker waits on the limit, so the cap must be known before the backlog.
WARM_THEN_BACKLOG = [{"t": 1, "role": "llm", "jobs": 3}, {"t": 60, "role": "llm", "jobs": 1200}]


def test_pirate_caps_the_gated_role_and_pays_far_less_for_the_same_waits() -> None:
    """1 call/s at 10 s: 10 in flight, 17 slots keep the limit busy; uncapped, it grows to max 40."""
    subject = trace({**LIMITED, "arrivals": WARM_THEN_BACKLOG, "duration_s": 600}, llm={"maxReplicas": 40})
    capped = simulate(subject, PiratePolicy(subject.roles, subject.chain))
    uncapped = simulate(subject, PiratePolicy(subject.roles, subject.chain, cap=False))
    assert max(sample.replicas["llm"] for sample in capped.samples) == 17
    assert max(sample.replicas["llm"] for sample in uncapped.samples) == 40
    ours, theirs = report(capped), report(uncapped)
    assert ours.total.pending_jobs == theirs.total.pending_jobs == 0
    assert ours.total.worker_seconds <= 0.5 * theirs.total.worker_seconds
    assert ours.total.p95_wait_s is not None and theirs.total.p95_wait_s is not None
    assert ours.total.p95_wait_s <= 1.05 * theirs.total.p95_wait_s


def test_without_a_limit_the_cap_changes_nothing() -> None:
    subject = trace({**LLM_ONLY, "arrivals": [{"t": 1, "role": "llm", "jobs": 300}]})
    capped = report(simulate(subject, PiratePolicy(subject.roles, subject.chain)))
    uncapped = report(simulate(subject, PiratePolicy(subject.roles, subject.chain, cap=False)))
    assert capped.total == uncapped.total


def test_keda_stays_blind_to_the_limit() -> None:
    subject = trace({**LIMITED, "arrivals": WARM_THEN_BACKLOG, "duration_s": 600}, llm={"maxReplicas": 40})
    outcome = simulate(subject, KedaPolicy(subject.roles))
    assert max(sample.replicas["llm"] for sample in outcome.samples) == 40


def test_call_slots_per_pod_and_busy_processes() -> None:
    """A pod of 2 workers x 4 calls has 8 slots; RQ sees a process busy while any of its calls run."""
    state = RoleState("llm", workers_per_pod=2, calls_per_worker=4)
    pod = state.add_pod(1, 0.0, 0.0)
    assert len(pod.workers) == 8
    for slot in pod.workers[:3]:  # three calls of the first process
        slot.job = object()  # type: ignore[assignment]
    assert (state.busy, state.busy_processes) == (3, 1)
    pod.workers[7].job = pod.workers[0].job
    assert (state.busy, state.busy_processes) == (4, 2)


def test_calls_per_worker_multiplies_the_simulated_slots() -> None:
    """One pod of one worker with 4 calls runs 4 jobs at once (no limit)."""
    subject = trace(
        {**LLM_ONLY, "arrivals": [{"t": 1, "role": "llm", "jobs": 4}]},
        llm={"minReplicas": 1, "maxReplicas": 1, "callsPerWorker": 4},
    )
    outcome = simulate(subject, PiratePolicy(subject.roles, subject.chain))
    assert sorted(outcome.tallies["llm"].waits) == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("limit", "problem"),
    [
        ({"calls_per_minute": 0}, "provider_limit.calls_per_minute: must be greater than 0"),
        ({"calls_per_minute": 60, "burst_calls": 0}, "provider_limit.burst_calls: must be greater than"),
        ({"rpm": 60}, "provider_limit.calls_per_minute: required"),
    ],
)
def test_a_bad_limit_is_one_line(limit: dict[str, Any], problem: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_trace({**LIMITED, "provider_limit": limit})
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)
