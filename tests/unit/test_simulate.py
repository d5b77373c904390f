"""The simulator, run by run: determinism, conservation, and small traces worked out by hand.

Hand-computed cases use jobs of fixed length (cv 0) and policies built with their control loops
starting at second 0, so every wait below follows from the policy's documented timing.
"""

from __future__ import annotations

import copy
import statistics
from typing import Any

import pytest

from pirate_operator.simulate import Outcome, parse_trace, report, simulate
from pirate_operator.simulate.engine import MAX_DRAIN_SECONDS, job_duration
from pirate_operator.simulate.hpa import HpaPolicy
from pirate_operator.simulate.keda import KedaPolicy
from pirate_operator.simulate.pirate import PiratePolicy
from pirate_operator.simulate.policy import Policy
from pirate_operator.simulate.trace import Trace

LLM_ONLY: dict[str, Any] = {
    "name": "tiny",
    "duration_s": 60,
    "pod_start_s": 5,
    "roles": {"llm": {"service_time_s": 10, "cv": 0}},
    "pool": {
        "roles": {"llm": {"minReplicas": 0, "maxReplicas": 10, "workersPerPod": 1, "targetJobsPerWorker": 1}}
    },
    "arrivals": [],
}

PIPELINE: dict[str, Any] = {
    "name": "pipeline",
    "duration_s": 900,
    "pod_start_s": 20,
    "roles": {
        "llm": {"service_time_s": 8, "cv": 0.6},
        "reconciler": {"service_time_s": 0.4, "cv": 0.5},
        "recorder": {"service_time_s": 0.05, "cv": 0.3},
    },
    "chain": {"llm": ["reconciler", "recorder"]},
    "pool": {
        "roles": {
            "llm": {"minReplicas": 0, "maxReplicas": 6, "workersPerPod": 2, "targetJobsPerWorker": 2},
            "reconciler": {"minReplicas": 0, "maxReplicas": 3, "workersPerPod": 1, "targetJobsPerWorker": 20},
            "recorder": {"minReplicas": 0, "maxReplicas": 2, "workersPerPod": 1, "targetJobsPerWorker": 50},
        }
    },
    "arrivals": [{"t": t, "role": "llm", "jobs": (t // 10 * 7) % 5} for t in range(0, 800, 10)],
    "provider_blocked": [{"from": 300, "to": 450, "kind": "quota_exceeded"}],
}


def trace(base: dict[str, Any], **changes: Any) -> Trace:
    """``base`` with top-level fields replaced, ``llm`` pool settings merged, ``quota``, ``behavior`` set."""
    raw = copy.deepcopy(base)
    raw["pool"]["roles"]["llm"].update(changes.pop("llm", {}))
    for pool_field in ("quota", "behavior"):
        if pool_field in changes:
            raw["pool"][pool_field] = changes.pop(pool_field)
    raw.update(changes)
    return parse_trace(raw)


def policy(name: str, subject: Trace) -> Policy:
    """A policy whose control loops start at second 0."""
    if name == "pirate":
        return PiratePolicy(subject.roles, subject.chain)
    if name == "keda":
        return KedaPolicy(subject.roles)
    return HpaPolicy(subject.roles)


def replicas_at(outcome: Outcome, role: str, second: float) -> int:
    return next(sample.replicas[role] for sample in outcome.samples if sample.t == second)


def replicas_between(outcome: Outcome, role: str, start: float, end: float) -> set[int]:
    return {sample.replicas[role] for sample in outcome.samples if start <= sample.t <= end}


@pytest.mark.parametrize("name", ["pirate", "keda", "hpa"])
def test_a_seed_fixes_the_run(name: str) -> None:
    subject = parse_trace(PIPELINE)
    first = report(simulate(subject, name, seed=3)).as_dict()
    assert report(simulate(subject, name, seed=3)).as_dict() == first
    assert report(simulate(subject, name, seed=4)).as_dict() != first


def test_job_durations_follow_the_trace_mean_and_cv() -> None:
    durations = [job_duration(1, f"llm#{number}", 8.0, 0.6) for number in range(20_000)]
    assert statistics.fmean(durations) == pytest.approx(8.0, rel=0.02)
    assert statistics.stdev(durations) / statistics.fmean(durations) == pytest.approx(0.6, rel=0.03)
    assert job_duration(1, "llm#7", 8.0, 0.6) == job_duration(1, "llm#7", 8.0, 0.6)
    assert job_duration(1, "llm#7", 8.0, 0.0) == 8.0


@pytest.mark.parametrize("name", ["pirate", "keda", "hpa"])
def test_every_job_is_done_and_every_llm_job_chains_once(name: str) -> None:
    subject = parse_trace(PIPELINE)
    outcome = simulate(subject, name, seed=5)
    result = report(outcome)
    arrived = sum(arrival.jobs for arrival in subject.arrivals)
    assert result.roles["llm"].jobs_done == arrived
    assert result.roles["reconciler"].jobs_done == arrived
    assert result.roles["recorder"].jobs_done == arrived
    assert result.total.pending_jobs == 0
    assert all(len(outcome.tallies[role].waits) == arrived for role in subject.roles)
    assert result.roles["llm"].refused_starts > 0, "the blocked window must have refused some starts"


def test_work_that_cannot_run_is_reported_pending() -> None:
    subject = trace(LLM_ONLY, llm={"maxReplicas": 0}, arrivals=[{"t": 3, "role": "llm", "jobs": 4}])
    outcome = simulate(subject, policy("pirate", subject))
    result = report(outcome)
    assert (result.roles["llm"].jobs_done, result.roles["llm"].pending_jobs) == (0, 4)
    assert outcome.end == subject.duration_s + MAX_DRAIN_SECONDS
    assert result.total.worker_seconds == 0


@pytest.mark.parametrize(
    ("name", "jobs", "waits"),
    [
        # Next poll at 2 s, pod ready 5 s later.
        ("pirate", 1, [6.0]),
        ("pirate", 3, [6.0, 6.0, 6.0]),
        # KEDA sees the queue at its 30 s poll; the HPA (same instant) starts from that 1 pod.
        ("keda", 1, [34.0]),
        ("keda", 3, [34.0, 34.0, 34.0]),
        # The HPA's pod exists from the start; LLEN ignores the running job, so the 15 s sync
        # sees 1 queued job for 1 pod and adds nothing.
        ("hpa", 1, [0.0]),
        ("hpa", 3, [0.0, 10.0, 20.0]),
    ],
)
def test_hand_computed_waits(name: str, jobs: int, waits: list[float]) -> None:
    subject = trace(LLM_ONLY, arrivals=[{"t": 1, "role": "llm", "jobs": jobs}])
    outcome = simulate(subject, policy(name, subject))
    assert sorted(outcome.tallies["llm"].waits) == waits


def test_keda_reacts_only_at_its_polls_and_scales_to_zero_after_the_cooldown() -> None:
    subject = trace(LLM_ONLY, duration_s=400, arrivals=[{"t": 1, "role": "llm", "jobs": 1}])
    outcome = simulate(subject, policy("keda", subject))
    assert replicas_between(outcome, "llm", 0, 29) == {0}
    assert replicas_at(outcome, "llm", 30) == 1
    # Last active at the 30 s poll; 30 + 300 is not yet past at 330, it is at the 360 s poll.
    assert replicas_between(outcome, "llm", 30, 359) == {1}
    assert replicas_at(outcome, "llm", 360) == 0


def test_hpa_never_goes_below_one_replica() -> None:
    subject = trace(LLM_ONLY, duration_s=600, arrivals=[{"t": 1, "role": "llm", "jobs": 6}])
    outcome = simulate(subject, policy("hpa", subject))
    assert min(replicas_between(outcome, "llm", 0, 600)) == 1
    assert max(replicas_between(outcome, "llm", 0, 600)) > 1


def test_pirate_carries_memory_between_polls() -> None:
    """Busy until 17 s; the last recommendation of 1 pod is at 16 s, so a 300 s window frees it at 316 s."""
    subject = trace(
        LLM_ONLY,
        duration_s=400,
        arrivals=[{"t": 1, "role": "llm", "jobs": 1}],
        behavior={"scaleDown": {"stabilizationWindowSeconds": 300}},
    )
    outcome = simulate(subject, policy("pirate", subject))
    assert replicas_at(outcome, "llm", 1) == 0
    assert replicas_at(outcome, "llm", 2) == 1
    assert replicas_between(outcome, "llm", 2, 315) == {1}
    assert replicas_at(outcome, "llm", 316) == 0


def test_pirate_default_window_is_the_trace_pod_start() -> None:
    """Unset, the scale-down window is podStartSeconds, which a trace sets from its pod_start_s (5 s).

    The stock policies keep the HPA's 300 s for the same pool.
    """
    subject = trace(LLM_ONLY, duration_s=400, arrivals=[{"t": 1, "role": "llm", "jobs": 1}])
    assert subject.roles["llm"].pod_start_seconds == 5
    ours = simulate(subject, policy("pirate", subject))
    assert replicas_between(ours, "llm", 2, 20) == {1}
    assert replicas_at(ours, "llm", 22) == 0
    stock = simulate(subject, policy("hpa", subject))
    assert replicas_at(stock, "llm", 200) >= 1


@pytest.mark.parametrize("pod_start", [0, 7, 30])
@pytest.mark.parametrize(
    ("name", "jobs", "waits"),
    [
        ("pirate", 1, lambda start: [start]),
        ("keda", 1, lambda start: [start]),
        # One pod from the start; the sync at 0 s adds one for the 2 queued jobs.
        ("hpa", 3, lambda start: [0.0, start, 100.0]),
    ],
)
def test_a_new_pod_takes_jobs_only_after_pod_start(name: str, jobs: int, waits: Any, pod_start: int) -> None:
    subject = trace(
        LLM_ONLY,
        pod_start_s=pod_start,
        roles={"llm": {"service_time_s": 100, "cv": 0}},
        arrivals=[{"t": 0, "role": "llm", "jobs": jobs}],
    )
    outcome = simulate(subject, policy(name, subject))
    assert sorted(outcome.tallies["llm"].waits) == waits(float(pod_start))
    assert all(
        pod.created_at + pod_start == pod.ready_at for pod in outcome.pods["llm"] if pod.created_at > 0
    )


BLOCKED: dict[str, Any] = {
    **LLM_ONLY,
    "duration_s": 700,
    "arrivals": [{"t": t, "role": "llm", "jobs": 1} for t in range(0, 600, 5)],
    "provider_blocked": [{"from": 200, "to": 400, "kind": "quota_exceeded"}],
}


@pytest.mark.parametrize("when_blocked", [0, 1])
def test_blocked_provider_gates_pirate_while_keda_scales_on_the_queue(when_blocked: int) -> None:
    subject = trace(BLOCKED, quota={"replicasWhenBlocked": when_blocked, "probeReplicas": 1})
    pirate = simulate(subject, policy("pirate", subject))
    keda = simulate(subject, policy("keda", subject))
    # Jobs started before 200 s end by 210 s (drain floor); after that only the cap remains until
    # retry_at (400 s) - (the trace's 5 s pod start + 2 s polling): then the whole target starts,
    # ready by retry_at, and probing keeps it (the workers themselves wait for retry_at).
    assert replicas_between(pirate, "llm", 215, 393) == {when_blocked}
    assert replicas_between(pirate, "llm", 394, 420) == {10}
    assert replicas_at(keda, "llm", 399) == 10
    pirate_blocked = report(pirate).total.blocked_worker_seconds
    keda_blocked = report(keda).total.blocked_worker_seconds
    assert keda_blocked > 1500
    # Preparing costs the 10 pods for the 7 s (pod start + polling) before retry_at.
    assert pirate_blocked <= 0.05 * keda_blocked + 200 * when_blocked + 7 * 10


def test_stock_scale_in_interrupts_busy_pods_ours_drains_them() -> None:
    """Two 1000 s jobs on two pods, LLEN 0 once both run.

    KEDA's HPA scales to 1 after its 300 s window and the ReplicaSet removes the newest pod, busy or
    not: its job dies after the 30 s grace period and is re-enqueued. Later KEDA's cooldown (300 s
    without LLEN > 0) scales to 0 under the running job, again and again: under LLEN-only scaling a
    job longer than the cooldown never finishes. Ours keeps busy pods (drain floor) and finishes.
    """
    subject = trace(
        LLM_ONLY,
        duration_s=100,
        roles={"llm": {"service_time_s": 1000, "cv": 0}},
        arrivals=[{"t": 0, "role": "llm", "jobs": 2}],
    )
    pirate = report(simulate(subject, policy("pirate", subject))).roles["llm"]
    assert (pirate.interrupted_jobs, pirate.jobs_done, pirate.pending_jobs) == (0, 2, 0)
    keda = simulate(subject, policy("keda", subject))
    first_kill = next(pod.ended_at for pod in keda.pods["llm"] if pod.terminating_since == 300)
    assert first_kill == 330
    keda_llm = report(keda).roles["llm"]
    assert keda_llm.interrupted_jobs > 10
    assert keda_llm.jobs_done == 1
    assert keda_llm.pending_jobs == 1


def test_worker_seconds_count_pods_from_creation_and_blocked_seconds_only_gated_roles() -> None:
    raw = copy.deepcopy(PIPELINE)
    raw.update(duration_s=100, arrivals=[], provider_blocked=[{"from": 20, "to": 50}])
    raw["pool"]["roles"]["llm"]["workersPerPod"] = 3
    subject = parse_trace(raw)
    result = report(simulate(subject, policy("hpa", subject)))
    # The HPA keeps one pod per role for the whole 100 s.
    assert result.roles["llm"].worker_seconds == 300
    assert result.roles["reconciler"].worker_seconds == 100
    assert result.roles["llm"].blocked_worker_seconds == 3 * 30
    assert result.roles["reconciler"].blocked_worker_seconds == 0
    assert result.total.worker_seconds == 500


@pytest.mark.parametrize("name", ["pirate", "keda", "hpa"])
def test_jobs_queued_when_a_blocked_window_begins_are_counted(name: str) -> None:
    """One 10 s worker, five jobs at 0 s, the provider blocked from 15 s to 40 s.

    At 15 s job 2 runs (it started at 10 s, before the window, and finishes) and jobs 3-5 are
    queued: those three wait until 40 s. The two jobs arriving at 15 s come after the count.
    """
    subject = trace(
        LLM_ONLY,
        llm={"minReplicas": 1, "maxReplicas": 1},
        arrivals=[{"t": 0, "role": "llm", "jobs": 5}, {"t": 15, "role": "llm", "jobs": 2}],
        provider_blocked=[{"from": 15, "to": 40}],
    )
    outcome = simulate(subject, policy(name, subject))
    result = report(outcome)
    assert result.roles["llm"].queued_at_block == 3
    assert result.total.queued_at_block == 3
    assert result.as_dict()["queued_at_block"] == 3
    # Job 3 was refused at 20 s and started at 40 s, the end of the window.
    assert sorted(outcome.tallies["llm"].waits)[2] == 40.0


def test_only_provider_gated_roles_count_jobs_queued_at_a_block() -> None:
    raw = copy.deepcopy(PIPELINE)
    raw.update(duration_s=100, arrivals=[], provider_blocked=[{"from": 20, "to": 50}])
    raw["pool"]["roles"]["reconciler"]["minReplicas"] = 0
    raw["pool"]["roles"]["reconciler"]["maxReplicas"] = 0
    subject = parse_trace({**raw, "arrivals": [{"t": 1, "role": "reconciler", "jobs": 4}]})
    result = report(simulate(subject, policy("hpa", subject)))
    assert result.roles["reconciler"].pending_jobs == 4
    assert result.roles["reconciler"].queued_at_block == 0
    assert result.total.queued_at_block == 0


def test_pipeline_lead_option_sizes_downstream_roles_from_the_llm_completion_rate() -> None:
    """The operator passes no lead today (the default); ``lead=True`` measures what it would change.

    About 2 LLM jobs finish per second: over 2 s polling + 20 s pod start that is 44 reconciler
    jobs, 3 pods of 20, more than the reconciler's own queue ever asks for.
    """
    raw = copy.deepcopy(PIPELINE)
    raw.update(provider_blocked=[], arrivals=[{"t": t, "role": "llm", "jobs": 10} for t in range(0, 600, 5)])
    raw["pool"]["roles"]["llm"].update(maxReplicas=10)
    subject = parse_trace(raw)
    plain = simulate(subject, PiratePolicy(subject.roles, subject.chain), seed=2)
    lead = simulate(subject, PiratePolicy(subject.roles, subject.chain, lead=True), seed=2)
    assert max(replicas_between(plain, "reconciler", 0, 600)) < 3
    assert max(replicas_between(lead, "reconciler", 0, 600)) == 3
    assert report(lead).roles["llm"].worker_seconds == report(plain).roles["llm"].worker_seconds
