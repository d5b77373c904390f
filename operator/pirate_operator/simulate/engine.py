"""The event-driven simulator: time, jobs moving through queues and workers, pods coming and going.

Events are ordered by (time, kind, sequence), so a run is a pure function of the trace, the policy
and the seed. At one instant: job completions, then grace-period kills, then pods becoming ready,
then paused workers resuming, then the start of a blocked window (its queues are counted), then
arrivals, then the policy's control loop, then the timeline sample. Every event hands idle
workers the oldest waiting jobs at once.

The run lasts ``duration_s`` and then as long as jobs are still queued or running (no new
arrivals), so no policy looks cheaper by leaving work undone; a run that cannot finish (a role
with ``maxReplicas: 0``) stops after :data:`MAX_DRAIN_SECONDS` more and reports the rest as pending.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial
from typing import Final

from pirate_operator.simulate.cluster import STOCK_GRACE_SECONDS, Deletion, Job, Pod, RoleState, Worker
from pirate_operator.simulate.policy import Policy
from pirate_operator.simulate.provider import ProviderModel, RateLimiter
from pirate_operator.simulate.trace import Arrival, Trace
from pirate_worker.contracts.provider_state import ProviderState
from pirate_worker.contracts.rate_budget import Budget

#: Longest the run goes on past ``duration_s`` to finish the remaining jobs.
MAX_DRAIN_SECONDS: Final = 86_400.0


class _Kind(IntEnum):
    """Order of events at the same instant."""

    DONE = 0
    KILL = 1
    READY = 2
    RESUME = 3
    BLOCK = 4
    ARRIVE = 5
    CONTROL = 6
    SAMPLE = 7
    END = 8


@dataclass
class RoleTally:
    """Counters of one role over a run."""

    waits: list[float] = field(default_factory=list)
    done: int = 0
    interrupted: int = 0
    refused: int = 0
    scale_events: int = 0
    completions: list[float] = field(default_factory=list)
    #: Seconds the finished jobs ran, summed (RQ workers' ``total_working_time``).
    working_seconds: float = 0.0
    #: Jobs queued when a blocked window began, summed over the windows (gated roles only): each
    #: waits until its window ends, whatever the policy does then.
    queued_at_block: int = 0


@dataclass(frozen=True)
class Sample:
    """One point of the timeline: per role, the Deployment's replicas and the jobs queued + running."""

    t: float
    replicas: dict[str, int]
    demand: dict[str, int]


@dataclass(frozen=True)
class Outcome:
    """Everything a report needs from one run."""

    trace: Trace
    policy: str
    seed: int
    end: float
    tallies: dict[str, RoleTally]
    pods: dict[str, list[Pod]]
    pending: dict[str, int]
    samples: list[Sample]


def job_duration(seed: int, key: str, mean: float, cv: float) -> float:
    """The duration of job ``key``: gamma with the given mean and cv, the same for every policy.

    Each job draws from its own generator seeded by ``(seed, key)``, so a job takes as long under
    one policy as under another whatever order the jobs run in; a requeued job keeps its duration.
    """
    if cv == 0:
        return mean
    shape = 1.0 / (cv * cv)
    return random.Random(f"{seed}/{key}").gammavariate(shape, mean / shape)


