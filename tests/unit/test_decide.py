"""The scaling decision (DESIGN §7), number by number.

Each row of ``CASES`` pins one rule or one interaction of rules: the replicas decided and a fragment
of the reason a human reads in status. The time is fixed (``NOW``); memory is given explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pirate_operator.api import (
    Behavior,
    EffectiveRole,
    PolicyType,
    PoolSpec,
    ProviderName,
    ProviderSpec,
    QuotaSpec,
    Recommendation,
    RedisSpec,
    RoleMemory,
    RoleSpec,
    RoleStatus,
    ScaleDownRules,
    ScaleEvent,
    ScaleUpRules,
    ScalingPolicy,
    SelectPolicy,
    effective_role,
)
from pirate_operator.api.spec import DEFAULT_POD_START_SECONDS
from pirate_operator.scaling import Gate, RoleObservation, decide, pipeline_lead
from pirate_worker.contracts.provider_state import ProviderCondition, ProviderState

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
OK = ProviderState(condition=ProviderCondition.OK)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def quota_exceeded(retry_in: float = 3600) -> ProviderState:
    return ProviderState(condition=ProviderCondition.QUOTA_EXCEEDED, retry_at=ago(-retry_in), message="429")


def auth_failed() -> ProviderState:
    return ProviderState(condition=ProviderCondition.AUTH_FAILED, retry_at=ago(-600), message="401")


PROBING = ProviderState(condition=ProviderCondition.PROBING, retry_at=ago(5))


def pods(value: int, period: int = 15) -> ScalingPolicy:
    return ScalingPolicy(type=PolicyType.PODS, value=value, period_seconds=period)


def percent(value: int, period: int = 15) -> ScalingPolicy:
    return ScalingPolicy(type=PolicyType.PERCENT, value=value, period_seconds=period)


def role(
    name: str = "llm",
    *,
    up: ScaleUpRules | None = None,
    down: ScaleDownRules | None = None,
    quota: QuotaSpec | None = None,
    pod_start: int = DEFAULT_POD_START_SECONDS,
    **fields: Any,
) -> EffectiveRole:
    """A role resolved exactly as the operator resolves it from a pool."""
    pool = PoolSpec(
        image="ghcr.io/example/pirate-worker:0.1.0",
        redis=RedisSpec(url="redis://redis:6379/0"),
        provider=ProviderSpec(name=ProviderName.RULES),
        pod_start_seconds=pod_start,
        roles={name: RoleSpec(**fields)},
        quota=quota or QuotaSpec(),
        behavior=Behavior(scale_up=up or ScaleUpRules(), scale_down=down or ScaleDownRules()),
    )
    return effective_role(name, pool.roles[name], pool)


def recs(*pairs: tuple[float, int]) -> RoleMemory:
    """Memory holding recommendations given as (seconds ago, replicas)."""
    return RoleMemory(recommendations=tuple(Recommendation(time=ago(s), replicas=r) for s, r in pairs))


def events(*pairs: tuple[float, int]) -> RoleMemory:
    """Memory holding scale events given as (seconds ago, change)."""
    return RoleMemory(scale_events=tuple(ScaleEvent(time=ago(s), change=c) for s, c in pairs))


def gate_memory(closed: float | None = None, reopened: float | None = None) -> RoleMemory:
    """Memory of the provider gate: closed and reopened given as seconds ago."""
    return RoleMemory(
        gate_closed_since=None if closed is None else ago(closed),
        gate_reopened_at=None if reopened is None else ago(reopened),
    )


def queued(count: int, busy: int = 0) -> RoleObservation:
    return RoleObservation(queued=count, busy_workers=busy)


NO_WINDOW = ScaleDownRules(stabilization_window_seconds=0)
#: The HPA's own scale-down window, set explicitly (this operator's default is podStartSeconds).
HPA_WINDOW = ScaleDownRules(stabilization_window_seconds=300)


@dataclass(frozen=True)
class Case:
    id: str
    role: EffectiveRole
    observation: RoleObservation | None
    current: int
    want: int
    reason: str
    provider: ProviderState | None = None
    memory: RoleMemory = field(default_factory=RoleMemory)
    lead: int = 0
    gate: Gate | None = None


CASES = [
    # --- demand and raw replicas -------------------------------------------------------------
    Case("scale from zero", role(), queued(5), 0, 3, "demand 5 / target 2 per pod → 3"),
    Case(
        "demand = queued + dequeued + live in-flight + retries due, stale not counted",
        role(),
        RoleObservation(queued=3, dequeued_not_started=2, live_in_flight=4, retries_due=1, stale_in_flight=7),
        5,
        5,
        "demand 10 / target 2 per pod → 5",
    ),
    Case(
        "targetJobsPerWorker divides demand",
        role("reconciler", target_jobs_per_worker=4),
        queued(10),
        2,
        3,
        "demand 10 / target 4 per pod → 3",
    ),
    Case("capped at max", role(), queued(41), 10, 10, "demand 41 / target 2 per pod → 21, capped at max 10"),
    Case("no demand, nothing busy → 0", role(down=NO_WINDOW), queued(0), 3, 0, "no demand → 0"),
    # --- callsPerWorker: targetJobsPerWorker counts per call slot ------------------------------
    Case(
        "callsPerWorker multiplies a pod's capacity (2 workers x 4 calls x target 1)",
        role(calls_per_worker=4),
        queued(16),
        0,
        2,
        "demand 16 / target 8 per pod → 2",
    ),
    Case(
        "callsPerWorker and targetJobsPerWorker multiply",
        role(calls_per_worker=4, target_jobs_per_worker=2, max_replicas=20),
        queued(40),
        0,
        3,
        "demand 40 / target 16 per pod → 3",
    ),
    Case(
        "start-up horizon drains with every call slot (2 pods x 2 workers x 4 calls)",
        role(calls_per_worker=4, max_replicas=20),
        RoleObservation(queued=40, live_in_flight=16, busy_workers=4, mean_job_seconds=5.0),
        2,
        3,
        "16 call slots start ~32 of 40 waiting within the 10s a new pod needs (mean job 5.0s) → 3",
    ),
    Case(
        "drain floor counts busy processes, not calls (3 busy workers of 2 per pod → 2 pods)",
        role(calls_per_worker=4, down=NO_WINDOW),
        RoleObservation(live_in_flight=3, busy_workers=3),
        5,
        2,
        "demand 3 / target 8 per pod → 1, drain floor 2 (3 busy workers)",
    ),
    # --- started jobs of dead workers: one pod puts them back ----------------------------------
    Case(
        "a stale job keeps one pod, whose maintenance puts it back",
        role(down=NO_WINDOW),
        RoleObservation(stale_in_flight=1),
        2,
        1,
        "no demand → 0, 1 started job of dead workers to put back → 1",
    ),
    Case(
        "stale jobs start a pod from zero",
        role("reconciler"),
        RoleObservation(stale_in_flight=3),
        0,
        1,
        "3 started jobs of dead workers to put back → 1",
    ),
    Case(
        "stale jobs add nothing above real demand",
        role(),
        RoleObservation(queued=6, stale_in_flight=4),
        0,
        3,
        "demand 6 / target 2 per pod → 3",
    ),
    Case(
        "stale jobs respect maxReplicas 0",
        role("recorder", max_replicas=0),
        RoleObservation(stale_in_flight=2),
        0,
        0,
        "capped at max 0",
    ),
    # --- start-up horizon: pods only for jobs the running workers will not start in time -------
    Case(
        "start-up horizon: the running workers start the backlog before a new pod is ready",
        role(),
        RoleObservation(queued=10, live_in_flight=8, busy_workers=8, mean_job_seconds=5.0),
        4,
        4,
        "8 workers start ~16 of 10 waiting within the 10s a new pod needs (mean job 5.0s) → 4",
    ),
    Case(
        "start-up horizon: pods for the jobs left waiting when a new pod is ready",
        role(max_replicas=20),
        RoleObservation(queued=24, live_in_flight=8, busy_workers=8, mean_job_seconds=5.0),
        4,
        8,
        "8 workers start ~16 of 24 waiting within the 10s a new pod needs (mean job 5.0s) → 8",
    ),
    Case(
        "start-up horizon: dequeued and due retries wait too",
        role(max_replicas=20),
        RoleObservation(
            queued=6,
            dequeued_not_started=6,
            retries_due=6,
            live_in_flight=8,
            busy_workers=8,
            mean_job_seconds=5.0,
        ),
        4,
        5,
        "8 workers start ~16 of 18 waiting within the 10s a new pod needs (mean job 5.0s) → 5",
    ),
    Case(
        "start-up horizon: a slower pod start holds longer",
        role(max_replicas=20, pod_start=30),
        RoleObservation(queued=24, live_in_flight=8, busy_workers=8, mean_job_seconds=5.0),
        4,
        4,
        "8 workers start ~48 of 24 waiting within the 30s a new pod needs (mean job 5.0s) → 4",
    ),
    Case(
        "start-up horizon: mean job time unknown (no job run yet) → demand rule alone",
        role(),
        RoleObservation(queued=10, live_in_flight=8, busy_workers=8),
        4,
        8,
        "demand 18 / target 2 per pod → 9, scale-up rate limit → 8",
    ),
    Case(
        "start-up horizon: never from zero, nobody would start anything",
        role(),
        RoleObservation(queued=6, mean_job_seconds=0.1),
        0,
        3,
        "demand 6 / target 2 per pod → 3",
    ),
    Case(
        "start-up horizon: jobs far longer than a pod start hold nothing back",
        role(max_replicas=20),
        RoleObservation(queued=24, live_in_flight=8, busy_workers=8, mean_job_seconds=60.0),
        4,
        8,
        "demand 32 / target 2 per pod → 16, scale-up rate limit → 8",
    ),
    Case(
        "default scale-down window is podStartSeconds: inside it the recommendation holds",
        role(pod_start=30),
        queued(0),
        5,
        5,
        "scale-down stabilization (30s) holds 5",
        memory=recs((20, 5)),
    ),
    Case(
        "default scale-down window is podStartSeconds: after it the pods go",
        role(pod_start=30),
        queued(0),
        5,
        0,
        "no demand → 0",
        memory=recs((40, 5)),
    ),
    # --- activation ----------------------------------------------------------------------------
    Case("activation: demand at threshold → 0", role(activation_jobs=5), queued(5), 0, 0, "≤ activation 5"),
    Case(
        "activation: demand above threshold", role(activation_jobs=5), queued(6), 0, 3, "demand 6 / target 2"
    ),
    Case(
        "activation ignored while a worker is busy",
        role(activation_jobs=5, down=NO_WINDOW),
        RoleObservation(live_in_flight=2, busy_workers=2),
        2,
        1,
        "demand 2 / target 2 per pod → 1",
    ),
    # --- tolerance -----------------------------------------------------------------------------
    Case(
        "tolerance: 11 jobs for 10 pods keeps 10",
        role("reconciler", max_replicas=20),
        queued(11),
        10,
        10,
        "within 10% tolerance, keep 10",
    ),
    Case(
        "tolerance: 9 jobs for 10 pods keeps 10",
        role("reconciler", max_replicas=20, down=NO_WINDOW),
        queued(9),
        10,
        10,
        "within 10% tolerance",
    ),
    Case("tolerance: 12 for 10 pods scales", role("reconciler", max_replicas=20), queued(12), 10, 12, "→ 12"),
    Case(
        "tolerance never holds small counts",
        role("reconciler"),
        queued(2),
        1,
        2,
        "demand 2 / target 1 per pod",
    ),
    Case(
        "tolerance never holds a scale to zero",
        role("reconciler", max_replicas=20, down=NO_WINDOW),
        queued(0),
        10,
        0,
        "no demand → 0",
    ),
    # --- bounds --------------------------------------------------------------------------------
    Case("current above max → max", role(), queued(100), 15, 10, "current 15 above max 10 → 10"),
    Case("current below min → min", role(min_replicas=3), queued(0), 1, 3, "current 1 below min 3 → 3"),
    Case("scale-down stops at min", role(min_replicas=2, down=NO_WINDOW), queued(0), 4, 2, "raised to min 2"),
    Case("maxReplicas 0 disables a role", role(max_replicas=0), queued(10), 0, 0, "capped at max 0"),
    # --- scale-up rate policies ----------------------------------------------------------------
    Case(
        "Pods policy limits scale-up (Max of Pods 4, Percent 100)",
        role(max_replicas=30),
        queued(40),
        2,
        6,
        "scale-up rate limit → 6",
    ),
    Case("Percent policy wins at larger counts", role(max_replicas=30), queued(60), 8, 16, "rate limit → 16"),
    Case(
        "selectPolicy Min picks the smaller change",
        role(max_replicas=30, up=ScaleUpRules(select_policy=SelectPolicy.MIN)),
        queued(60),
        8,
        12,
        "rate limit → 12",
    ),
    Case(
        "scale-up Disabled",
        role(up=ScaleUpRules(select_policy=SelectPolicy.DISABLED)),
        queued(20),
        2,
        2,
        "scale-up disabled, keep 2",
    ),
    Case(
        "recent scale-up counts against the period",
        role(max_replicas=30),
        queued(60),
        6,
        6,
        "rate limit → 6",
        memory=events((10, 4)),
    ),
    Case(
        "scale-ups older than the period are forgotten",
        role(max_replicas=30),
        queued(60),
        6,
        12,
        "rate limit → 12",
        memory=events((20, 4)),
    ),
    Case(
        "Percent-only policy still scales from zero, one pod",
        role(up=ScaleUpRules(policies=(percent(100),))),
        queued(10),
        0,
        1,
        "rate limit → 1",
    ),
    # --- scale-down rate policies --------------------------------------------------------------
    Case(
        "Pods policy limits scale-down",
        role(down=ScaleDownRules(stabilization_window_seconds=0, policies=(pods(1, 60),))),
        queued(0),
        5,
        4,
        "scale-down rate limit → 4",
    ),
    Case(
        "Percent policy scale-down rounds down",
        role(down=ScaleDownRules(stabilization_window_seconds=0, policies=(percent(50, 60),))),
        queued(0),
        5,
        2,
        "scale-down rate limit → 2",
    ),
    Case(
        "scale-down selectPolicy Max takes the larger change",
        role(down=ScaleDownRules(stabilization_window_seconds=0, policies=(pods(1, 60), percent(50, 60)))),
        queued(0),
        5,
        2,
        "rate limit → 2",
    ),
    Case(
        "scale-down selectPolicy Min takes the smaller change",
        role(
            down=ScaleDownRules(
                stabilization_window_seconds=0,
                select_policy=SelectPolicy.MIN,
                policies=(pods(1, 60), percent(50, 60)),
            )
        ),
        queued(0),
        5,
        4,
        "rate limit → 4",
    ),
    Case(
        "recent scale-down counts against the period",
        role(down=ScaleDownRules(stabilization_window_seconds=0, policies=(pods(2, 60),))),
        queued(0),
        4,
        4,
        "rate limit → 4",
        memory=events((30, -2)),
    ),
    Case(
        "scale-down Disabled",
        role(down=ScaleDownRules(stabilization_window_seconds=0, select_policy=SelectPolicy.DISABLED)),
        queued(0),
        5,
        5,
        "scale-down disabled, keep 5",
    ),
    # --- stabilization -------------------------------------------------------------------------
    Case(
        "scale-down window holds the highest recent recommendation",
        role(down=HPA_WINDOW),
        queued(0),
        5,
        5,
        "scale-down stabilization (300s) holds 5",
        memory=recs((100, 5)),
    ),
    Case(
        "scale-down window: the max in the window, not the latest",
        role(down=HPA_WINDOW),
        queued(4),
        10,
        6,
        "scale-down stabilization (300s) holds 6",
        memory=recs((200, 6), (50, 4)),
    ),
    Case(
        "recommendations outside the window expire",
        role(),
        queued(0),
        5,
        0,
        "no demand → 0",
        memory=recs((301, 5)),
    ),
    Case(
        "scale-up window holds the lowest recent recommendation",
        role(up=ScaleUpRules(stabilization_window_seconds=60)),
        queued(16),
        2,
        3,
        "scale-up stabilization (60s) holds 3",
        memory=recs((30, 3)),
    ),
    Case(
        "scale-up window then rate limit",
        role(max_replicas=30, up=ScaleUpRules(stabilization_window_seconds=60)),
        queued(60),
        2,
        6,
        "holds 20, scale-up rate limit → 6",
        memory=recs((30, 20)),
    ),
    # --- drain floor ---------------------------------------------------------------------------
    Case(
        "drain floor keeps pods of busy workers",
        role(target_jobs_per_worker=4, down=NO_WINDOW),
        RoleObservation(live_in_flight=5, busy_workers=5),
        4,
        3,
        "→ 1, drain floor 3 (5 busy workers)",
    ),
    Case(
        "drain floor holds at most the current pods, never adds any",
        role(workers_per_pod=1),
        RoleObservation(live_in_flight=6, busy_workers=6),
        2,
        2,
        "capped at 0, drain floor 2 (6 busy workers)",
        provider=quota_exceeded(),
    ),
    Case(
        "drain floor wins over a lowered maxReplicas",
        role(max_replicas=3),
        RoleObservation(live_in_flight=10, busy_workers=10),
        6,
        5,
        "current 6 above max 3 → 3, drain floor 5 (10 busy workers)",
    ),
    # --- provider gate -------------------------------------------------------------------------
    Case(
        "quota blocked caps at replicasWhenBlocked",
        role(),
        queued(20),
        4,
        0,
        "provider quota_exceeded until 2025-01-01T13:00:00Z → capped at 0",
        provider=quota_exceeded(),
        gate=Gate.BLOCKED,
    ),
    Case(
        "blocked with busy workers: the drain floor wins over the gate",
        role(),
        RoleObservation(queued=20, live_in_flight=3, busy_workers=3),
        4,
        2,
        "capped at 0, drain floor 2 (3 busy workers)",
        provider=quota_exceeded(),
    ),
    Case("auth failure blocks too", role(), queued(20), 4, 0, "provider auth_failed", provider=auth_failed()),
    Case(
        "replicasWhenBlocked above zero",
        role(quota=QuotaSpec(replicas_when_blocked=1, probe_replicas=2)),
        queued(20),
        4,
        1,
        "capped at 1",
        provider=quota_exceeded(),
    ),
    Case(
        "blocked gate wins over minReplicas",
        role(min_replicas=2),
        queued(20),
        2,
        0,
        "capped at 0",
        provider=quota_exceeded(),
    ),
    Case(
        "probing allows probeReplicas",
        role(),
        queued(20),
        0,
        1,
        "provider probing (retry time passed, no success yet) → capped at 1",
        provider=PROBING,
        gate=Gate.PROBING,
    ),
    Case(
        "a block whose retry_at passed is probing",
        role(),
        queued(20),
        0,
        1,
        "probing",
        provider=quota_exceeded(retry_in=-1),
        gate=Gate.PROBING,
    ),
    Case("probing without demand stays at zero", role(), queued(0), 0, 0, "no demand → 0", provider=PROBING),
    Case(
        "open gate with no block remembered: rate limited as usual",
        role(),
        queued(20),
        1,
        5,
        "scale-up rate limit → 5",
        gate=Gate.OPEN,
    ),
    Case(
        "ungated roles ignore the provider",
        role("reconciler"),
        queued(3),
        1,
        3,
        "demand 3 / target 1 per pod → 3",
        provider=quota_exceeded(),
        gate=Gate.UNGATED,
    ),
    # --- recovery from a quota block: prepare before retry_at ----------------------------------
    Case(
        "quota block: from retry_at - (pod start 10 s + polling 2 s) the target starts, unthrottled",
        role(),
        queued(20),
        0,
        10,
        "provider retry due within 12s: scale-up rate limit (4) waived, "
        "provider quota_exceeded until 2025-01-01T12:00:12Z → preparing 10 for the retry time",
        provider=quota_exceeded(retry_in=12),
        gate=Gate.BLOCKED,
    ),
    Case(
        "quota block: one second before the prepare window, still capped",
        role(),
        queued(20),
        0,
        0,
        "provider quota_exceeded until 2025-01-01T12:00:13Z → capped at 0",
        provider=quota_exceeded(retry_in=13),
    ),
    Case(
        "prepare window follows the pod start time",
        role(pod_start=30),
        queued(20),
        0,
        10,
        "provider retry due within 32s",
        provider=quota_exceeded(retry_in=30),
    ),
    Case(
        "prepare still stops at maxReplicas",
        role(),
        queued(100),
        0,
        10,
        "capped at max 10, provider quota_exceeded until 2025-01-01T12:00:05Z → preparing 10",
        provider=quota_exceeded(retry_in=5),
    ),
    Case(
        "a quota block shorter than the prepare lead never scales the role down",
        role(),
        queued(12),
        6,
        6,
        "provider quota_exceeded until 2025-01-01T12:00:05Z → preparing 6",
        provider=quota_exceeded(retry_in=5),
    ),
    Case(
        "auth failures never prepare: they end when the key is fixed, not at retry_at",
        role(),
        queued(20),
        0,
        0,
        "provider auth_failed until 2025-01-01T12:00:05Z → capped at 0",
        provider=ProviderState(condition=ProviderCondition.AUTH_FAILED, retry_at=ago(-5), message="401"),
    ),
    Case(
        "probing keeps the pods prepared for it and adds none",
        role(),
        queued(20),
        4,
        4,
        "provider probing (retry time passed, no success yet) → capped at 4 (keeps the 4 started, adds none)",
        provider=PROBING,
        gate=Gate.PROBING,
    ),
    Case(
        "probing keeps pods only while demand needs them",
        role(down=NO_WINDOW),
        queued(4),
        10,
        2,
        "demand 4 / target 2 per pod → 2",
        provider=PROBING,
    ),
    # --- recovery from a quota block: no scale-up rate limit right after the gate reopens -------
    Case(
        "gate reopens (closed in memory, provider ok): no scale-up rate limit",
        role(),
        queued(20),
        1,
        10,
        "provider gate reopened 0s ago (< 15s): scale-up rate limit (5) waived",
        memory=gate_memory(closed=60),
        gate=Gate.OPEN,
    ),
    Case(
        "reopened within one scale-up period (memory from status): still unthrottled",
        role(max_replicas=30),
        queued(60),
        5,
        30,
        "demand 60 / target 2 per pod → 30, provider gate reopened 14s ago (< 15s): "
        "scale-up rate limit (10) waived",
        memory=gate_memory(reopened=14),
    ),
    Case(
        "reopened one scale-up period ago: rate limited again",
        role(max_replicas=30),
        queued(60),
        5,
        10,
        "scale-up rate limit → 10",
        memory=gate_memory(reopened=15),
    ),
    Case(
        "the period is the longest scale-up policy's",
        role(max_replicas=30, up=ScaleUpRules(policies=(pods(4, 15), pods(2, 60)))),
        queued(60),
        5,
        30,
        "provider gate reopened 30s ago (< 60s)",
        memory=gate_memory(reopened=30),
    ),
    Case(
        "scale-up Disabled stays disabled after a reopen",
        role(up=ScaleUpRules(select_policy=SelectPolicy.DISABLED)),
        queued(20),
        2,
        2,
        "scale-up disabled, keep 2",
        memory=gate_memory(closed=60),
    ),
    Case(
        "ungated roles have no reopen",
        role("reconciler", max_replicas=30),
        queued(60),
        5,
        10,
        "scale-up rate limit → 10",
        memory=gate_memory(reopened=1),
        gate=Gate.UNGATED,
    ),
    # --- fallback ------------------------------------------------------------------------------
    Case(
        "missing Redis data holds the current replicas",
        role(),
        None,
        3,
        3,
        "no queue data from Redis: holding 3 replicas (fallback)",
    ),
    Case(
        "missing data never scales to zero",
        role(min_replicas=0),
        None,
        2,
        2,
        "holding 2",
        provider=quota_exceeded(),
    ),
    # --- pipeline lead and custom roles --------------------------------------------------------
    Case(
        "pipeline lead warms a downstream role",
        role("reconciler"),
        queued(0),
        0,
        2,
        "pipeline lead 2",
        lead=2,
    ),
    Case(
        "custom role defaults: one worker per pod, max 5",
        role("bulk", queues=("default", "high")),
        queued(100),
        5,
        5,
        "demand 100 / target 1 per pod → 100, capped at max 5",
    ),
    Case(
        "custom role gated by choice",
        role("llm-batch", queues=("llm-batch",), gated_by_provider=True),
        queued(10),
        3,
        0,
        "capped at 0",
        provider=quota_exceeded(),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_decision_table(case: Case) -> None:
    decision = decide(
        case.role,
        case.memory,
        case.observation,
        case.provider or OK,
        NOW,
        current_replicas=case.current,
        lead=case.lead,
    )
    assert decision.desired_replicas == case.want, decision.reason
    assert case.reason in decision.reason
    assert "\n" not in decision.reason
    assert decision.changed == (case.want != case.current)
    assert decision.fallback == (case.observation is None)
    if case.gate is not None:
        assert decision.gate == case.gate


def test_table_is_wide_enough() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


def test_memory_records_recommendation_event_and_times() -> None:
    memory = recs((100, 2))
    decision = decide(role(), memory, queued(12, busy=1), OK, NOW, current_replicas=2)
    assert decision.desired_replicas == 6
    assert decision.recommendation == 6
    assert decision.demand == 12
    assert decision.memory.recommendations == (Recommendation(time=NOW, replicas=6),)
    assert decision.memory.scale_events == (ScaleEvent(time=NOW, change=4),)
    assert decision.memory.last_scale_time == NOW
    assert decision.memory.last_active_time == NOW
    assert decision.memory_changed


def test_fallback_changes_no_memory() -> None:
    memory = recs((10, 4))
    decision = decide(role(), memory, None, OK, NOW, current_replicas=4)
    assert decision.memory == memory
    assert not decision.memory_changed
    assert decision.demand is None


def test_steady_demand_keeps_one_recommendation() -> None:
    """Dominated recommendations are dropped, so a steady pool writes no growing status."""
    memory, current = RoleMemory(), 3
    for tick in range(50):
        decision = decide(
            role(), memory, queued(6), OK, NOW + timedelta(seconds=2 * tick), current_replicas=current
        )
        memory, current = decision.memory, decision.desired_replicas
    assert current == 3
    assert len(memory.recommendations) == 1
    assert memory.scale_events == ()


def test_idle_role_with_default_behaviour_stores_nothing() -> None:
    decision = decide(role(), RoleMemory(), queued(0), OK, NOW, current_replicas=0)
    assert decision.memory == RoleMemory()
    assert not decision.memory_changed


def test_scale_down_waits_for_the_window_then_drops() -> None:
    """A burst then silence: replicas stay for 300 s after the last high recommendation."""
    memory = RoleMemory()
    timeline: dict[int, int] = {}
    current = 0
    for second in range(0, 330, 2):
        demand = 10 if second < 20 else 0
        decision = decide(
            role(down=HPA_WINDOW),
            memory,
            queued(demand),
            OK,
            NOW + timedelta(seconds=second),
            current_replicas=current,
        )
        memory, current = decision.memory, decision.desired_replicas
        timeline[second] = current
    assert timeline[0] == 4  # rate limit: 4 pods per 15 s from zero
    assert timeline[16] == 5  # the next period allows the rest
    assert timeline[316] == 5  # the last high recommendation (18 s) is still inside the window
    assert timeline[318] == 0  # exactly 300 s old: out (the HPA compares strictly too)


def test_memory_survives_a_status_round_trip() -> None:
    """A restart reads memory back from status: the next decision must be the same."""
    memory = RoleMemory(
        recommendations=(Recommendation(time=ago(100), replicas=7),),
        scale_events=(ScaleEvent(time=ago(5), change=3),),
        last_scale_time=ago(5),
    )
    status = RoleStatus(replicas=7, **memory.model_dump())
    stored = RoleStatus.model_validate_json(status.model_dump_json(by_alias=True))
    before = decide(role(down=HPA_WINDOW), memory, queued(2), OK, NOW, current_replicas=7)
    after = decide(role(down=HPA_WINDOW), stored.memory(), queued(2), OK, NOW, current_replicas=7)
    assert after == before
    assert before.desired_replicas == 7


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(role(), RoleMemory(), queued(1), OK, datetime(2025, 1, 1), current_replicas=0)


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="queued"):
        RoleObservation(queued=-1)


@pytest.mark.parametrize(
    ("rate", "fields", "want"),
    [
        (0.0, {}, 0),
        (float("nan"), {}, 0),
        (-1.0, {}, 0),
        (0.01, {}, 1),  # any completion at all: one warm pod
        (0.25, {}, 3),  # 0.25 /s x (2 s polling + 10 s start) = 3 jobs, 1 per pod
        (0.5, {"workers_per_pod": 2, "target_jobs_per_worker": 2}, 2),
        (10.0, {}, 5),  # capped at the reconciler's max
    ],
)
def test_pipeline_lead(rate: float, fields: dict[str, Any], want: int) -> None:
    assert pipeline_lead(rate, role("reconciler", **fields)) == want
