"""THE SEAM: every override of rq's worker internals lives here, written against rq ``RQ_VERSION``.

rq's documented extension points are the worker class, its queues and its serializer; the methods
below are not, and a new rq release may rename or reshape any of them. They are kept in this one
module so that a version bump has one place to read, and ``tests/unit/test_rq_seam.py`` fails as
soon as the installed rq is not the one they were written against.

What the seam adds to rq's ``SimpleWorker`` (jobs run in the worker's own process):

* **Several executions per worker** (``concurrency``): the worker dequeues while it has a free
  slot and runs each job in a thread of its own. Each job is an rq ``Execution`` in its queue's
  started registry with its own heartbeat (renewed by one heartbeat thread for all of them) and
  its own timeout (rq's ``TimerDeathPenalty``, which works in any thread). rq's data model has
  carried a list of executions per worker since 2.0; ``recover_dead_worker`` and rq's own
  registry maintenance already requeue every one of a dead worker's jobs. A warm shutdown stops
  dequeuing and waits for every running job before the worker unregisters.
* **Fewer Redis round trips per job** (``bench/throughput.py`` measures them against stock rq):
  job preparation in one pipeline, no idle/busy flapping between back-to-back jobs, standalone
  heartbeats and suspension checks at most once a second.
* **Bounded waits**: reconnects after 2 s at most, and an idle worker runs rq's maintenance
  (which puts back the jobs of dead workers) every ``maintenance_interval``.
* **Two outcomes rq has no verb for**, used by the subclass: put a job back at the front of its
  queue untouched, and schedule it again at a time without spending a retry.

Subclasses hook in through :meth:`SeamWorker.wait_before_dequeue`, :meth:`SeamWorker.refusal`,
:meth:`SeamWorker.route_failure` and :meth:`SeamWorker.job_ended`, never through rq's names.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from datetime import datetime
from types import TracebackType
from typing import Any, Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.timeouts import TimerDeathPenalty
from rq.utils import now as rq_now
from rq.worker.base import BaseWorker, WorkerStatus

from pirate_worker.errors import PermanentJobError

log = logging.getLogger(__name__)

#: The rq release the overrides below were written against (``tests/unit/test_rq_seam.py``).
RQ_VERSION: Final = "3.0.0"

ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]

#: Seconds between heartbeats of a running job; its started-registry entry lives this + 60 s.
JOB_MONITORING_INTERVAL_S: Final = 10
HEARTBEAT_MIN_INTERVAL_S: Final = 1.0
SUSPENSION_CHECK_INTERVAL_S: Final = 1.0
RECONNECT_WAIT_MAX_S: Final = 2.0
#: How often a worker whose slots are all taken renews its own heartbeat while it waits.
SLOT_WAIT_S: Final = 1.0


class SeamWorker(SimpleWorker):
    """rq's ``SimpleWorker`` with ``concurrency`` executions at once; see the module docstring."""

    max_connection_wait_time = RECONNECT_WAIT_MAX_S

    def __init__(self, *args: Any, concurrency: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("job_monitoring_interval", JOB_MONITORING_INTERVAL_S)
        kwargs.setdefault("log_job_description", False)
        super().__init__(*args, **kwargs)
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        if concurrency > 1:
            # rq's default (SIGALRM) only interrupts the main thread; jobs run in their own.
            self.death_penalty_class = TimerDeathPenalty
        self._stop_event = threading.Event()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        #: Running jobs by execution id, renewed by the heartbeat thread.
        self._running: dict[str, tuple[Job, Execution]] = {}
        self._job_threads: set[threading.Thread] = set()
        self._heartbeat_thread: threading.Thread | None = None
        self._suspension_checked_at = -SUSPENSION_CHECK_INTERVAL_S
        self._prepared_job_ids: set[str] = set()
        self._waiting_for_job = False
        #: An error a job thread could not handle (Redis gone); the main loop exits on it.
        self._fatal: BaseException | None = None

    # --- hooks for the subclass -------------------------------------------------------------
    def wait_before_dequeue(self) -> bool:
        """Block until this worker may take a job; False when it should stop instead."""
        return True

    def refusal(self, job: Job) -> str | None:
        """Why ``job`` must not run here (it fails at once, unrun), or None."""
        return None

    def route_failure(self, job: Job, queue: Queue, execution: Execution, exc_info: ExcInfo) -> bool:
        """Handle a failed job's outcome itself (True) or leave it to rq's retry rules (False)."""
        return False

    def job_ended(self, job: Job, queue: Queue, outcome: str) -> None:
        """Called once per job with ``finished``, ``retried``, ``failed`` or the subclass's outcomes."""

    def dequeue_ended(self, took_job: bool) -> None:
        """Called after each dequeue attempt that :meth:`wait_before_dequeue` allowed."""

    # --- state ------------------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        return bool(self._stop_requested) or self._stop_event.is_set()

    @property
    def running_jobs(self) -> int:
        with self._lock:
            return len(self._running)

    def mark_idle(self) -> None:
        """Report the worker idle (it stays "busy" while any of its jobs runs)."""
        self.set_state(WorkerStatus.IDLE)

    def interruptible_sleep(self, seconds: float) -> None:
        self._stop_event.wait(seconds)

    def request_stop(self, signum: int, frame: Any) -> None:
        self._stop_event.set()
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def _shutdown(self) -> None:
        # rq interrupts an idle worker's blocking dequeue and lets a busy one finish its job.
        # Here the main loop may wait for a job while other jobs run in their threads: it is
        # interrupted (nothing is half-done in it), and teardown waits for the running jobs.
        if self._waiting_for_job:
            self._stop_requested = True
            raise StopRequested()
        super()._shutdown()  # type: ignore[no-untyped-call]

    # --- fewer round trips per job -----------------------------------------------------------
    # Stock rq spends ~18 Redis round trips on a trivial job; most are repeats of the same worker
    # bookkeeping. These overrides drop the repeats and keep every registry write.

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
        """Write the worker state only when it changes; "idle" only when no job runs."""
        if state == WorkerStatus.IDLE and self._running:
            state = WorkerStatus.BUSY
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def check_for_suspension(self, burst: bool) -> None:
        """``rq suspend`` is honoured within a second instead of re-read before every job."""
        moment = time.monotonic()
        if moment - self._suspension_checked_at >= SUSPENSION_CHECK_INTERVAL_S:
            self._suspension_checked_at = moment
            super().check_for_suspension(burst)

    # --- bounded waits ----------------------------------------------------------------------
    @property
    def dequeue_timeout(self) -> int:
        """An idle worker wakes at least every maintenance interval instead of every 405 s.

        rq runs its maintenance, which puts the jobs of a dead pod back once their heartbeat has
        expired (``get_heartbeat_ttl``), only between two dequeues; an idle worker blocked in
        BLPOP for ``worker_ttl - 15`` seconds would leave such a job stranded for minutes.
        """
        return max(1, min(int(super().dequeue_timeout), int(self.maintenance_interval)))

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # rq's base rule (short TTL, renewed by our heartbeat thread) instead of SimpleWorker's
        # "whole timeout + 60 s", so a dead pod's jobs are recognised as abandoned within ~70 s.
        return int(BaseWorker.get_heartbeat_ttl(self, job, working_time))

    # --- dequeue ----------------------------------------------------------------------------
    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        if self._fatal is not None:
            raise self._fatal
        if not self._take_slot():
            return None
        result = None
        try:
            if self.wait_before_dequeue() and not self.stop_requested:
                result = self._dequeue_ready()
                if result is None:
                    self._waiting_for_job = True
                    try:
                        result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
                    finally:
                        self._waiting_for_job = False
                self.dequeue_ended(result is not None)
        finally:
            if result is None:
                self._slots.release()
        return result

    def _take_slot(self) -> bool:
        """Wait (heartbeating) for a free execution slot; False when a stop came first."""
        self._waiting_for_job = True
        try:
            while not self._slots.acquire(timeout=SLOT_WAIT_S):
                if self.stop_requested or self._fatal is not None:
                    return False
                self.heartbeat()
        finally:
            self._waiting_for_job = False
        if self.stop_requested:
            self._slots.release()
            return False
        return True

    def _dequeue_ready(self) -> tuple[Job, Queue] | None:
        """Take a waiting job without rq's pre-blocking bookkeeping (idle state, heartbeat).

        Only when every queue is empty does the worker go through rq's blocking dequeue, which
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
            return None  # rq's blocking dequeue retries with its backoff
        if result is not None:
            job, queue = result
            self.reorder_queues(reference_queue=queue)
            job.redis_server_version = self.get_redis_server_version()  # type: ignore[no-untyped-call]
        return result

    # --- execution --------------------------------------------------------------------------
    def execute_job(self, job: Job, queue: Queue) -> None:
        """Prepare ``job`` in one round trip, then run it here (one slot) or in its own thread."""
        try:
            execution = self._prepare_in_one_round_trip(job, queue)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._running[execution.id] = (job, execution)
        self._ensure_heartbeat_thread()
        if self.concurrency == 1:
            self._run(job, queue, execution)
            return
        thread = threading.Thread(
            target=self._run_in_thread, args=(job, queue, execution), name=f"job-{job.id}", daemon=True
        )
        with self._lock:
            self._job_threads.add(thread)
        thread.start()

    def _run(self, job: Job, queue: Queue, execution: Execution) -> None:
        try:
            self.perform_job(job, queue, execution)
        finally:
            with self._lock:
                self._running.pop(execution.id, None)
                idle = not self._running and self._waiting_for_job
            self._slots.release()
            if idle:
                self.set_state(WorkerStatus.IDLE)

    def _run_in_thread(self, job: Job, queue: Queue, execution: Execution) -> None:
        try:
            self._run(job, queue, execution)
        except BaseException as exc:  # handed to the main loop, which exits on it
            log.error("worker %s: job %s could not be finished: %s", self.name, job.id, exc)
            self._fatal = exc
            self._stop_event.set()
        finally:
            with self._lock:
                self._job_threads.discard(threading.current_thread())

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        reason = self.refusal(job)
        if reason is None:
            return bool(super().perform_job(job, queue, execution))
        self.prepare_job_execution(job, len(self.queues) == 1)
        job.started_at = rq_now()
        try:
            raise PermanentJobError(reason)
        except PermanentJobError:
            self._finalize_failure(job, queue, execution, sys.exc_info())
        return False

    def _prepare_in_one_round_trip(self, job: Job, queue: Queue) -> Execution:
        """rq's ``prepare_execution`` and ``prepare_job_execution`` writes, in one pipeline."""
        heartbeat_ttl = self.get_heartbeat_ttl(job)
        with self.connection.pipeline() as pipe:
            execution = Execution.create(job, heartbeat_ttl, pipeline=pipe, worker_name=self.name)
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self.heartbeat(heartbeat_ttl, pipeline=pipe)
            job.heartbeat(rq_now(), heartbeat_ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            pipe.persist(job.key)
            if len(self.queues) == 1:
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            pipe.execute()
        with self._lock:
            self._prepared_job_ids.add(job.id)
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        with self._lock:
            prepared = job.id in self._prepared_job_ids
            self._prepared_job_ids.discard(job.id)
        if not prepared:
            super().prepare_job_execution(job, remove_from_intermediate_queue)

    def _ensure_heartbeat_thread(self) -> None:
        if self._heartbeat_thread is None or not self._heartbeat_thread.is_alive():
            self._heartbeat_thread = threading.Thread(
                target=self._heartbeat_loop, name="job-heartbeat", daemon=True
            )
            self._heartbeat_thread.start()

    def _heartbeat_loop(self) -> None:
        """Renew every running job's registry entry while the jobs run (until the worker ends)."""
        while True:
            if self._stop_event.is_set():
                time.sleep(self.job_monitoring_interval)  # a warm shutdown: jobs still finishing
            else:
                self._stop_event.wait(self.job_monitoring_interval)
            with self._lock:
                running = list(self._running.values())
            if self._stop_event.is_set() and not running:
                return
            for job, execution in running:
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception:
                    log.warning("worker %s: heartbeat of job %s failed", self.name, job.id, exc_info=True)

    def teardown(self) -> None:
        """Warm shutdown: wait for every running job, then unregister (rq's teardown)."""
        if self._fatal is None:
            while True:
                with self._lock:
                    threads = list(self._job_threads)
                if not threads:
                    break
                for thread in threads:
                    thread.join()
        super().teardown()  # type: ignore[no-untyped-call]
        if self._fatal is not None:
            raise self._fatal

    # --- outcomes ----------------------------------------------------------------------------
    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: Any, execution: Execution
    ) -> None:
        super().handle_job_success(job, queue, started_job_registry, execution)
        self.job_ended(job, queue, "finished")

    def _finalize_failure(self, job: Job, queue: Queue, execution: Execution, exc_info: ExcInfo) -> None:
        if self.route_failure(job, queue, execution, exc_info):
            return
        retrying = bool(job.retries_left)
        super()._finalize_failure(job, queue, execution, exc_info)
        self.job_ended(job, queue, "retried" if retrying else "failed")

    def requeue_at_front(self, job: Job, queue: Queue, execution: Execution) -> None:
        """Put ``job`` back at the front of ``queue`` as it was, retries untouched."""
        job.ended_at = rq_now()
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            queue._enqueue_job(job, pipeline=pipe, at_front=True)
            pipe.execute()

    def schedule_again(self, job: Job, queue: Queue, execution: Execution, when: datetime) -> None:
        """Move ``job`` to ``queue``'s scheduled registry for ``when`` (retries as they are)."""
        job.ended_at = rq_now()
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            job.set_status(JobStatus.SCHEDULED, pipeline=pipe)
            queue.schedule_job(job, when, pipeline=pipe)
            pipe.execute()
