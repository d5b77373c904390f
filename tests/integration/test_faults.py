"""Fault injection on the whole pipeline: real worker processes, a real redis-server with AOF.

Each test pushes a few hundred distinct records through llm → reconciler + recorder while a fault
hits, then accounts for every job id across RQ's queues and registries (one place each, finished
or failed with a reason) and checks the outputs: one recorder file per job, the reconciler's rows
exactly those of the distinct records. ``bench/faults.py`` runs the same faults with N=1,000 and
measures recovery times; nothing here asserts a duration (timeouts are generous bounds only).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Retry
from rq.executions import Execution

from pirate_worker.contracts import keys
from pirate_worker.contracts.queues import LLM_QUEUE, RECONCILER_QUEUE, RECORDER_QUEUE, record_job_id
from pirate_worker.errors import ServiceUnavailable
from pirate_worker.runtime.recovery import StrandedJobs
from pirate_worker.services.queueing import queue
from pirate_worker.services.scraper_files import ScrapedRecord
from tests.conftest import missing_service
from tests.support.faults import (
    Chaos,
    Ledger,
    Pipeline,
    expected_rows,
    failure_reason,
    kill_random_child,
    ledger,
    metric_total,
    progress,
    read_outputs,
    retries_used,
    synthetic_records,
    wait_progress,
)
from tests.support.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 240
#: A bound on the whole run, not a performance figure (bench/faults.py measures those).
SETTLE_S = 300.0


@pytest.fixture
def start_pipeline(tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    """A dedicated server (AOF on, restartable on its port), not the session one: tests kill it."""
    started: list[Pipeline] = []

    def start(**env: str) -> Pipeline:
        run = Pipeline(tmp_path, env)
        started.append(run)
        try:
            run.start_redis()
        except ServiceUnavailable as exc:
            missing_service(str(exc))
        return run

    yield start
    for run in started:
        run.stop()


@pytest.fixture
def pipeline(start_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return start_pipeline()


@pytest.fixture
def client(pipeline: Pipeline) -> Iterator[Redis]:
    connection = pipeline.client()
    yield connection
    connection.close()


def assert_outputs_exact(pipeline: Pipeline, book: Ledger, records: list[ScrapedRecord]) -> None:
    """One recorder file per recorded job, summary counts matching, DB rows those of the records."""
    outputs = read_outputs(pipeline.output_dir, pipeline.database)
    recorded = [j for j in book.llm_ids if book.place(record_job_id(j)) == "finished"]
    assert sorted(outputs.recorded_ids) == sorted(recorded)
    assert len(outputs.recorder_files) == len(set(outputs.recorded_ids))
    assert outputs.summary_total == len(recorded), "recorder summary out of step with its files"
    reconciled = [
        r for r, j in zip(records, book.llm_ids, strict=True) if book.place(f"{j}-reconcile") == "finished"
    ]
    expected = expected_rows(reconciled)
    assert {t: outputs.db_rows.get(t, 0) for t in expected} == expected
    assert outputs.db_rows.get("source_record", 0) == len(reconciled)


def assert_failures_explained(client: Redis, book: Ledger, allowed: tuple[str, ...]) -> None:
    for job_id in book.in_place("failed"):
        reason = failure_reason(client, job_id)
        assert reason, f"job {job_id} failed without a reason"
        assert any(word in reason for word in allowed), f"job {job_id} failed: {reason}"


def test_sigkill_random_workers_loses_and_duplicates_nothing(pipeline: Pipeline, client: Redis) -> None:
    records = synthetic_records(JOBS)
    # Each provider call takes a little while, so a kill usually lands on a job in flight.
    pipeline.start_workers()
    pipeline.script(*["sleep:0.3"] * (2 * JOBS))
    llm_ids = pipeline.submit(records)

    with Chaos(kill_random_child(pipeline), interval=(1.0, 2.0), seed=7) as chaos:
        wait_progress(client, JOBS * 9 // 10, SETTLE_S, "nine tenths of the jobs recorded")
    assert not chaos.errors, chaos.errors
    assert len(chaos.done) >= 5, chaos.done  # the faults really happened
    book = pipeline.settle(client, llm_ids, SETTLE_S)

    assert not book.missing and not book.duplicated
    assert_failures_explained(client, book, allowed=("died",))
    assert book.count("failed") <= len(chaos.done)  # a job fails only after repeated deaths
    # Killed mid-job workers' jobs were handed back by their supervisors, not waited out.
    assert metric_total(pipeline, "pirate_recovered_jobs") >= 1
    assert_outputs_exact(pipeline, book, records)


def test_sigterm_scale_in_fails_no_in_flight_job(pipeline: Pipeline, client: Redis) -> None:
    records = synthetic_records(JOBS)
    layout = {LLM_QUEUE: (3, 1), RECONCILER_QUEUE: (2, 1), RECORDER_QUEUE: (2, 1)}
    pipeline.start_workers(layout)
    # Slow calls until well after the scale-in, so it finds jobs in flight; quick ones after.
    pipeline.script(*["sleep:0.3"] * (JOBS * 6 // 10))
    llm_ids = pipeline.submit(records)
    wait_progress(client, JOBS // 4, SETTLE_S, "a quarter of the jobs recorded")

    leaving = [pipeline.supervisors[LLM_QUEUE][0], pipeline.supervisors[LLM_QUEUE][1]]
    leaving += [pipeline.supervisors[RECONCILER_QUEUE][0], pipeline.supervisors[RECORDER_QUEUE][0]]
    in_flight = ledger(client, llm_ids).in_place("started")
    assert in_flight, "scale-in should happen while jobs run"
    for worker in leaving:
        worker.proc.send_signal(signal.SIGTERM)
    for worker in leaving:
        assert worker.proc.wait(timeout=120) == 0, worker.log()
    for role in (LLM_QUEUE, RECONCILER_QUEUE, RECORDER_QUEUE):
        pipeline.supervisors[role] = [w for w in pipeline.supervisors[role] if w not in leaving]
    pipeline.retired += leaving

    book = pipeline.settle(client, llm_ids, SETTLE_S)
    assert book.count("failed") == 0, book.summary()
    assert not book.missing and not book.duplicated
    # Warm shutdown: every job ran once, none was recovered or retried (budgets intact).
    assert set(retries_used(client, book.expected).values()) == {0}
    assert all(book.place(job_id) == "finished" for job_id in in_flight)
    assert_outputs_exact(pipeline, book, records)


@pytest.mark.parametrize("how", ["sigkill", "shutdown"])
def test_redis_restart_mid_run_workers_resume_and_lose_nothing(
    pipeline: Pipeline, client: Redis, how: str
) -> None:
    records = synthetic_records(JOBS)
    pipeline.start_workers()
    pipeline.script(*["sleep:0.05"] * (2 * JOBS))
    llm_ids = pipeline.submit(records)
    wait_progress(client, JOBS // 4, SETTLE_S, "a quarter of the jobs recorded")

    if how == "sigkill":
        pipeline.server.kill()
    else:
        pipeline.server.shutdown()
    supervisors = [w for ws in pipeline.supervisors.values() for w in ws]
    wait_for(
        lambda: all(w.health_code() == 503 for w in supervisors),
        30,
        what="every supervisor reports Redis down",
    )
    time.sleep(2)  # the outage: workers retry against a closed port meanwhile
    pipeline.server.start()
    before = progress(client)

    # Nobody restarts the workers: they reconnect and the pipeline moves again.
    wait_for(lambda: progress(client) > before, SETTLE_S, what="jobs finishing after the restart")
    assert all(w.proc.poll() is None for w in supervisors), pipeline.logs()
    wait_for(lambda: all(w.health_code() == 200 for w in supervisors), 60, what="every supervisor healthy")
    book = pipeline.settle(client, llm_ids, SETTLE_S)
    assert not book.missing and not book.duplicated
    assert book.count("failed") == 0, [failure_reason(client, j) for j in book.in_place("failed")]
    assert_outputs_exact(pipeline, book, records)


def test_provider_flapping_loses_nothing_and_burns_no_retry_on_quota_or_auth(
    start_pipeline: Callable[..., Pipeline],
) -> None:
    # Blocks of a second or two: the auth delay and the quota backoff shortened through their env.
    pipeline = start_pipeline(AUTH_RETRY_DELAY="2", CLAUDE_QUOTA_RETRY_DELAY="1", CLAUDE_QUOTA_MAX_DELAY="2")
    client = pipeline.client()
    records = synthetic_records(JOBS)
    rounds = 6
    ok = ["ok"] * 8
    # 429 with a reset time, 401, a transient overload with retry-after, 429 without a reset time.
    flaps = ["quota_in:1.5", "auth", "transient:1", "quota"]
    steps = [step for _ in range(rounds) for flap in flaps for step in (*ok, flap)]
    assert len(steps) < JOBS  # every step is consumed: each job makes at least one call
    pipeline.start_workers()
    pipeline.script(*steps)
    llm_ids = pipeline.submit(records)
    book = pipeline.settle(client, llm_ids, SETTLE_S)

    assert client.llen("test:provider:script") == 0
    stats = {k.decode(): int(v) for k, v in client.hgetall(keys.run_stats_key()).items()}
    assert stats["provider_calls:quota_exceeded"] == 2 * rounds
    assert stats["provider_calls:auth_failed"] == rounds
    assert stats["provider_calls:transient_error"] == rounds
    assert book.count("failed") == 0, [failure_reason(client, j) for j in book.in_place("failed")]
    assert not book.missing and not book.duplicated
    # Only the transient errors used retries, one each; quota and auth blocks used none.
    used = retries_used(client, book.expected)
    assert None not in used.values()
    assert sum(n or 0 for n in used.values()) == rounds
    assert_outputs_exact(pipeline, book, records)
    client.close()


def test_the_stranded_sweep_requeues_only_jobs_dequeued_and_never_started(redis: Redis) -> None:
    q = queue(redis, "llm")
    stranded, starting = (
        q.enqueue_call("time.sleep", args=(0,), timeout=60, retry=Retry(max=3)) for _ in range(2)
    )
    # Both taken by a worker (LMOVE to the intermediate list); only the second one got started.
    for _ in range(2):
        redis.lmove(q.key, q.intermediate_queue.key)
    with redis.pipeline() as pipe:  # as the worker's start pipeline does
        q.started_job_registry.add_execution(Execution("e1", starting.id, redis), pipe, ttl=60)
        pipe.execute()
    sweep = StrandedJobs(grace_s=15)
    assert sweep.sweep(redis, ("llm",), now=100.0) == []  # first sight: maybe just a slow start
    assert sweep.sweep(redis, ("llm",), now=110.0) == []
    assert sweep.sweep(redis, ("llm",), now=115.0) == [stranded.id]
    assert q.get_job_ids() == [stranded.id]
    assert q.intermediate_queue.get_job_ids() == [starting.id]
    assert retries_used(redis, [stranded.id]) == {stranded.id: 0}  # untouched: it never ran
    # A second supervisor sweeping the same queue finds nothing left to requeue.
    assert StrandedJobs(grace_s=0).sweep(redis, ("llm",), now=200.0) == []
