"""Run N worker processes for one role: restart the ones that die, drain them all on SIGTERM.

The supervisor is the pod's PID 1 (exec-form entrypoint). It owns the health/metrics server,
counts the events its children send, recovers a dead child's job at once, and on SIGTERM asks
every child for a warm shutdown (finish the current job, then exit) and exits 0 when they have.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import multiprocessing
import os
import queue as queue_module
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from pirate_worker.contracts.connection import connect
from pirate_worker.contracts.queues import (
    DEFAULT_JOB_TIMEOUTS,
    LLM_QUEUE,
    PROVIDER_GATED_ROLES,
    RECONCILER_QUEUE,
    allowed_job_functions,
)
from pirate_worker.contracts.workers import worker_name
from pirate_worker.runtime.health import HealthReporter, HealthServer
from pirate_worker.runtime.metrics import WorkerMetrics
from pirate_worker.runtime.recovery import StrandedJobs, recover_dead_worker
from pirate_worker.services.provider_state import provider_state_store
from pirate_worker.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PROVIDER_FACTORY = "pirate_worker.llm.factory:build_provider"
RESTART_BACKOFF_MAX_S = 30.0
#: A child that dies within this many seconds of its start counts towards the restart backoff.
CRASH_LOOP_WINDOW_S = 60.0
#: How often a supervisor whose children lost Redis checks whether it is back.
REDIS_POLL_S = 0.5
WATCH_INTERVAL_S = 0.2
#: How often the supervisor looks for jobs stranded between dequeue and start.
STRANDED_SWEEP_S = 5.0
PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class WorkerPlan:
    """What to run: a role, its queues, how many processes and how they behave."""

    role: str
    queues: tuple[str, ...]
    count: int
    burst: bool = False
    gated: bool = False
    provider_factory: str = DEFAULT_PROVIDER_FACTORY
    hostname: str = field(default_factory=socket.gethostname)

    @classmethod
    def for_role(
        cls, role: str, queues: tuple[str, ...], count: int, burst: bool = False, **kw: Any
    ) -> WorkerPlan:
        return cls(
            role=role, queues=queues, count=count, burst=burst, gated=role in PROVIDER_GATED_ROLES, **kw
        )

    def worker_name(self, index: int, pid: int) -> str:
        """``<host>.<role>.<index>.<pid>``: the host (``POD_NAME`` in a pod) maps a worker to its pod."""
        return worker_name(self.hostname, self.role, index, pid)


class _QueueSink:
    """Event sink of a child: non-blocking puts onto the supervisor's queue."""

    def __init__(self, events: Any) -> None:
        self._events = events

    def emit(self, kind: str, **labels: Any) -> None:
        # Metrics are best effort: never block or fail a job on them.
        with contextlib.suppress(queue_module.Full, OSError, ValueError):
            self._events.put_nowait((kind, labels))


