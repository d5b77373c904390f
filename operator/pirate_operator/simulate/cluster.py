"""The simulated cluster: jobs, workers, pods and which pods a scale-in removes.

Only state and the ReplicaSet's choice of victims live here; time moves in
:mod:`pirate_operator.simulate.engine`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

#: Kubernetes' default ``terminationGracePeriodSeconds``, what a stock Deployment scaled by KEDA or
#: an HPA gets unless its author raised it.
STOCK_GRACE_SECONDS: Final = 30.0


class Deletion(StrEnum):
    """How a ReplicaSet picks the pods a scale-in removes, and how a busy victim ends."""

    #: Our operator: ``pod-deletion-cost`` makes idle pods go first; a busy victim drains (its
    #: grace period is at least the job timeout + 30 s, so the running job finishes).
    PREFER_IDLE = "prefer-idle"
    #: Stock ReplicaSet: not-ready pods first, then the most recently ready, busy or not; a busy
    #: victim gets SIGTERM (RQ's warm shutdown) and is killed after the default 30 s grace period.
    STOCK = "stock"


@dataclass(eq=False)
class Job:
    """One RQ job. ``enqueued_at`` is its first enqueue: requeues do not reset the wait."""

    key: str
    role: str
    duration: float
    enqueued_at: float
    #: When the provider let its call start (a rate limit may hold it after a worker took it).
    started_at: float = 0.0
    #: When a worker took it (RQ starts the job; it runs from then, waiting calls included).
    taken_at: float = 0.0


@dataclass(eq=False)
class Worker:
    """One call slot of an RQ worker process (a process has ``callsPerWorker`` of them)."""

    pod: Pod
    #: Which of the pod's worker processes this slot belongs to.
    process: int = 0
    job: Job | None = None
    #: Bumped whenever the running job ends early, so its scheduled completion is ignored.
    token: int = 0
    #: The worker hit a provider block and takes no job before this time.
    paused_until: float = 0.0

    @property
    def busy(self) -> bool:
        """Whether a job is running on this worker."""
        return self.job is not None


@dataclass(eq=False)
class Pod:
    """One pod of a role: alive from ``created_at``, taking jobs from ``ready_at``."""

    number: int
    role: str
    created_at: float
    ready_at: float
    workers: list[Worker] = field(default_factory=list)
    #: When the scale-in that removes it happened (it takes no new job from then on).
    terminating_since: float | None = None
    #: When it was gone; ``None`` while alive.
    ended_at: float | None = None

    @property
    def busy_workers(self) -> int:
        """Call slots of this pod running a job."""
        return sum(1 for worker in self.workers if worker.busy)

    @property
    def busy_processes(self) -> int:
        """Worker processes of this pod running at least one job (what RQ reports as busy)."""
        return len({worker.process for worker in self.workers if worker.busy})

    def ready(self, now: float) -> bool:
        """Whether the pod's workers can take jobs at ``now``."""
        return self.ready_at <= now and self.terminating_since is None and self.ended_at is None


@dataclass(eq=False)
class RoleState:
    """One role's queue and pods (current ones and every pod that ever existed, for accounting)."""

    name: str
    workers_per_pod: int
    calls_per_worker: int = 1
    queue: deque[Job] = field(default_factory=deque)
    pods: list[Pod] = field(default_factory=list)
    history: list[Pod] = field(default_factory=list)

    @property
    def replicas(self) -> int:
        """The Deployment's replica count: pods not being removed."""
        return sum(1 for pod in self.pods if pod.terminating_since is None)

    @property
    def busy(self) -> int:
        """Call slots running a job, terminating pods included (RQ still sees them working)."""
        return sum(pod.busy_workers for pod in self.pods)

    @property
    def busy_processes(self) -> int:
        """Worker processes running a job, terminating pods included."""
        return sum(pod.busy_processes for pod in self.pods)

    def add_pod(self, number: int, now: float, ready_at: float) -> Pod:
        """Create a pod (and its workers' call slots) now; it takes jobs from ``ready_at``."""
        pod = Pod(number=number, role=self.name, created_at=now, ready_at=ready_at)
        pod.workers = [
            Worker(pod=pod, process=process)
            for process in range(self.workers_per_pod)
            for _ in range(self.calls_per_worker)
        ]
        self.pods.append(pod)
        self.history.append(pod)
        return pod

    def victims(self, count: int, deletion: Deletion, now: float) -> list[Pod]:
        """The ``count`` pods a ReplicaSet removes first.

        Both orders follow the ReplicaSet's ranking: a pod that is not ready yet goes before a
        ready one; then (``PREFER_IDLE`` only) the lower ``pod-deletion-cost`` — the operator
        marks pods without a busy worker cheaper; then the one ready for the shortest time; then
        the newest.
        """
        candidates = [pod for pod in self.pods if pod.terminating_since is None]

        def rank(pod: Pod) -> tuple[int, int, float, int]:
            ready = 1 if pod.ready_at <= now else 0
            cost = pod.busy_workers if deletion == Deletion.PREFER_IDLE and ready else 0
            return (ready, cost, -pod.ready_at, -pod.number)

        return sorted(candidates, key=rank)[:count]