class Simulation:
    """One replay of a trace under a policy; implements the policy's :class:`ClusterView`."""

    def __init__(self, trace: Trace, policy: Policy, seed: int, *, sample_every: float = 1.0) -> None:
        self._trace = trace
        self._policy = policy
        self._seed = seed
        self._sample_every = sample_every
        self._now = 0.0
        self._heap: list[tuple[float, int, int, Callable[[], None]]] = []
        self._sequence = 0
        self._pod_numbers = 0
        self._states = {
            name: RoleState(name, role.workers_per_pod, role.calls_per_worker)
            for name, role in trace.roles.items()
        }
        self._tallies = {name: RoleTally() for name in trace.roles}
        self._provider = ProviderModel()
        self._limiter = RateLimiter(trace.limit) if trace.limit is not None else None
        self._samples: list[Sample] = []
        self._outstanding = 0
        self._arrivals_left = len(trace.arrivals)
        self._draining = False
        self._stopped_at: float | None = None

    # --- ClusterView -------------------------------------------------------------------------
    @property
    def now(self) -> float:
        """The current simulated second."""
        return self._now

    @property
    def trace(self) -> Trace:
        """The trace being replayed."""
        return self._trace

    def queued(self, role: str) -> int:
        """Jobs waiting in the role's queue."""
        return len(self._states[role].queue)

    def busy(self, role: str) -> int:
        """Jobs of the role running (call slots busy)."""
        return self._states[role].busy

    def busy_workers(self, role: str) -> int:
        """Worker processes of the role running a job."""
        return self._states[role].busy_processes

    def replicas(self, role: str) -> int:
        """The role's Deployment replicas."""
        return self._states[role].replicas

    def completions_since(self, role: str, since: float) -> int:
        """Jobs of the role finished after ``since``."""
        times = self._tallies[role].completions
        return len(times) - bisect.bisect_right(times, since)

    def mean_job_seconds(self, role: str) -> float | None:
        """Mean run time of the role's finished jobs so far; None before the first."""
        tally = self._tallies[role]
        return tally.working_seconds / tally.done if tally.done else None

    def provider_state(self) -> ProviderState:
        """The provider state stored in Redis now."""
        return self._provider.state(self._now)

    def rate_budget(self) -> Budget | None:
        """The rate-limit budget the workers stored in Redis; None without a limit or a settled call."""
        return self._limiter.budget() if self._limiter is not None else None

    def scale(self, role: str, replicas: int) -> None:
        """Set the role's replicas: new pods start now, removed pods follow the policy's deletion."""
        state = self._states[role]
        current = state.replicas
        if replicas == current:
            return
        self._tallies[role].scale_events += 1
        if replicas > current:
            for _ in range(replicas - current):
                self._pod_numbers += 1
                pod = state.add_pod(self._pod_numbers, self._now, self._now + self._trace.pod_start_s)
                self._at(pod.ready_at, _Kind.READY, partial(self._dispatch, state))
            return
        for pod in state.victims(current - replicas, self._policy.deletion, self._now):
            self._remove(state, pod)

    # --- the run -----------------------------------------------------------------------------
    def run(self) -> Outcome:
        """Replay the whole trace and return what happened."""
        for arrival in self._trace.arrivals:
            self._at(arrival.t, _Kind.ARRIVE, partial(self._arrive, arrival))
        for window in self._trace.blocked:
            self._at(window.start, _Kind.BLOCK, self._count_blocked_queues)
        for name, role in self._trace.roles.items():
            for _ in range(self._policy.initial_replicas(role)):
                self._pod_numbers += 1
                self._states[name].add_pod(self._pod_numbers, 0.0, 0.0)
        self._at(0.0, _Kind.CONTROL, self._control)
        self._at(0.0, _Kind.SAMPLE, self._sample)
        self._at(self._trace.duration_s, _Kind.END, self._end_of_trace)
        self._at(self._trace.duration_s + MAX_DRAIN_SECONDS, _Kind.END, self._stop)
        while self._heap and self._stopped_at is None:
            when, _, _, action = heapq.heappop(self._heap)
            self._now = when
            action()
        end = self._stopped_at if self._stopped_at is not None else self._now
        for state in self._states.values():
            for pod in state.pods:
                pod.ended_at = end
        return Outcome(
            trace=self._trace,
            policy=self._policy.name,
            seed=self._seed,
            end=end,
            tallies=self._tallies,
            pods={name: state.history for name, state in self._states.items()},
            pending={name: len(state.queue) + state.busy for name, state in self._states.items()},
            samples=self._samples,
        )

    def _at(self, when: float, kind: _Kind, action: Callable[[], None]) -> None:
        self._sequence += 1
        heapq.heappush(self._heap, (when, int(kind), self._sequence, action))

    def _end_of_trace(self) -> None:
        if self._outstanding == 0:
            self._stop()
        else:
            self._draining = True

    def _stop(self) -> None:
        self._stopped_at = self._now

    def _count_blocked_queues(self) -> None:
        for name, role in self._trace.roles.items():
            if role.gated_by_provider:
                self._tallies[name].queued_at_block += len(self._states[name].queue)

    def _control(self) -> None:
        self._at(max(self._policy.step(self), self._now + 1e-9), _Kind.CONTROL, self._control)

    def _sample(self) -> None:
        self._samples.append(
            Sample(
                t=self._now,
                replicas={name: state.replicas for name, state in self._states.items()},
                demand={name: len(state.queue) + state.busy for name, state in self._states.items()},
            )
        )
        self._at(self._now + self._sample_every, _Kind.SAMPLE, self._sample)

    # --- jobs --------------------------------------------------------------------------------
    def _new_job(self, role: str, key: str) -> Job:
        timing = self._trace.timings[role]
        self._outstanding += 1
        return Job(key, role, job_duration(self._seed, key, timing.service_time_s, timing.cv), self._now)

    def _arrive(self, arrival: Arrival) -> None:
        state = self._states[arrival.role]
        self._arrivals_left -= 1
        for number in range(arrival.jobs):
            state.queue.append(self._new_job(arrival.role, f"{arrival.role}@{arrival.t:g}#{number}"))
        self._dispatch(state)

    def _dispatch(self, state: RoleState) -> None:
        """Hand the oldest waiting jobs to idle, unpaused workers of ready pods, oldest pod first."""
        for pod in state.pods:
            if not state.queue:
                return
            if not pod.ready(self._now):
                continue
            for worker in pod.workers:
                if not state.queue:
                    return
                if not worker.busy and worker.paused_until <= self._now:
                    self._start(state, worker, state.queue.popleft())

    def _start(self, state: RoleState, worker: Worker, job: Job) -> None:
        window = (
            self._trace.blocked_at(self._now) if self._trace.roles[state.name].gated_by_provider else None
        )
        if window is not None:
            # The call is refused at once: the job goes back to the front of its queue (as
            # PirateWorker requeues a blocked job) and this worker pauses until the window ends.
            self._tallies[state.name].refused += 1
            self._provider.refused(window, self._now)
            worker.paused_until = window.end
            state.queue.appendleft(job)
            self._at(window.end, _Kind.RESUME, partial(self._dispatch, state))
            return
        job.taken_at = job.started_at = self._now
        if self._limiter is not None and self._trace.roles[state.name].gated_by_provider:
            # The worker holds the job while its call waits for the provider's limit.
            job.started_at = self._limiter.admit(self._now)
        worker.job = job
        token = worker.token
        self._at(job.started_at + job.duration, _Kind.DONE, partial(self._done, state, worker, token))

    def _done(self, state: RoleState, worker: Worker, token: int) -> None:
        job = worker.job
        if job is None or worker.token != token:
            return  # the job was interrupted; this completion never happens
        worker.job = None
        tally = self._tallies[state.name]
        tally.waits.append(job.started_at - job.enqueued_at)
        tally.done += 1
        tally.working_seconds += self._now - job.taken_at
        tally.completions.append(self._now)
        if self._trace.roles[state.name].gated_by_provider:
            self._provider.succeeded(self._now)
            if self._limiter is not None:
                self._limiter.settled(self._now, self._trace.timings[state.name].service_time_s)
        for target in self._trace.chain.get(state.name, ()):
            target_state = self._states[target]
            target_state.queue.append(self._new_job(target, f"{job.key}>{target}"))
            self._dispatch(target_state)
        self._outstanding -= 1
        pod = worker.pod
        if pod.terminating_since is not None and pod.busy_workers == 0:
            self._end_pod(state, pod)
        else:
            self._dispatch(state)
        if self._draining and self._outstanding == 0:
            self._stop()

    # --- pods --------------------------------------------------------------------------------
    def _remove(self, state: RoleState, pod: Pod) -> None:
        pod.terminating_since = self._now
        if pod.busy_workers == 0:
            self._end_pod(state, pod)
            return
        if self._policy.deletion == Deletion.PREFER_IDLE:
            grace = float(self._trace.roles[state.name].termination_grace_period_seconds)
        else:
            grace = STOCK_GRACE_SECONDS
        self._at(self._now + grace, _Kind.KILL, partial(self._kill, state, pod))

    def _kill(self, state: RoleState, pod: Pod) -> None:
        """The grace period ran out: running jobs die and RQ re-enqueues them (at the back)."""
        if pod.ended_at is not None:
            return
        for worker in pod.workers:
            if worker.job is not None:
                self._tallies[state.name].interrupted += 1
                state.queue.append(worker.job)
                worker.job = None
                worker.token += 1
        self._end_pod(state, pod)
        self._dispatch(state)

    def _end_pod(self, state: RoleState, pod: Pod) -> None:
        pod.ended_at = self._now
        state.pods.remove(pod)
