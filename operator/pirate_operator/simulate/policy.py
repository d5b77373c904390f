"""What a scaling policy sees of the simulated cluster, and what it must provide."""

from __future__ import annotations

from typing import Protocol

from pirate_operator.api import EffectiveRole
from pirate_operator.simulate.cluster import Deletion
from pirate_operator.simulate.trace import Trace
from pirate_worker.contracts.provider_state import ProviderState
from pirate_worker.contracts.rate_budget import Budget


class ClusterView(Protocol):
    """The cluster as a controller reads and changes it at the current simulated second."""

    @property
    def now(self) -> float:
        """The current simulated second."""
        ...

    @property
    def trace(self) -> Trace:
        """The trace being replayed (for the pool and the pod start time)."""
        ...

    def queued(self, role: str) -> int:
        """Jobs waiting in the role's queue (LLEN)."""
        ...

    def busy(self, role: str) -> int:
        """Jobs of the role running (its workers' call slots in use)."""
        ...

    def busy_workers(self, role: str) -> int:
        """Worker processes of the role running a job (what RQ reports as busy)."""
        ...

    def replicas(self, role: str) -> int:
        """The replica count of the role's Deployment."""
        ...

    def completions_since(self, role: str, since: float) -> int:
        """Jobs of the role finished after ``since`` (RQ's finished-job registry grows by these)."""
        ...

    def mean_job_seconds(self, role: str) -> float | None:
        """Mean run time of the role's finished jobs (RQ's worker statistics); None before the first."""
        ...

    def provider_state(self) -> ProviderState:
        """The provider's auth/quota state as stored in Redis now."""
        ...

    def rate_budget(self) -> Budget | None:
        """The provider's rate-limit budget as the workers stored it in Redis (None if none)."""
        ...

    def scale(self, role: str, replicas: int) -> None:
        """Set the replica count of the role's Deployment."""
        ...


class Policy(Protocol):
    """A scaling policy: the replicas it starts from, and a control loop called at its own times."""

    #: ``pirate``, ``keda`` or ``hpa``.
    name: str
    #: How the ReplicaSet under this policy picks and ends scale-in victims.
    deletion: Deletion

    def initial_replicas(self, role: EffectiveRole) -> int:
        """The role's replicas when the trace starts (pods already running and ready)."""
        ...

    def step(self, view: ClusterView) -> float:
        """Run every control loop due at ``view.now``; return when to be called next."""
        ...
