"""The decision (DESIGN §7): replicas for one role from demand, provider state and memory.

Pure and deterministic: the same code runs in the operator, the local mode and the simulator, and
``now`` is always an argument. Steps, in order:

1. **Demand** = queued + dequeued-not-started + live in-flight + retries due.
2. **Raw** = ceil(demand / capacity per pod), capacity = targetJobsPerWorker x workersPerPod x
   callsPerWorker (``targetJobsPerWorker`` counts per call slot); 0 when demand <= activationJobs
   and no worker is busy. **Start-up horizon** (this project's amendment to DESIGN §7): above the
   current replicas, and once the role's mean job time ``S`` is known (its workers' rq statistics),
   pods are added only for the jobs the current workers will not have started by the time a new
   pod is ready: ``waiting - slots x podStartSeconds / S`` jobs left (slots = workers x
   callsPerWorker, waiting = queued + dequeued-not-started + retries due), ``ceil(left / capacity
   per pod)`` pods at most. A pod started for a burst the running workers clear first only costs
   its start and idles. A pipeline ``lead`` (see :mod:`.pipeline`) raises the result.
3. **Tolerance** (the HPA's 0.1): keep the current replicas when demand per current pod is within
   10 % of the target. The ratio is demand / (current x capacity per pod), compared exactly (no
   floats, so 11 jobs for 10 pods is "within"). It never applies from or to zero, and with fewer
   than 10 pods one pod is already a change above 10 %, so it only damps flapping at scale.
4. **Bounds, stabilization, rate policies**: the HPA's order and semantics; the scale-down window
   defaults to ``podStartSeconds`` instead of the HPA's 300 s (see
   :class:`~pirate_operator.api.spec.Behavior`). A current count outside
   ``[minReplicas, maxReplicas]`` moves straight to the bound; otherwise the recommendation is
   stabilized over the windows, then limited by the rate policies and the bounds. The scale-up
   rate limit is waived while a gated role prepares for the end of a quota block and for one
   scale-up period after its gate reopens (see :mod:`.recovery`).
5. **Provider gate** (gated roles): blocked caps at ``replicasWhenBlocked`` until the last
   ``podStartSeconds + pollingIntervalSeconds`` before a quota block's ``retry_at``, where it lets the
   target through (pods ready at ``retry_at``; workers never call before it). Probing caps at
   ``probeReplicas`` but keeps pods already running (they wait for the one probe, burning no
   quota): it adds none. The gate applies after stabilization and rate limits, at once: waiting
   out a 300 s window while every call is refused only burns quota. It wins over
   ``minReplicas``. The recorded recommendation is the ungated one, so the memory reflects
   demand, not the outage.
6. **Provider rate limit** (gated roles, this project's amendment, see :mod:`.provider_cap`): with a
   fresh budget from the workers, at most ``ceil(slots / (workersPerPod x callsPerWorker))`` pods,
   the fewest call slots that keep the provider's tightest limit busy 98 % of the time; raised to
   ``minReplicas``, never above ``maxReplicas``. It applies at once, like the gate, and the
   recorded recommendation stays the uncapped one.
7. **Drain floor**: never fewer than ceil(busy workers / workersPerPod), capped at the current
   replicas (it holds pods, it never adds any). It comes last and wins over the gate and over
   ``maxReplicas``: scale-in must never kill a busy worker, so a blocked provider shrinks the
   role as its jobs finish.

Missing Redis data (``observation is None``) holds the current replicas and changes no memory.

``paused`` and ``dryRun`` are the caller's business: a paused pool is not decided at all; in a dry
run the caller reports the decision but keeps the previous ``scale_events`` and
``last_scale_time``, since nothing was scaled. Store ``Decision.memory`` only once the replicas
were applied: the rate policies count the changes it records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from math import ceil, isfinite
from typing import Final

from pirate_operator.api.roles import EffectiveRole
from pirate_operator.api.spec import Behavior, SelectPolicy
from pirate_operator.api.status import RoleMemory
from pirate_operator.scaling.behavior import (
    record_scale,
    remember,
    scale_down_limit,
    scale_up_limit,
    stabilize,
)
from pirate_operator.scaling.observation import Gate, RoleObservation, provider_gate
from pirate_operator.scaling.provider_cap import ProviderCap, provider_cap
from pirate_operator.scaling.recovery import prepare_lead_seconds, preparing, reopen_waiver, track_gate
from pirate_worker.contracts.provider_state import ProviderState
from pirate_worker.contracts.rate_budget import Budget

#: The HPA's default tolerance: changes of demand per pod within 10 % are ignored.
TOLERANCE: Final = Fraction(1, 10)


@dataclass(frozen=True)
class Decision:
    """What to do with one role, why, and the memory to store for the next decision."""

    desired_replicas: int
    current_replicas: int
    reason: str
    memory: RoleMemory
    gate: Gate
    #: True when Redis data was missing and the current replicas were held.
    fallback: bool = False
    #: Demand that was counted (None on fallback).
    demand: int | None = None
    #: The demand-based recommendation before stabilization, limits and the gate (None on fallback).
    recommendation: int | None = None
    #: Whether ``memory`` differs from the memory the decision started from (status must be written).
    memory_changed: bool = False
    #: The provider rate-limit cap of a gated role with a fresh budget (None otherwise).
    provider_cap: ProviderCap | None = None
    #: Whether that cap lowered the replicas this decision (condition ``ProviderLimited``).
    provider_limited: bool = False

    @property
    def changed(self) -> bool:
        """Whether the replicas change: one Event and one counter bump, else nothing is written."""
        return self.desired_replicas != self.current_replicas


def decide(
    role: EffectiveRole,
    memory: RoleMemory,
    observation: RoleObservation | None,
    provider: ProviderState,
    now: datetime,
    *,
    current_replicas: int,
    lead: int = 0,
    budget: Budget | None = None,
) -> Decision:
    """Decide the replicas of ``role`` at ``now`` (a timezone-aware time), following DESIGN §7.

    ``current_replicas`` is what the role's Deployment (or local process group) has now; ``lead``
    is a minimum demanded by the pipeline ahead (0 for the first stage). How long a new pod takes
    to take jobs is the role's ``pod_start_seconds``. ``budget`` is the provider's rate-limit
    budget as read from Redis (None when there is none).
    """
    if now.tzinfo is None:
        raise ValueError("decide() needs a timezone-aware now")
    if current_replicas < 0 or lead < 0:
        raise ValueError("current_replicas and lead must be >= 0")
    gate = provider_gate(role.gated_by_provider, provider, now)
    if observation is None:
        return Decision(
            desired_replicas=current_replicas,
            current_replicas=current_replicas,
            reason=f"no queue data from Redis: holding {current_replicas} replicas (fallback)",
            memory=memory,
            gate=gate,
            fallback=True,
        )
    steps: list[str] = []
    gate_memory = track_gate(gate, memory, now)
    lead_seconds = prepare_lead_seconds(role)
    prepare = preparing(gate, provider, now, lead_seconds)
    waiver = (
        f"provider retry due within {lead_seconds:g}s"
        if prepare
        else reopen_waiver(role, gate, gate_memory.reopened_at, now)
    )
    recommendation = _recommend(role, observation, current_replicas, lead, steps)
    behavior = role.scaling_behavior
    target = _normalize(role, behavior, recommendation, current_replicas, memory, now, steps, waiver)
    target = _apply_gate(role, gate, provider, target, current_replicas, prepare, steps)
    cap = provider_cap(role, budget, now)
    capped = _apply_provider_cap(role, cap, target, steps)
    limited, target = capped < target, capped
    target = _apply_drain_floor(role, observation.busy_workers, current_replicas, target, steps)
    up, down = behavior.scale_up, behavior.scale_down
    active = observation.demand > role.activation_jobs or observation.busy_workers > 0
    new_memory = RoleMemory(
        recommendations=remember(memory.recommendations, recommendation, now, up, down),
        scale_events=record_scale(memory.scale_events, target - current_replicas, now, up, down),
        last_scale_time=now if target != current_replicas else memory.last_scale_time,
        last_active_time=now if active else memory.last_active_time,
        gate_closed_since=gate_memory.closed_since,
        gate_reopened_at=gate_memory.reopened_at,
    )
    return Decision(
        desired_replicas=target,
        current_replicas=current_replicas,
        reason=", ".join(steps),
        memory=new_memory,
        gate=gate,
        demand=observation.demand,
        recommendation=recommendation,
        memory_changed=new_memory != memory,
        provider_cap=cap,
        provider_limited=limited,
    )


def _recommend(
    role: EffectiveRole, observation: RoleObservation, current: int, lead: int, steps: list[str]
) -> int:
    """Steps 1-3: demand, raw replicas, pipeline lead, tolerance."""
    demand, busy, capacity = observation.demand, observation.busy_workers, role.capacity_per_pod
    if demand <= role.activation_jobs and busy == 0:
        need = Fraction(0)
        if demand == 0:
            steps.append("no demand → 0")
        else:
            steps.append(f"demand {demand} ≤ activation {role.activation_jobs}, no worker busy → 0")
    else:
        need = Fraction(demand, capacity)
        steps.append(f"demand {demand} / target {capacity} per pod → {_ceil(need)}")
        need = _start_up_horizon(role, observation, current, need, steps)
    if lead > need:
        need = Fraction(lead)
        steps.append(f"pipeline lead {lead}")
    stale = observation.stale_in_flight
    if stale and need < 1:
        # A started job whose worker died (its heartbeat expired) is put back on its queue by
        # RQ's maintenance, which only a running worker of the queue performs: keep one.
        need = Fraction(1)
        plural = "s" if stale != 1 else ""
        steps.append(f"{stale} started job{plural} of dead workers to put back → 1")
    recommendation = _ceil(need)
    if current > 0 and need > 0 and recommendation != current and abs(need / current - 1) <= TOLERANCE:
        steps.append(f"within {_percent(TOLERANCE)} tolerance, keep {current}")
        return current
    return recommendation


def _start_up_horizon(
    role: EffectiveRole, observation: RoleObservation, current: int, need: Fraction, steps: list[str]
) -> Fraction:
    """Step 2b: add pods only for the jobs the current workers will not have started in time.

    Applies above the current replicas (never from 0: nobody would start anything) and only with a
    known mean job time; otherwise ``need`` is returned as it is.
    """
    seconds = observation.mean_job_seconds
    if current == 0 or _ceil(need) <= current or seconds is None or not (isfinite(seconds) and seconds > 0):
        return need
    waiting = observation.queued + observation.dequeued_not_started + observation.retries_due
    slots = current * role.slots_per_pod
    started = slots * role.pod_start_seconds / seconds
    allowed = current + max(0, ceil((waiting - started) / role.capacity_per_pod))
    if allowed >= _ceil(need):
        return need
    plural = "s" if slots != 1 else ""
    unit = "call slot" if role.calls_per_worker > 1 else "worker"
    steps.append(
        f"{slots} {unit}{plural} start ~{started:.0f} of {waiting} waiting within the "
        f"{role.pod_start_seconds}s a new pod needs (mean job {seconds:.1f}s) → {allowed}"
    )
    return Fraction(allowed)


def _normalize(
    role: EffectiveRole,
    behavior: Behavior,
    recommendation: int,
    current: int,
    memory: RoleMemory,
    now: datetime,
    steps: list[str],
    waiver: str | None = None,
) -> int:
    """Step 4: bounds, stabilization windows and rate policies, the HPA's way.

    ``waiver`` (why, or None) lifts the scale-up rate limit; the bounds and windows still apply.
    """
    low, high = role.min_replicas, role.max_replicas
    if current > high:
        steps.append(f"current {current} above max {high} → {high}")
        return high
    if current < low:
        steps.append(f"current {current} below min {low} → {low}")
        return low
    up, down = behavior.scale_up, behavior.scale_down
    stabilized = stabilize(recommendation, current, memory.recommendations, up, down, now)
    wanted = stabilized.replicas
    if stabilized.held_by:
        steps.append(f"{stabilized.held_by} stabilization ({stabilized.window_seconds}s) holds {wanted}")
    if wanted > current:
        if up.select_policy == SelectPolicy.DISABLED:
            steps.append(f"scale-up disabled, keep {current}")
            return current
        limit = scale_up_limit(current, memory.scale_events, up, now)
        if waiver is not None and limit < min(high, wanted):
            steps.append(f"{waiver}: scale-up rate limit ({limit}) waived")
            limit = high
        if wanted > min(high, limit):
            steps.append(f"capped at max {high}" if high <= limit else f"scale-up rate limit → {limit}")
            return min(high, limit)
    elif wanted < current:
        if down.select_policy == SelectPolicy.DISABLED:
            steps.append(f"scale-down disabled, keep {current}")
            return current
        limit = scale_down_limit(current, memory.scale_events, down, now)
        if wanted < max(low, limit):
            steps.append(f"raised to min {low}" if low >= limit else f"scale-down rate limit → {limit}")
            return max(low, limit)
    return wanted


def _apply_gate(
    role: EffectiveRole,
    gate: Gate,
    provider: ProviderState,
    target: int,
    current: int,
    prepare: bool,
    steps: list[str],
) -> int:
    """Step 5: cap provider-gated roles while the provider is blocked or being probed."""
    if gate == Gate.BLOCKED:
        cap = role.quota.replicas_when_blocked
        if target > cap:
            until = f" until {_utc(provider.retry_at)}" if provider.retry_at else ""
            if prepare:
                steps.append(f"provider {provider.condition}{until} → preparing {target} for the retry time")
                return target
            steps.append(f"provider {provider.condition}{until} → capped at {cap}")
            return cap
    elif gate == Gate.PROBING:
        probe = role.quota.probe_replicas
        cap = max(probe, min(target, current))
        if target > cap:
            kept = f" (keeps the {current} started, adds none)" if cap > probe else ""
            steps.append(f"provider probing (retry time passed, no success yet) → capped at {cap}{kept}")
            return cap
    return target


def _apply_provider_cap(role: EffectiveRole, cap: ProviderCap | None, target: int, steps: list[str]) -> int:
    """Step 6: no more pods than the provider's rate limit keeps busy (within the role's bounds)."""
    if cap is None:
        return target
    bound = min(max(cap.replicas, role.min_replicas), role.max_replicas)
    if target > bound:
        steps.append(f"{cap.describe()} → capped at {bound}")
        return bound
    return target


def _apply_drain_floor(role: EffectiveRole, busy: int, current: int, target: int, steps: list[str]) -> int:
    """Step 7: never scale in below the pods busy workers occupy."""
    floor = min(-(-busy // role.workers_per_pod), current)
    if floor > target:
        steps.append(f"drain floor {floor} ({busy} busy worker{'s' if busy != 1 else ''})")
        return floor
    return target


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _percent(value: Fraction) -> str:
    return f"{float(value * 100):g}%"


def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)