def load_factory(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    factory: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return factory


def child_main(settings: Settings, plan: WorkerPlan, index: int, events: Any) -> None:
    """Entry point of one worker process (spawned, so it starts clean of the parent's threads)."""
    from rq.serializers import JSONSerializer

    from pirate_worker.jobs.context import JobContext, install
    from pirate_worker.runtime.worker import PirateWorker, ProviderGate

    # Own process group: when this child dies, the supervisor can take its RQ scheduler process
    # (a grandchild) down with it instead of leaving an orphan holding the scheduler lock.
    os.setpgrp()

    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The HTTP clients under the LLM SDKs log every request at INFO (and headers at DEBUG).
    for noisy in ("httpx", "httpcore", "anthropic", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Calls in flight per process for whatever runs LLM jobs (custom roles on the llm queue too).
    concurrency = settings.LLM_CONCURRENCY if LLM_QUEUE in plan.queues else 1
    # One connection per running job, plus the worker's own, the heartbeats and the scheduler's.
    connection = connect(settings.REDIS_URL, max(settings.REDIS_POOL_SIZE, concurrency + 10))
    sink = _QueueSink(events)
    context = JobContext(
        settings=settings, redis=connection, provider_factory=load_factory(plan.provider_factory), events=sink
    )
    install(context)
    if RECONCILER_QUEUE in plan.queues:
        _warm_up_reconciler(context)
    gate = None
    if plan.gated:
        probe_ttl = DEFAULT_JOB_TIMEOUTS.get(plan.queues[0], 600) + 60
        gate = ProviderGate(context.provider_state, context.clock, probe_ttl)
    worker = PirateWorker(
        list(plan.queues),
        name=plan.worker_name(index, os.getpid()),
        connection=connection,
        serializer=JSONSerializer,
        gate=gate,
        events=sink,
        allowed_functions=allowed_job_functions(plan.queues),
        maintenance_interval=30,
        concurrency=concurrency,
    )
    # RQ logs every job at INFO; our metrics count them, so its chatter stays at warnings.
    rq_level = "DEBUG" if settings.LOG_LEVEL == "DEBUG" else "WARNING"
    worker.work(burst=plan.burst, with_scheduler=True, logging_level=rq_level)


def _warm_up_reconciler(context: Any) -> None:
    """Open (and migrate, see ``DATABASE_AUTO_MIGRATE``) the database and build the HSDS validator
    before the first job, which otherwise pays seconds of imports and set-up. Trouble is logged,
    not fatal: the first job opens the database again and is retried while it is unavailable."""
    from pirate_worker.errors import PirateError
    from pirate_worker.hsds.schema import validate_aligned

    validate_aligned({})
    try:
        context.database  # noqa: B018 - the cached property opens the engine and checks the schema
    except PirateError as exc:
        log.warning("reconciler start: %s (the first job will try again)", exc)


@dataclass
class _Child:
    index: int
    process: BaseProcess
    name: str
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, settings: Settings, plan: WorkerPlan) -> None:
        self.settings = settings
        self.plan = plan
        self.metrics = WorkerMetrics()
        self._ctx = multiprocessing.get_context("spawn")
        self._events = self._ctx.Queue(maxsize=100_000)
        self._children: dict[int, _Child] = {}
        self._stopping = threading.Event()
        self._connection = connect(settings.REDIS_URL, min(settings.REDIS_POOL_SIZE, 8))
        self._server: HealthServer | None = None
        self._stranded = StrandedJobs()
        self._swept_at = time.monotonic()

    # --- public -----------------------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM/SIGINT (or, in burst mode, until every child is done). Exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        _become_subreaper()
        threading.Thread(target=self._drain_events, name="events", daemon=True).start()
        self._start_server()
        for index in range(self.plan.count):
            self._spawn(index)
        log.info(
            "supervising %d %s worker(s) on %s", self.plan.count, self.plan.role, ",".join(self.plan.queues)
        )
        try:
            return self._watch()
        finally:
            if self._server is not None:
                self._server.stop()

    @property
    def health_port(self) -> int | None:
        return self._server.port if self._server else None

    # --- internals --------------------------------------------------------------------------
    def _start_server(self) -> None:
        if self.settings.HEALTH_PORT == 0:
            return
        state = provider_state_store(self.settings, self._connection)
        reporter = HealthReporter(
            self._connection, state, self.settings.model_name, self.plan.gated, self._worker_list
        )
        if self.plan.gated:
            from pirate_worker.jobs.context import build_content_store

            store = build_content_store(self.settings, self._connection)
            if store is not None:
                self.metrics.track_avoided_calls(store.stats)
        self._server = HealthServer("0.0.0.0", self.settings.HEALTH_PORT, reporter, self.metrics)
        self._server.start()

    def _worker_list(self) -> list[tuple[str, int, bool]]:
        return [(c.name, c.process.pid or 0, c.process.is_alive()) for c in list(self._children.values())]

    def _spawn(self, index: int, restarts: int = 0) -> None:
        process = self._ctx.Process(
            target=child_main,
            args=(self.settings, self.plan, index, self._events),
            name=f"{self.plan.role}-{index}",
        )
        process.start()
        assert process.pid is not None
        self._children[index] = _Child(index, process, self.plan.worker_name(index, process.pid), restarts)
        self.metrics.workers.set(len(self._children))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("%s: warm shutdown, waiting for running jobs", signal.Signals(signum).name)
        for child in self._children.values():
            if child.process.is_alive() and child.process.pid:
                os.kill(child.process.pid, signal.SIGTERM)

    def _watch(self) -> int:
        exit_code = 0
        while self._children:
            # Poll rather than wait on sentinels: a child's forked scheduler inherits the
            # sentinel pipe, so a killed child's sentinel would not fire while that lives.
            time.sleep(WATCH_INTERVAL_S)
            self._reap_orphans()
            self._sweep_stranded()
            for child in [c for c in self._children.values() if not c.process.is_alive()]:
                child.process.join()
                code = child.process.exitcode or 0
                del self._children[child.index]
                _kill_group(child)
                self.metrics.workers.set(len(self._children))
                if self._stopping.is_set():
                    # A child that SIGTERM reached before RQ installed its handler had no job yet.
                    clean = code in (0, -signal.SIGTERM)
                    exit_code = exit_code or (0 if clean else 1)
                    continue
                if self.plan.burst and code == 0:
                    continue
                self._restart(child, code)
        return exit_code

    def _sweep_stranded(self) -> None:
        moment = time.monotonic()
        if moment - self._swept_at < STRANDED_SWEEP_S:
            return
        self._swept_at = moment
        try:
            requeued = self._stranded.sweep(self._connection, self.plan.queues, moment)
        except Exception:
            log.debug("stranded-job sweep failed; next one in %.0fs", STRANDED_SWEEP_S, exc_info=True)
            return
        self.metrics.recovered_jobs.inc(len(requeued))

    def _reap_orphans(self) -> None:
        """As a pod's PID 1, collect exited processes that are not our children (zombies).

        Killed children leave their RQ scheduler behind; its parent is gone, so it is re-parented
        to us. Our own children are left to multiprocessing, which waits for them itself.
        """
        ours = {c.process.pid for c in self._children.values()}
        while True:
            try:
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if found is None or found.si_pid in ours:
                return
            with contextlib.suppress(ChildProcessError):
                os.waitpid(found.si_pid, 0)

    def _restart(self, child: _Child, code: int) -> None:
        reason = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        outage = not self._redis_answers()
        if outage:
            # Children die when Redis goes away. Restarting them into a crash loop would back
            # off to 30 s and delay the reconnect; wait for Redis instead, then recover the job
            # (which needs Redis) and restart without counting this death as a crash.
            log.warning(
                "worker %s died (%s) with Redis unreachable; restarting when it answers", child.name, reason
            )
            if not self._wait_for_redis():
                return
        try:
            recovered = recover_dead_worker(self._connection, child.name, reason)
            self.metrics.recovered_jobs.inc(len(recovered))
        except Exception:
            log.warning(
                "could not recover jobs of %s; RQ will after its heartbeat expires", child.name, exc_info=True
            )
        # A child that ran for a while (or died of an outage) earns a fresh backoff; a crash loop
        # backs off to 30 s.
        ran_a_while = time.monotonic() - child.started_at > CRASH_LOOP_WINDOW_S
        restarts = 0 if outage or ran_a_while else child.restarts
        delay = min(2.0**restarts - 1, RESTART_BACKOFF_MAX_S)
        log.warning("worker %s died (%s); restarting in %.0fs", child.name, reason, delay)
        self.metrics.restarts.inc()
        if delay and self._stopping.wait(delay):
            return
        self._spawn(child.index, restarts + 1)

    def _redis_answers(self) -> bool:
        try:
            return bool(self._connection.ping())
        except Exception:
            return False

    def _wait_for_redis(self) -> bool:
        """Poll Redis until it answers (True) or a stop is requested (False)."""
        while not self._redis_answers():
            if self._stopping.wait(REDIS_POLL_S):
                return False
        log.info("redis answers again")
        return True

    def _drain_events(self) -> None:
        while True:
            try:
                kind, labels = self._events.get()
            except (EOFError, OSError):
                return
            try:
                self.metrics.apply(kind, labels)
            except Exception:
                log.debug("bad metrics event %r", kind, exc_info=True)


def _become_subreaper() -> None:
    """Have orphaned grandchildren (a dead child's RQ scheduler) re-parented to us, not to init.

    In a pod we are PID 1 anyway; elsewhere (systemd, a laptop) this keeps the same behaviour,
    and :meth:`Supervisor._reap_orphans` collects them. Linux only; a no-op elsewhere.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _kill_group(child: _Child) -> None:
    """Take down what the dead child left behind in its process group (its RQ scheduler)."""
    if child.process.pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, signal.SIGKILL)


def run_workers(settings: Settings, plan: WorkerPlan) -> int:
    """Run the supervisor in this process; returns the exit code."""
    return Supervisor(settings, plan).run()
