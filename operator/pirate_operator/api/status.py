"""``status`` of a ``PirateWorkerPool``: what the operator observed, decided and must remember.

Everything a scaling decision depends on besides the current observation (stabilization
recommendations, recent scale events, last scale and activity times, when the provider gate closed
and reopened) is kept here, per role, so an
operator restart changes no decision (the lesson KEDA learnt keeping ``lastActiveTime`` in status).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from pirate_operator.api.base import StatusModel
from pirate_worker.contracts.provider_state import ProviderCondition


class Recommendation(StatusModel):
    """One past replica recommendation, the memory of the stabilization windows."""

    time: datetime = Field(description="When the recommendation was made.")
    replicas: int = Field(
        ge=0, description="Replicas recommended by demand, before stabilization and limits."
    )


class ScaleEvent(StatusModel):
    """One replica change the operator made, the memory of the rate policies."""

    time: datetime = Field(description="When the change was decided.")
    change: int = Field(description="Replicas added (positive) or removed (negative).")


class RoleMemory(StatusModel):
    """What the next decision of a role needs to remember; part of the role's status."""

    recommendations: tuple[Recommendation, ...] = Field(
        default=(),
        description="Recommendations still inside a stabilization window, oldest first "
        "(dominated ones are dropped).",
    )
    scale_events: tuple[ScaleEvent, ...] = Field(
        default=(), description="Replica changes still inside a rate policy period, oldest first."
    )
    last_scale_time: datetime | None = Field(default=None, description="When replicas last changed.")
    last_active_time: datetime | None = Field(
        default=None, description="When demand above activationJobs or a busy worker was last seen."
    )
    gate_closed_since: datetime | None = Field(
        default=None,
        description="Provider-gated roles: since when the provider gate is closed (blocked or probing); "
        "unset while it is open.",
    )
    gate_reopened_at: datetime | None = Field(
        default=None,
        description="Provider-gated roles: when the gate last reopened after a block; for one scale-up "
        "period after it, scale-up is not rate limited (the backlog of the outage is real demand).",
    )


class RoleStatus(RoleMemory):
    """Observed demand, decided replicas and decision memory of one role."""

    replicas: int = Field(default=0, ge=0, description="Replicas of the role's Deployment.")
    desired_replicas: int = Field(default=0, ge=0, description="Replicas the last decision asked for.")
    queued: int = Field(default=0, ge=0, description="Jobs waiting in the role's queues.")
    in_flight: int = Field(default=0, ge=0, description="Jobs started by a worker whose heartbeat is live.")
    scheduled: int = Field(default=0, ge=0, description="Jobs scheduled for later (retries, delays).")
    stale_in_flight: int = Field(
        default=0, ge=0, description="Started jobs whose worker heartbeat expired; reported, not counted."
    )
    busy_workers: int = Field(default=0, ge=0, description="Workers currently running a job.")
    reason: str = Field(default="", description="Why the last decision chose desiredReplicas.")

    def memory(self) -> RoleMemory:
        """The decision memory held in this status."""
        return RoleMemory.model_validate(self.model_dump(include=set(RoleMemory.model_fields)))


class ProviderStatus(StatusModel):
    """The provider's auth/quota state as the operator last read it."""

    state: ProviderCondition = Field(
        default=ProviderCondition.OK, description="ok, quota_exceeded, auth_failed or probing."
    )
    retry_at: datetime | None = Field(default=None, description="When a block ends; unset when ok.")
    message: str = Field(default="", description="The provider's message for a block.")


class ConditionType(StrEnum):
    """Kinds of condition a pool reports."""

    READY = "Ready"
    REDIS_REACHABLE = "RedisReachable"
    PROVIDER_BLOCKED = "ProviderBlocked"
    PROVIDER_LIMITED = "ProviderLimited"
    FALLBACK = "Fallback"
    PAUSED = "Paused"
    INVALID_SPEC = "InvalidSpec"
    RESULTS_NOT_DURABLE = "ResultsNotDurable"


class ConditionStatus(StrEnum):
    """Kubernetes condition status."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """A Kubernetes-style condition."""

    type: ConditionType = Field(
        description="Ready, RedisReachable, ProviderBlocked, ProviderLimited, Fallback, Paused, InvalidSpec "
        "or ResultsNotDurable."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One CamelCase word for machines.")
    message: str = Field(default="", description="One line for humans.")
    last_transition_time: datetime | None = Field(default=None, description="When status last changed.")


class PoolStatus(StatusModel):
    """Everything the operator reports about a pool."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation of the spec the status reflects."
    )
    provider: ProviderStatus | None = Field(default=None, description="The provider's auth/quota state.")
    roles: dict[str, RoleStatus] = Field(default_factory=dict, description="Per-role status by role name.")
    queued: int = Field(default=0, ge=0, description="Jobs waiting in all the pool's queues.")
    conditions: tuple[Condition, ...] = Field(
        default=(),
        description="Ready, RedisReachable, ProviderBlocked, ProviderLimited, Fallback, Paused, InvalidSpec "
        "and ResultsNotDurable.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )

    def condition(self, kind: ConditionType) -> Condition | None:
        """The condition of the given type, if reported."""
        return next((found for found in self.conditions if found.type == kind), None)

    def as_merge_patch(self) -> dict[str, Any]:
        """This status as the body of a JSON merge patch of the ``status`` subresource.

        Unset values and empty strings become null, which a merge patch reads as "delete the
        field" (read back, the field takes its default again); inside lists, which a merge patch
        replaces whole, they are left out. Empty strings are never sent because some apiservers
        refuse them for string fields of custom resources (Kubernetes 1.20 built with Go >= 1.18,
        as ``hack/kube`` builds it, reads ``""`` as null).
        """
        patch = _nulls_for_empty(self.model_dump(mode="json", by_alias=True))
        return {"status": patch}


def _nulls_for_empty(value: Any, in_list: bool = False) -> Any:
    if isinstance(value, dict):
        converted = {key: _nulls_for_empty(item, in_list) for key, item in value.items()}
        if in_list:
            return {key: item for key, item in converted.items() if item is not None}
        return converted
    if isinstance(value, list):
        return [_nulls_for_empty(item, in_list=True) for item in value]
    return None if value == "" else value
