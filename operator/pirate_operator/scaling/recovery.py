"""Recovery from a provider outage: pods ready at ``retry_at``, and no ramp for the backlog after it.

Two rules for provider-gated roles, both relaxing the gate of DESIGN §7.4 where holding back only
costs time:

* **Prepare.** While a *quota* block is in force, from ``retry_at - (pod start + polling interval)``
  on the gate lets the role's target through (no scale-up rate limit either): the pods are ready
  when the block ends instead of starting then. This burns no quota: every worker's own gate keeps
  it from calling the provider before ``retry_at``, and after it one worker probes under a
  fleet-wide lock while the others wait; probing therefore keeps the pods already started (it
  still adds none beyond ``probeReplicas``). The cost is idle worker-seconds: the target for about
  one lead (12 s by default) per retry plus the probe's duration, since a failed probe writes a
  new block and the next decision removes the idle pods again. The whole target rather than a
  part of it: a smaller cap brings back the ramp this removes (every pod added after ``retry_at``
  pays a pod start while the backlog waits), for a saving of a few pod-seconds per outage. Auth
  failures never prepare: they end when someone fixes the key, not at ``retry_at``, which is only
  the time of the next check.
* **Reopen.** For one scale-up period (the longest of the scale-up policies) after the gate of a
  role reopens (blocked or probing → open), scale-up is not rate limited: the queue an outage
  leaves behind is demand that was real all along, not a spike the rate limit should smooth.
  When the gate reopened is memory (``RoleMemory.gate_closed_since`` / ``gate_reopened_at``), kept
  in status, so an operator restart in the middle of an outage changes nothing.

The pod start time is the pool's ``podStartSeconds`` (default 10 s), so the operator and the local
mode prepare 12 s ahead with the default 2 s polling interval; the simulator sets it to the
trace's ``pod_start_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pirate_operator.api.roles import EffectiveRole
from pirate_operator.api.status import RoleMemory
from pirate_operator.scaling.observation import Gate
from pirate_worker.contracts.provider_state import ProviderCondition, ProviderState


@dataclass(frozen=True)
class GateMemory:
    """The gate part of a role's memory after one decision."""

    closed_since: datetime | None
    reopened_at: datetime | None


def track_gate(gate: Gate, memory: RoleMemory, now: datetime) -> GateMemory:
    """Remember when the gate closed and when it reopened (ungated roles remember nothing new)."""
    if gate in (Gate.BLOCKED, Gate.PROBING):
        return GateMemory(memory.gate_closed_since or now, memory.gate_reopened_at)
    if gate == Gate.OPEN and memory.gate_closed_since is not None:
        return GateMemory(None, now)
    return GateMemory(memory.gate_closed_since, memory.gate_reopened_at)


def prepare_lead_seconds(role: EffectiveRole) -> float:
    """How long before ``retry_at`` a quota-blocked role starts its pods."""
    return float(role.pod_start_seconds + role.polling_interval_seconds)


def preparing(gate: Gate, provider: ProviderState, now: datetime, lead_seconds: float) -> bool:
    """Whether a quota block ends within ``lead_seconds`` (pods started now are ready by then)."""
    return (
        gate == Gate.BLOCKED
        and provider.condition == ProviderCondition.QUOTA_EXCEEDED
        and provider.retry_at is not None
        and now >= provider.retry_at - timedelta(seconds=lead_seconds)
    )


def reopen_waiver(role: EffectiveRole, gate: Gate, reopened_at: datetime | None, now: datetime) -> str | None:
    """Why scale-up is not rate limited now after a reopen (None: it is)."""
    if gate != Gate.OPEN or reopened_at is None:
        return None
    period = max(policy.period_seconds for policy in role.behavior.scale_up.policies)
    age = now - reopened_at
    if not timedelta(0) <= age < timedelta(seconds=period):
        return None
    return f"provider gate reopened {age.total_seconds():g}s ago (< {period}s)"
