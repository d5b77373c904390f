"""Provider capacity (#16): many calls in flight per worker process, fleet-wide pacing, paced 429s.

Real worker processes (``pirate-workers worker``), a real redis-server and the official anthropic
SDK against the local wire server, which counts the calls in flight at once and enforces a
requests-per-minute limit with Anthropic's headers.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from pirate_worker.contracts import keys
from pirate_worker.contracts.queues import LLM_QUEUE
from pirate_worker.contracts.rate_budget import parse_budget
from pirate_worker.services.queueing import queue
from tests.support.llm_server import LLMServer, RequestLimit, error
from tests.support.processes import WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def slow_server() -> Iterator[LLMServer]:
    with LLMServer(latency=(2.0, 2.0)) as server:
        yield server


def anthropic_env(server: LLMServer, worker_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **worker_env,
        "LLM_PROVIDER": "anthropic",
        "LLM_MODEL_NAME": "claude-test",
        "ANTHROPIC_API_KEY": "sk-ant-test-capacity",
        "ANTHROPIC_BASE_URL": server.url,
        "LLM_TIMEOUT_S": "60",
        **extra,
    }


def start_llm(workers: list[WorkerProcess], env: dict[str, str], tmp: Path, count: int = 1) -> WorkerProcess:
    worker = WorkerProcess.start("llm", count, env, tmp, scripted=False)
    workers.append(worker)
    return worker


def statuses(redis: Redis, job_ids: list[str]) -> list[str]:
    return [(redis.hget(f"rq:job:{job_id}", "status") or b"").decode() for job_id in job_ids]


def fetch(redis: Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)


def stat(redis: Redis, field: str) -> int:
    return int(redis.hget(keys.run_stats_key(), field) or 0)


def unique(sample_records: list, count: int) -> list:
    seen, picked = set(), []
    for record in sample_records:
        if record.content not in seen:
            seen.add(record.content)
            picked.append(record)
    assert len(picked) >= count, f"examples hold {len(picked)} distinct records"
    return picked[:count]


def test_one_process_holds_n_calls_in_flight_each_a_started_job_with_its_own_heartbeat(
    redis, submit, sample_records, workers, worker_env, tmp_path, slow_server
):
    report = submit(unique(sample_records, 16))
    job_ids = [item.job_id for item in report.enqueued]
    start_llm(workers, anthropic_env(slow_server, worker_env, LLM_CONCURRENCY="8"), tmp_path)
    started = queue(redis, LLM_QUEUE).started_job_registry
    wait_for(lambda: slow_server.in_flight == 8, 30, what="8 calls in flight")
    # One RQ worker (one process), eight executions in its started registry, each heartbeating.
    llm_workers = [w for w in Worker.all(connection=redis) if LLM_QUEUE in w.queue_names()]
    assert len(llm_workers) == 1
    assert started.get_job_count(cleanup=False) == 8
    executions = llm_workers[0].get_current_executions(refresh=True)
    assert len({e.job_id for e in executions}) == 8
    assert all(e.last_heartbeat is not None for e in executions)
    wait_for(lambda: set(statuses(redis, job_ids)) == {"finished"}, 60, what="all 16 jobs finished")
    assert slow_server.max_in_flight == 8  # never more than the process's slots
    assert slow_server.calls() == 16  # every record asked once
    assert stat(redis, "provider_calls:success") == 16


def test_warm_shutdown_finishes_every_call_in_flight_and_leaves_the_rest_queued(
    redis, submit, sample_records, workers, worker_env, tmp_path, slow_server
):
    report = submit(unique(sample_records, 10))
    job_ids = [item.job_id for item in report.enqueued]
    worker = start_llm(workers, anthropic_env(slow_server, worker_env, LLM_CONCURRENCY="6"), tmp_path)
    wait_for(lambda: slow_server.in_flight == 6, 30, what="6 calls in flight")
    assert worker.terminate() == 0, worker.log()
    # Every job whose call was in flight (or done) finished; none was left half-way; the
    # jobs never called are still queued. (Until the first answer shows the server sends no
    # rate-limit headers, calls go one at a time: a seventh may have started by now.)
    done = statuses(redis, job_ids)
    assert done.count("finished") == slow_server.calls() >= 6, done
    assert done.count("queued") == 10 - slow_server.calls() >= 1, done
    assert queue(redis, LLM_QUEUE).started_job_registry.get_job_count(cleanup=False) == 0
    assert [w for w in Worker.all(connection=redis) if LLM_QUEUE in w.queue_names()] == []


def test_sigkill_with_n_in_flight_requeues_every_one_and_none_completes_twice(
    redis, submit, sample_records, workers, worker_env, tmp_path
):
    with LLMServer(latency=(30.0, 30.0)) as server:
        report = submit(unique(sample_records, 4))
        job_ids = [item.job_id for item in report.enqueued]
        # Unpaced: no first answer for 30 s would teach the budget that this server has no limit.
        env = anthropic_env(server, worker_env, LLM_CONCURRENCY="4", LLM_RATE_PACING="false")
        worker = start_llm(workers, env, tmp_path)
        wait_for(lambda: server.in_flight == 4, 30, what="4 calls in flight")
        [child] = worker.child_pids()
        server.latency = (0.1, 0.1)  # the restarted child's calls answer at once
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: set(statuses(redis, job_ids)) == {"finished"}, 60, what="all 4 finished")
    # The supervisor put each of the four back (one retry used each); each completed once.
    assert [fetch(redis, job_id).retries_left for job_id in job_ids] == [2, 2, 2, 2]
    assert stat(redis, "provider_calls:success") == 4
    assert queue(redis, LLM_QUEUE).started_job_registry.get_job_count(cleanup=False) == 0


def test_the_fleet_paces_to_the_limit_without_429s_and_learns_it_into_the_budget(
    redis, submit, sample_records, workers, worker_env, tmp_path
):
    # 2 requests/s, bursts of 20: two processes of 8 slots would send ~50/s unpaced.
    limit = RequestLimit(per_minute=120, capacity=20)
    with LLMServer(limit=limit, latency=(0.1, 0.3)) as server:
        report = submit(unique(sample_records, 40))
        job_ids = [item.job_id for item in report.enqueued]
        start_llm(workers, anthropic_env(server, worker_env, LLM_CONCURRENCY="8"), tmp_path, count=2)
        wait_for(lambda: set(statuses(redis, job_ids)) == {"finished"}, 90, what="all 40 finished")
        assert server.rate_limited == 0
        assert server.calls() == 40
    assert [fetch(redis, job_id).retries_left for job_id in job_ids] == [3] * 40
    budget = parse_budget(redis.hgetall(keys.rate_budget_key("anthropic")))
    assert budget is not None and budget.limits == {"requests": 120.0}
    assert budget.used_per_call["requests"] == 1.0 and budget.call_s is not None
    assert budget.calls_per_second() == pytest.approx(2.0)


def test_without_pacing_the_same_fleet_trips_the_limit(
    redis, submit, sample_records, workers, worker_env, tmp_path
):
    """The control of the test above: the limit is really there to trip."""
    limit = RequestLimit(per_minute=120, capacity=20)
    with LLMServer(limit=limit, latency=(0.1, 0.3)) as server:
        report = submit(unique(sample_records, 40))
        job_ids = [item.job_id for item in report.enqueued]
        env = anthropic_env(server, worker_env, LLM_CONCURRENCY="8", LLM_RATE_PACING="false")
        start_llm(workers, env, tmp_path, count=2)
        wait_for(lambda: set(statuses(redis, job_ids)) == {"finished"}, 120, what="all 40 finished")
        assert server.rate_limited > 0
    # Even unpaced, a 429 is the provider's pacing: no job spent a retry on it.
    assert [fetch(redis, job_id).retries_left for job_id in job_ids] == [3] * 40
    assert stat(redis, "provider_calls:rate_limited") == server.rate_limited


def test_a_429_waits_its_retry_after_and_spends_no_retry(
    redis, submit, sample_records, workers, worker_env, tmp_path
):
    with LLMServer() as server:
        headers = {"retry-after": "2", "anthropic-ratelimit-requests-remaining": "0"}
        server.script(error(429, "rate limited", headers))
        report = submit(unique(sample_records, 1))
        [job_id] = [item.job_id for item in report.enqueued]
        start_llm(workers, anthropic_env(server, worker_env), tmp_path)
        wait_for(lambda: statuses(redis, [job_id]) == ["finished"], 40, what="job finished after its 429")
        assert server.calls() == 2
    job = fetch(redis, job_id)
    assert job.retries_left == 3
    assert stat(redis, "provider_calls:rate_limited") == 1
    assert stat(redis, "provider_calls:success") == 1


def test_a_fleet_larger_than_the_limit_sheds_its_surplus_instead_of_holding_slots(
    redis, submit, sample_records, workers, worker_env, tmp_path
):
    """A call whose turn is further away than LLM_TRANSIENT_RETRY_MAX_S is not sent: its job goes
    back to the front of the queue untouched and the worker takes no job until the budget frees."""
    limit = RequestLimit(per_minute=60, capacity=10)  # one a second; 8 slots want ~50
    with LLMServer(limit=limit, latency=(0.1, 0.2)) as server:
        report = submit(unique(sample_records, 30))
        job_ids = [item.job_id for item in report.enqueued]
        env = anthropic_env(server, worker_env, LLM_CONCURRENCY="8", LLM_TRANSIENT_RETRY_MAX_S="2")
        worker = start_llm(workers, env, tmp_path)
        wait_for(lambda: set(statuses(redis, job_ids)) == {"finished"}, 120, what="all 30 finished")
        assert server.calls() == 30 and server.rate_limited == 0  # each sent once, none refused
        _, metrics = worker.get("/metrics")
    assert [fetch(redis, job_id).retries_left for job_id in job_ids] == [3] * 30
    shed = [
        line
        for line in metrics.decode().splitlines()
        if line.startswith("pirate_jobs_total{") and 'outcome="requeued_paced"' in line
    ]
    assert shed and float(shed[0].rsplit(" ", 1)[1]) > 0, metrics.decode()
