"""What one read of a pool's Redis returns: per-role demand, workers per pod, provider state, budget.

Plain frozen data, no I/O: the reconcile layer turns it into ``decide()`` inputs, status fields,
pod deletion costs and metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pirate_operator.scaling import RoleObservation
from pirate_worker.contracts.provider_state import ProviderState
from pirate_worker.contracts.rate_budget import Budget
from pirate_worker.contracts.workers import WORKER_STATE_PAUSED


class WorkerState(StrEnum):
    """What a registered RQ worker reports in its ``state`` field, reduced to what scaling needs."""

    BUSY = "busy"
    IDLE = "idle"
    #: The project's worker stops dequeuing while its provider is blocked (keeps its process alive).
    PAUSED = WORKER_STATE_PAUSED
    #: Starting, suspended or anything else RQ may report.
    OTHER = "other"


@dataclass(frozen=True)
class PodWorkers:
    """RQ workers of one pod, by state."""

    busy: int = 0
    idle: int = 0
    paused: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return self.busy + self.idle + self.paused + self.other

    def plus(self, state: WorkerState) -> PodWorkers:
        """A copy with one more worker in ``state``."""
        return PodWorkers(
            busy=self.busy + (state == WorkerState.BUSY),
            idle=self.idle + (state == WorkerState.IDLE),
            paused=self.paused + (state == WorkerState.PAUSED),
            other=self.other + (state == WorkerState.OTHER),
        )


@dataclass(frozen=True)
class RoleReading:
    """One role's demand (the decision's input) and its live workers grouped by pod name."""

    observation: RoleObservation
    pods: Mapping[str, PodWorkers] = field(default_factory=dict)

    @property
    def busy_pods(self) -> dict[str, int]:
        """Busy workers per pod, for pods running at least one job."""
        return {pod: workers.busy for pod, workers in self.pods.items() if workers.busy}


@dataclass(frozen=True)
class PoolObservation:
    """Everything read from a pool's Redis in one cycle."""

    roles: Mapping[str, RoleReading]
    provider: ProviderState
    read_at: datetime
    #: The provider's rate-limit budget the llm workers share; None while they wrote none.
    budget: Budget | None = None
    #: Round trips the read took (1 when no worker is registered and nothing is mid-dequeue, else 2).
    round_trips: int = 1

    @property
    def queued(self) -> int:
        """Jobs waiting in every queue of the pool."""
        return sum(reading.observation.queued for reading in self.roles.values())
