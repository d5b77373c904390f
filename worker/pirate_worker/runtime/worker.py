"""``PirateWorker``: an in-process RQ worker that understands provider blocks.

It runs jobs in its own process like RQ's ``SimpleWorker`` (the supervisor above it isolates
crashes), ``concurrency`` of them at once (``LLM_CONCURRENCY`` for llm workers, each job in its
own thread; see :mod:`~pirate_worker.runtime.rq_seam`, the one module that overrides RQ's
internals), keeps RQ's registries and heartbeats intact, and routes failures by cause:

* provider blocked (quota/auth) → back to the front of its queue, retry budget untouched;
* provider rate limit (a 429 that pacing did not avoid) → rescheduled after its ``retry-after``,
  retry budget untouched: it is the provider's pacing, not a failure of the job;
* the fleet's shared rate-limit budget spoken for longer than a job may wait → back to the front
  of its queue untouched, and this worker takes no job until the budget frees up;
* :class:`PermanentJobError` → failed at once with its reason;
* a job that is not one of the worker's own functions called with one payload (another dotted
  path written into the queue, unreadable job data, wrong arguments) → failed at once, never run;
* transient provider error with a ``retry-after`` → rescheduled at that time (one retry used);
* Redis lost mid-job → the process exits and its supervisor recovers the job once Redis is back;
* anything else → RQ's own retry schedule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from rq.exceptions import DeserializationError
from rq.executions import Execution
from rq.job import Job
from rq.utils import now as rq_now

from pirate_worker.contracts.provider_state import ProviderCondition
from pirate_worker.contracts.workers import WORKER_STATE_PAUSED
from pirate_worker.errors import InputError, PermanentJobError, ServiceUnavailable
from pirate_worker.jobs.context import EventSink, NullSink
from pirate_worker.llm.base import (
    BudgetWaitError,
    ProviderBlockedError,
    RateLimitedError,
    TransientProviderError,
)
from pirate_worker.runtime.rq_seam import ExcInfo, SeamWorker
from pirate_worker.services.provider_state import ProviderStateStore

log = logging.getLogger(__name__)

#: How often a paused worker re-reads the provider state (another pod's success resumes it).
PAUSE_POLL_S = 1.0


class RedisLostError(ServiceUnavailable):
    """Redis dropped the connection while a job ran; the worker process exits on it."""


class ProviderGate:
    """Keeps a gated worker from dequeuing while the provider is blocked.

    After ``retry_at`` the state is *probing*: one worker across the fleet takes a probe lock and
    runs one job; its success clears the state and everyone resumes, its failure sets a new block.
    """

    def __init__(self, store: ProviderStateStore, clock: Callable[[], datetime], probe_ttl_s: int) -> None:
        self.store = store
        self.clock = clock
        self.probe_ttl_s = probe_ttl_s

    def wait_until_open(self, worker: PirateWorker) -> bool:
        """Block (heartbeating) until this worker may dequeue, or a stop is requested.

        True when the worker took the probe lock: its next job is the fleet's one probe.
        """
        paused = False
        probing = False
        while not worker.stop_requested:
            state = self.store.current(self.clock())
            open_now = state.condition == ProviderCondition.OK
            if open_now:
                break
            if not state.blocked and self.store.try_probe(worker.name, self.probe_ttl_s):
                probing = True
                break
            if not paused:
                paused = True
                worker.set_state(WORKER_STATE_PAUSED)
                worker.events.emit("paused", paused=True)
                log.info(
                    "worker %s paused: provider %s until %s",
                    worker.name,
                    state.condition.value,
                    state.retry_at,
                )
            worker.heartbeat()
            worker.interruptible_sleep(PAUSE_POLL_S)
        if paused:
            worker.events.emit("paused", paused=False)
            log.info("worker %s resumed", worker.name)
        return probing

    def release_probe(self, worker_name: str) -> None:
        self.store.release_probe(worker_name)


class PirateWorker(SeamWorker):
    """See the module docstring. ``events`` receives one event per finished job for metrics."""

    def __init__(
        self,
        *args: Any,
        gate: ProviderGate | None = None,
        events: EventSink | None = None,
        allowed_functions: frozenset[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.events: EventSink = events or NullSink()
        #: Dotted paths this worker runs; None runs any (custom roles, like a plain rq worker).
        self.allowed_functions = allowed_functions
        #: Set while the probe lock this worker took is not yet tied to a job.
        self._probe_pending = False
        self._probe_job_id: str | None = None
        #: ``time.monotonic()`` until which this worker takes no job: the shared rate-limit
        #: budget is spoken for (:class:`BudgetWaitError`).
        self._hold_until = 0.0

    # --- the provider gate -------------------------------------------------------------------
    def wait_before_dequeue(self) -> bool:
        self._hold_for_budget()
        if self.gate is None:
            return not self.stop_requested
        self._probe_pending = self.gate.wait_until_open(self) or self._probe_pending
        return not self.stop_requested

    def _hold_for_budget(self) -> None:
        """Take no job while the fleet's rate-limit budget is spoken for (heartbeating)."""
        if time.monotonic() >= self._hold_until:
            return
        self.mark_idle()  # stays "busy" while jobs of its own still run
        while not self.stop_requested and (left := self._hold_until - time.monotonic()) > 0:
            self.heartbeat()
            self.interruptible_sleep(min(left, PAUSE_POLL_S))

    def dequeue_ended(self, took_job: bool) -> None:
        if self._probe_pending and not took_job and self.gate is not None:
            self._probe_pending = False
            self.gate.release_probe(self.name)

    def execute_job(self, job: Job, queue: Queue) -> None:
        if self._probe_pending:
            # The one job that probes the provider after a block; its end releases the lock.
            self._probe_pending = False
            self._probe_job_id = job.id
        super().execute_job(job, queue)

    def job_ended(self, job: Job, queue: Queue, outcome: str) -> None:
        if self._probe_job_id == job.id and self.gate is not None:
            self._probe_job_id = None
            self.gate.release_probe(self.name)
        duration = (job.ended_at - job.started_at).total_seconds() if job.ended_at and job.started_at else 0.0
        self.events.emit("job", queue=queue.name, outcome=outcome, duration=duration)

    # --- which jobs run ----------------------------------------------------------------------
    def refusal(self, job: Job) -> str | None:
        """Why ``job`` must not run here, or None. Nothing of the job is imported or called."""
        if self.allowed_functions is None:
            return None
        try:
            name, args, kwargs = job.func_name, job.args, job.kwargs
        except DeserializationError:
            return "job data is not readable JSON (corrupted, or not written by pirate-workers)"
        if name not in self.allowed_functions:
            return f"job function {str(name)[:100]!r} is not run by {', '.join(self.queue_names())} workers"
        if len(args) != 1 or kwargs:
            return (
                f"job arguments must be one payload object, got {len(args)} positional "
                f"and {len(kwargs)} keyword arguments"
            )
        return None

    # --- outcomes ----------------------------------------------------------------------------
    def route_failure(self, job: Job, queue: Queue, execution: Execution, exc_info: ExcInfo) -> bool:
        exc = exc_info[1]
        if isinstance(exc, RedisConnectionError | RedisTimeoutError):
            # Redis went away under the job (or under its success bookkeeping). Its outcome can't
            # be written now; rq would log that and carry on, leaving the job "started" until its
            # maintenance notices, minutes later. Exit instead: the supervisor recovers the jobs
            # of a dead worker as soon as Redis answers again.
            raise RedisLostError(f"worker {self.name} lost Redis while running job {job.id}") from exc
        if isinstance(exc, ProviderBlockedError):
            self.requeue_at_front(job, queue, execution)
            log.info("job %s back on %s untouched: %s", job.id, queue.name, exc)
            self.job_ended(job, queue, "requeued_blocked")
            return True
        if isinstance(exc, BudgetWaitError):
            # Nothing was sent; the job waits at the front of its queue, this worker waits too.
            self.requeue_at_front(job, queue, execution)
            self._hold_until = max(self._hold_until, time.monotonic() + (exc.retry_after_s or 1))
            self.job_ended(job, queue, "requeued_paced")
            return True
        if isinstance(exc, RateLimitedError):
            # The provider's pacing, not a failure of the job: its retries stay as they are.
            self.schedule_again(job, queue, execution, rq_now() + timedelta(seconds=exc.retry_after_s or 1))
            self.job_ended(job, queue, "rate_limited")
            return True
        if isinstance(exc, PermanentJobError | InputError):
            job.retries_left = 0
        elif isinstance(exc, TransientProviderError) and exc.retry_after_s and job.retries_left:
            job.retries_left = job.retries_left - 1
            self.schedule_again(job, queue, execution, rq_now() + timedelta(seconds=exc.retry_after_s))
            self.job_ended(job, queue, "retried")
            return True
        return False
