"""The worker runtime as real processes against a real redis-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from pirate_worker.contracts import keys
from pirate_worker.contracts.provider_state import parse_document
from pirate_worker.contracts.queues import LLM_JOB_FUNC, LLM_QUEUE, reconcile_job_id, record_job_id
from pirate_worker.runtime.embedded_redis import EmbeddedRedis
from pirate_worker.services.queueing import queue
from tests.integration.conftest import script
from tests.support.processes import ROOT, WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
JSON_SERIALIZER = "rq.serializers.JSONSerializer"


def job_status(redis: Redis, job_id: str) -> str | None:
    raw = redis.hget(f"rq:job:{job_id}", "status")
    return raw.decode() if raw else None


def totals(family: Any) -> list[Any]:
    return [sample for sample in family.samples if sample.name.endswith("_total")]


def zombies_of(pid: int) -> list[str]:
    out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid=,stat="], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line.split()[-1].startswith("Z")]


def fetch(redis: Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)


def start(
    workers: list[WorkerProcess], role: str, count: int, env: dict[str, str], tmp: Path, **kw: Any
) -> WorkerProcess:
    worker = WorkerProcess.start(role, count, env, tmp, **kw)
    workers.append(worker)
    return worker


def test_pipeline_processes_a_record_end_to_end(redis, submit, sample_records, workers, worker_env, tmp_path):
    report = submit(sample_records[:1])
    job_id = report.enqueued[0].job_id
    for role in ("llm", "reconciler", "recorder"):
        start(workers, role, 1, worker_env, tmp_path)
    wait_for(lambda: job_status(redis, record_job_id(job_id)) == "finished", 30, what="recorder job")
    assert job_status(redis, job_id) == "finished"
    reconciled = fetch(redis, reconcile_job_id(job_id)).return_value()
    assert len(reconciled["location_ids"]) == 1
    recorded = Path(fetch(redis, record_job_id(job_id)).return_value()["path"])
    assert recorded.is_file() and json.loads(recorded.read_text())["job_id"] == job_id
    # Every enqueue carries the TTL: finished jobs expire after REDIS_TTL_SECONDS, not never.
    llm_job = fetch(redis, job_id)
    assert llm_job.result_ttl == 3600 and llm_job.failure_ttl == 3600 and llm_job.timeout == 600


def test_sigkill_mid_job_requeues_and_finishes(redis, submit, sample_records, workers, worker_env, tmp_path):
    script(redis, "sleep:30")
    report = submit(sample_records[:1])
    job_id = report.enqueued[0].job_id
    worker = start(workers, "llm", 1, worker_env, tmp_path)
    wait_for(lambda: redis.get("test:provider:calls") == b"1", 20, what="provider call in progress")
    [child] = worker.child_pids()
    os.kill(child, signal.SIGKILL)
    # The supervisor recovers the job at once (one retry used) and a new child finishes it.
    wait_for(lambda: job_status(redis, job_id) == "finished", 40, what="job finished after SIGKILL")
    job = fetch(redis, job_id)
    assert job.retries_left == 2
    assert int(redis.get("test:provider:calls")) == 2
    assert worker.proc.poll() is None
    new_children = wait_for(worker.child_pids, 20, what="restarted child")
    assert child not in new_children
    # The killed child's RQ scheduler was taken down and reaped: no zombies under the supervisor.
    wait_for(lambda: not zombies_of(worker.proc.pid), 10, what="no zombie processes")
    assert queue(redis, LLM_QUEUE).started_job_registry.get_job_count(cleanup=False) == 0


def test_sigterm_mid_job_finishes_it_then_exits_zero(
    redis, submit, sample_records, workers, worker_env, tmp_path
):
    script(redis, "sleep:3")
    report = submit(sample_records[:1])
    job_id = report.enqueued[0].job_id
    worker = start(workers, "llm", 1, worker_env, tmp_path)
    wait_for(lambda: job_status(redis, job_id) == "started", 20, what="job start")
    assert worker.terminate() == 0, worker.log()
    assert job_status(redis, job_id) == "finished"


def test_quota_block_pauses_workers_and_keeps_the_retry_budget(
    redis, submit, sample_records, workers, worker_env, tmp_path
):
    retry_at = int(time.time()) + 6
    script(redis, f"quota_until:{retry_at}")
    report = submit(sample_records[:2])
    first, second = (item.job_id for item in report.enqueued)
    # One process, so no concurrent call can succeed (and clear the block) before it is stored.
    worker = start(workers, "llm", 1, worker_env, tmp_path)

    doc = wait_for(lambda: parse_document(redis.get(keys.quota_status_key("rules"))), 20, what="quota state")
    assert doc.status == "quota_exceeded"
    assert int(doc.retry_at.timestamp()) == retry_at
    ttl = redis.ttl(keys.quota_status_key("rules"))
    assert doc.retry_after + 60 - 5 <= ttl <= doc.retry_after + 60

    # The job that hit the quota is back on the queue, untouched; nobody dequeues while blocked.
    wait_for(lambda: queue(redis, LLM_QUEUE).count == 2, 10, what="both jobs queued")
    assert fetch(redis, first).retries_left == 3 and fetch(redis, second).retries_left == 3
    code, health = worker.json("/health")
    assert code == 200 and health["status"] == "paused" and health["provider_state"] == "quota_exceeded"
    calls_while_blocked = int(redis.get("test:provider:calls"))
    assert calls_while_blocked == 1
    time.sleep(2)  # a window in which a dequeue would show; the block still holds for ~2 more seconds
    assert queue(redis, LLM_QUEUE).count == 2
    assert int(redis.get("test:provider:calls")) == calls_while_blocked
    assert len(worker.child_pids()) == 1

    wait_for(
        lambda: job_status(redis, first) == "finished" and job_status(redis, second) == "finished",
        30,
        what="jobs after retry_at",
    )
    assert time.time() >= retry_at
    assert redis.get(keys.quota_status_key("rules")) is None  # the success cleared the block
    assert fetch(redis, first).retries_left == 3
    assert int(redis.get("test:provider:calls")) == 3  # one refused, then one probe and one more
    code, health = worker.json("/health")
    assert health["status"] == "healthy"


def test_auth_failure_blocks_for_the_auth_delay(redis, submit, sample_records, workers, worker_env, tmp_path):
    script(redis, "auth")
    report = submit(sample_records[:1])
    start(workers, "llm", 1, {**worker_env, "AUTH_RETRY_DELAY": "300"}, tmp_path)
    doc = wait_for(lambda: parse_document(redis.get(keys.auth_status_key("rules"))), 20, what="auth state")
    assert doc.status == "auth_failed" and doc.retry_after == 300
    assert abs((doc.retry_at - datetime.now(UTC)).total_seconds() - 300) < 10
    wait_for(lambda: job_status(redis, report.enqueued[0].job_id) == "queued", 10, what="job back on queue")
    assert fetch(redis, report.enqueued[0].job_id).retries_left == 3


def test_malformed_payload_fails_with_reason_and_worker_keeps_going(
    redis, submit, sample_records, workers, worker_env, tmp_path
):
    bad = queue(redis, LLM_QUEUE).enqueue_call(
        LLM_JOB_FUNC, args=({"prompt": 42, "id": "../../etc"},), timeout=60
    )
    good = submit(sample_records[:1]).enqueued[0].job_id
    worker = start(workers, "llm", 1, worker_env, tmp_path)
    wait_for(lambda: job_status(redis, good) == "finished", 30, what="good job")
    assert job_status(redis, bad.id) == "failed"
    reason = fetch(redis, bad.id).latest_result().exc_string.strip().splitlines()[-1]
    assert "malformed LLM job payload" in reason
    assert worker.proc.poll() is None


def test_health_metrics_and_rq_info(redis, redis_url, submit, sample_records, workers, worker_env, tmp_path):
    submit(sample_records[:3])
    worker = start(workers, "llm", 2, worker_env, tmp_path)
    start(workers, "reconciler", 1, worker_env, tmp_path)
    wait_for(
        lambda: queue(redis, LLM_QUEUE).finished_job_registry.get_job_count(cleanup=False) == 3,
        30,
        what="3 jobs",
    )

    code, health = worker.json("/health")
    assert code == 200
    assert {"provider", "status", "authenticated", "model", "message"} <= health.keys()
    assert health["status"] == "healthy" and health["authenticated"] is True and health["provider"] == "rules"

    code, status = worker.json("/worker-status")
    assert code == 200 and status["total"] == 2
    assert all(w["name"].split(".")[1] == "llm" for w in status["workers"])

    code, body = worker.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    jobs = {
        (s.labels["queue"], s.labels["outcome"]): s.value
        for s in families["pirate_jobs"].samples
        if s.name.endswith("_total")
    }
    assert jobs[("llm", "finished")] == 3
    calls = {
        s.labels["outcome"]: s.value
        for s in families["pirate_provider_calls"].samples
        if s.name.endswith("_total")
    }
    assert calls["success"] == 3

    info = subprocess.run(
        [str(Path(sys.executable).parent / "rq"), "info", "--url", redis_url, "-S", JSON_SERIALIZER],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    for name in ("llm", "reconciler", "recorder"):
        assert name in info.stdout
    for w in status["workers"]:
        assert w["name"] in info.stdout


def test_health_is_503_when_redis_is_down(workers, worker_env, tmp_path):
    private = EmbeddedRedis().start()
    try:
        worker = start(workers, "recorder", 1, {**worker_env, "REDIS_URL": private.url}, tmp_path)
        assert worker.health_code() == 200
        private.kill()
        _, body = wait_for(
            lambda: (lambda r: r if r[0] == 503 else None)(worker.json("/health")), 20, what="503"
        )
        assert body["status"] == "unhealthy" and "redis" in body["message"]
    finally:
        private.stop()


@pytest.mark.parametrize(
    ("env", "args", "needle"),
    [
        ({"WORKER_COUNT": "25"}, [], "WORKER_COUNT"),
        ({"WORKER_COUNT": "zero"}, [], "WORKER_COUNT"),
        ({"REDIS_POOL_SIZE": "-1"}, [], "REDIS_POOL_SIZE"),
        ({"REDIS_URL": "http://localhost"}, [], "REDIS_URL"),
        ({"LLM_PROVIDER": "gpt"}, [], "LLM_PROVIDER"),
        ({"CLAUDE_QUOTA_BACKOFF_MULTIPLIER": "0.5"}, [], "CLAUDE_QUOTA_BACKOFF_MULTIPLIER"),
        ({"LLM_PROVIDER": "anthropic", "ANTHROPIC_API_KEY": ""}, [], "ANTHROPIC_API_KEY"),
        ({"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}, [], "OPENAI_API_KEY"),
        ({"LLM_MAX_ATTEMPTS": "0"}, [], "LLM_MAX_ATTEMPTS"),
        ({"LLM_TIMEOUT_S": "soon"}, [], "LLM_TIMEOUT_S"),
        ({"ANTHROPIC_BASE_URL": "localhost:8080"}, [], "ANTHROPIC_BASE_URL"),
        ({}, ["--count", "21"], "WORKER_COUNT"),
        ({}, ["--count", "0"], "WORKER_COUNT"),
    ],
)
def test_invalid_environment_exits_2_with_one_line(env, args, needle):
    result = subprocess.run(
        [sys.executable, "-m", "pirate_worker", "worker", "--role", "llm", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr


def test_a_provider_without_its_key_fails_at_start_with_the_variable_named():
    env = {**os.environ, "LLM_PROVIDER": "claude", "ANTHROPIC_API_KEY": ""}
    result = subprocess.run(
        [sys.executable, "-m", "pirate_worker", "worker", "--role", "llm"],
        env=env, capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: invalid environment variable ANTHROPIC_API_KEY: required when LLM_PROVIDER=claude"
    )


def test_content_store_hit_skips_the_provider_and_still_chains(
    redis, submit, sample_records, workers, worker_env, tmp_path
):
    from pirate_worker.llm.base import GenerationConfig
    from pirate_worker.llm.prompt import build_messages
    from pirate_worker.llm.rules import RulesProvider
    from pirate_worker.services.content_store import RedisContentStore

    record = sample_records[0]
    item = submit([record]).enqueued[0]
    # Another pod finished the same content while this job waited in the queue.
    generated = RulesProvider().generate(
        build_messages(record.content), {}, GenerationConfig(model="rules-v1")
    )
    response = {"text": generated.text, "model": generated.model, "parsed": generated.parsed}
    RedisContentStore(redis, 3600).complete(item.content_hash, "other-job", response)

    for role in ("llm", "reconciler", "recorder"):
        start(workers, role, 1, worker_env, tmp_path)
    wait_for(lambda: job_status(redis, record_job_id(item.job_id)) == "finished", 30, what="chained recorder")
    assert redis.get("test:provider:calls") is None
    result = fetch(redis, item.job_id).return_value()
    assert result["from_content_store"] is True
    assert job_status(redis, reconcile_job_id(item.job_id)) == "finished"
    assert RedisContentStore(redis, 3600).stats().processing_hits == 1


def test_an_idle_worker_puts_back_the_job_of_a_dead_pod_within_its_maintenance_interval(
    redis, redis_url, workers, tmp_path
):
    """A pod killed mid-job (node lost, container killed) leaves its job in the started registry
    with a heartbeat that expires; an idle worker elsewhere must notice within its maintenance
    interval (30 s), not after its 405 s blocking dequeue."""
    worker = start(workers, "slow", 1, {"REDIS_URL": redis_url}, tmp_path, scripted=False,
                   extra_args=["--queues", "slow"])  # fmt: skip
    wait_for(lambda: redis.scard("rq:workers") == 1, 20, what="the idle worker registered")
    time.sleep(3)  # past its start-up maintenance: from here only the periodic one can find the job
    queue = Queue("slow", connection=redis, serializer=JSONSerializer)
    orphan = queue.create_job("time.sleep", args=[0], job_id="orphan", retry=Retry(max=1))
    orphan.save()
    orphan.set_status(JobStatus.STARTED)
    # Its execution in the started registry, scored with a heartbeat that expired 5 s ago.
    registry = StartedJobRegistry(queue=queue)
    redis.zadd(registry.key, {f"orphan:{uuid.uuid4().hex}": time.time() - 5})
    assert redis.llen("rq:queue:slow") == 0, "the job is nowhere but the started registry"

    wait_for(lambda: job_status(redis, "orphan") == "finished", 45, what="the orphan run again and finished")
    assert worker.proc.poll() is None
