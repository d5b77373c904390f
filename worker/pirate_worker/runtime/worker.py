"""``PirateWorker``: an in-process RQ worker that understands provider blocks.

It runs jobs in its own process like RQ's ``SimpleWorker`` (the supervisor above it isolates
crashes), keeps RQ's registries and heartbeats intact, and routes failures by cause:

* provider blocked (quota/auth) → back to the front of its queue, retry budget untouched;
* :class:`PermanentJobError` → failed at once with its reason;
* a job that is not one of the worker's own functions called with one payload (another dotted
  path written into the queue, unreadable job data, wrong arguments) → failed at once, never run;
* transient provider error with a ``retry-after`` → rescheduled at that time (one retry used);
* Redis lost mid-job → the process exits and its supervisor recovers the job once Redis is back;
* anything else → RQ's own retry schedule.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker
from rq.exceptions import DeserializationError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import now as rq_now
from rq.worker.base import BaseWorker

from pirate_worker.contracts.provider_state import ProviderCondition
from pirate_worker.contracts.workers import WORKER_STATE_PAUSED
from pirate_worker.errors import InputError, PermanentJobError, ServiceUnavailable
from pirate_worker.jobs.context import EventSink, NullSink
from pirate_worker.llm.base import ProviderBlockedError, TransientProviderError
from pirate_worker.services.provider_state import ProviderStateStore

log = logging.getLogger(__name__)

ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]

#: Seconds between heartbeats of a running job; its started-registry entry lives this + 60 s.
JOB_MONITORING_INTERVAL_S = 10
#: How often a paused worker re-reads the provider state (another pod's success resumes it).
PAUSE_POLL_S = 1.0
HEARTBEAT_MIN_INTERVAL_S = 1.0
SUSPENSION_CHECK_INTERVAL_S = 1.0
RECONNECT_WAIT_MAX_S = 2.0


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

    def wait_until_open(self, worker: PirateWorker) -> None:
        """Block (heartbeating) until this worker may dequeue, or a stop is requested."""
        paused = False
        while not worker.stop_requested:
            state = self.store.current(self.clock())
            open_now = state.condition == ProviderCondition.OK
            if open_now or (not state.blocked and self.store.try_probe(worker.name, self.probe_ttl_s)):
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

    def release_probe(self, worker_name: str) -> None:
        self.store.release_probe(worker_name)


class PirateWorker(SimpleWorker):
    """See the module docstring. ``events`` receives one event per finished job for metrics."""

    #: RQ's idle dequeue retries an unreachable Redis with doubling waits up to 60 s, so an idle
    #: worker could come back a minute after Redis did; 2 s bounds the reconnect instead.
    max_connection_wait_time = RECONNECT_WAIT_MAX_S

    def __init__(
        self,
        *args: Any,
        gate: ProviderGate | None = None,
        events: EventSink | None = None,
        allowed_functions: frozenset[str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("job_monitoring_interval", JOB_MONITORING_INTERVAL_S)
        kwargs.setdefault("log_job_description", False)
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.events: EventSink = events or NullSink()
        #: Dotted paths this worker runs; None runs any (custom roles, like a plain rq worker).
        self.allowed_functions = allowed_functions
        self._stop_event = threading.Event()
        self._running: tuple[Job, Execution] | None = None
        self._heartbeat_thread: threading.Thread | None = None
        self._suspension_checked_at = -SUSPENSION_CHECK_INTERVAL_S
        self._prepared_job_id: str | None = None

    # --- fewer round trips per job -----------------------------------------------------------
    # Stock RQ spends ~18 Redis round trips on a trivial job; most are repeats of the same worker
    # bookkeeping. The three overrides below drop the repeats and keep every registry write.

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """Skip a standalone worker heartbeat sent less than ``HEARTBEAT_MIN_INTERVAL_S`` ago.

        The worker key lives ``worker_ttl + 60`` s (8 min by default), so renewing it at most once
        a second loses nothing; heartbeats inside a pipeline (job preparation) always go out.
        """
        recent = (
            self.last_heartbeat is not None
            and (rq_now() - self.last_heartbeat).total_seconds() < HEARTBEAT_MIN_INTERVAL_S
        )
        if pipeline is None and timeout is None and recent:
            return
        super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """Write the worker state only when it changes (RQ writes "idle" twice per job)."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def check_for_suspension(self, burst: bool) -> None:
        """``rq suspend`` is honoured within a second instead of re-read before every job."""
        moment = time.monotonic()
        if moment - self._suspension_checked_at >= SUSPENSION_CHECK_INTERVAL_S:
            self._suspension_checked_at = moment
            super().check_for_suspension(burst)

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        return bool(self._stop_requested) or self._stop_event.is_set()

    def interruptible_sleep(self, seconds: float) -> None:
        self._stop_event.wait(seconds)

    def request_stop(self, signum: int, frame: Any) -> None:
        self._stop_event.set()
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    @property
    def dequeue_timeout(self) -> int:
        """An idle worker wakes at least every maintenance interval instead of every 405 s.

        RQ runs its maintenance, which puts the jobs of a dead pod back once their heartbeat has
        expired (``get_heartbeat_ttl``), only between two dequeues; an idle worker blocked in
        BLPOP for ``worker_ttl - 15`` seconds would leave such a job stranded for minutes.
        """
        return max(1, min(int(super().dequeue_timeout), int(self.maintenance_interval)))

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # RQ's base rule (short TTL, renewed by our heartbeat thread) instead of SimpleWorker's
        # "whole timeout + 60 s", so a dead pod's jobs are recognised as abandoned within ~70 s.
        return int(BaseWorker.get_heartbeat_ttl(self, job, working_time))

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        if self.gate is not None:
            self.gate.wait_until_open(self)
            if self.stop_requested:
                return None
        ready = self._dequeue_ready()
        if ready is not None:
            return ready
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def _dequeue_ready(self) -> tuple[Job, Queue] | None:
        """Take a waiting job without RQ's pre-blocking bookkeeping (idle state, heartbeat).

        Only when every queue is empty does the worker go through RQ's blocking dequeue, which
        marks it idle; a worker moving from job to job stays "busy" the whole time, as it is.
        """
        try:
            result: tuple[Job, Queue] | None = self.queue_class.dequeue_any(
                self._ordered_queues,
                None,
                connection=self.connection,
                job_class=self.job_class,
                serializer=self.serializer,
                death_penalty_class=self.death_penalty_class,
            )
        except (RedisConnectionError, RedisTimeoutError):
            return None  # RQ's blocking dequeue below retries with its backoff
        if result is not None:
            job, queue = result
            self.reorder_queues(reference_queue=queue)
            job.redis_server_version = self.get_redis_server_version()  # type: ignore[no-untyped-call]
        return result

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self._prepare_in_one_round_trip(job, queue)
        self._running = (job, execution)
        self._ensure_heartbeat_thread()
        try:
            self.perform_job(job, queue, execution)
        finally:
            self._running = None
            if self.gate is not None:
                self.gate.release_probe(self.name)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        refusal = self._refusal(job)
        if refusal is None:
            return bool(super().perform_job(job, queue, execution))
        self.prepare_job_execution(job, len(self.queues) == 1)
        job.started_at = rq_now()
        try:
            raise PermanentJobError(refusal)
        except PermanentJobError:
            self._finalize_failure(job, queue, execution, sys.exc_info())
        return False

    def _refusal(self, job: Job) -> str | None:
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

    def _prepare_in_one_round_trip(self, job: Job, queue: Queue) -> Execution:
        """RQ's ``prepare_execution`` and ``prepare_job_execution`` writes, in one pipeline."""
        heartbeat_ttl = self.get_heartbeat_ttl(job)
        with self.connection.pipeline() as pipe:
            execution = Execution.create(job, heartbeat_ttl, pipeline=pipe, worker_name=self.name)
            self.executions[execution.id] = execution
            self.set_state("busy", pipeline=pipe)
            self.heartbeat(heartbeat_ttl, pipeline=pipe)
            job.heartbeat(rq_now(), heartbeat_ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            pipe.persist(job.key)
            if len(self.queues) == 1:
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            pipe.execute()
        self._prepared_job_id = job.id
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        if self._prepared_job_id == job.id:
            self._prepared_job_id = None
            return
        super().prepare_job_execution(job, remove_from_intermediate_queue)

    def _ensure_heartbeat_thread(self) -> None:
        if self._heartbeat_thread is None or not self._heartbeat_thread.is_alive():
            self._heartbeat_thread = threading.Thread(
                target=self._heartbeat_loop, name="job-heartbeat", daemon=True
            )
            self._heartbeat_thread.start()

    def _heartbeat_loop(self) -> None:
        """Renew the running job's registry entry while the main thread is busy executing it."""
        while not self._stop_event.wait(self.job_monitoring_interval):
            running = self._running
            if running is None:
                continue
            try:
                self.maintain_heartbeats(*running)
            except Exception:
                log.warning("worker %s: heartbeat failed", self.name, exc_info=True)

    # --- outcomes ----------------------------------------------------------------------------
    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: Any, execution: Execution
    ) -> None:
        super().handle_job_success(job, queue, started_job_registry, execution)
        self._emit_job(job, queue, "finished")

    def _finalize_failure(self, job: Job, queue: Queue, execution: Execution, exc_info: ExcInfo) -> None:
        exc = exc_info[1]
        if isinstance(exc, RedisConnectionError | RedisTimeoutError):
            # Redis went away under the job (or under its success bookkeeping). Its outcome can't
            # be written now; RQ would log that and carry on, leaving the job "started" until its
            # maintenance notices, minutes later. Exit instead: the supervisor recovers the job
            # of a dead worker as soon as Redis answers again.
            raise RedisLostError(f"worker {self.name} lost Redis while running job {job.id}") from exc
        if isinstance(exc, ProviderBlockedError):
            self._requeue_untouched(job, queue, execution, exc)
            return
        if isinstance(exc, PermanentJobError | InputError):
            job.retries_left = 0
        elif isinstance(exc, TransientProviderError) and exc.retry_after_s and job.retries_left:
            self._reschedule(job, queue, execution, exc.retry_after_s)
            return
        retrying = bool(job.retries_left)
        super()._finalize_failure(job, queue, execution, exc_info)
        self._emit_job(job, queue, "retried" if retrying else "failed")

    def _requeue_untouched(
        self, job: Job, queue: Queue, execution: Execution, exc: ProviderBlockedError
    ) -> None:
        job.ended_at = rq_now()
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            queue._enqueue_job(job, pipeline=pipe, at_front=True)
            pipe.execute()
        log.info("job %s back on %s untouched: %s", job.id, queue.name, exc)
        self._emit_job(job, queue, "requeued_blocked")

    def _reschedule(self, job: Job, queue: Queue, execution: Execution, delay_s: float) -> None:
        job.ended_at = rq_now()
        job.retries_left = (job.retries_left or 1) - 1
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            job.set_status(JobStatus.SCHEDULED, pipeline=pipe)
            queue.schedule_job(job, rq_now() + timedelta(seconds=delay_s), pipeline=pipe)
            pipe.execute()
        self._emit_job(job, queue, "retried")

    def _emit_job(self, job: Job, queue: Queue, outcome: str) -> None:
        duration = (job.ended_at - job.started_at).total_seconds() if job.ended_at and job.started_at else 0.0
        self.events.emit("job", queue=queue.name, outcome=outcome, duration=duration)
