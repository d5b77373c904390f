"""Issue 3's scenarios: real worker processes (``pirate-workers worker``) with the SDK providers,
unpatched, talking to the local wire server; real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from pirate_worker.contracts import keys
from pirate_worker.contracts.provider_state import parse_document
from pirate_worker.contracts.queues import LLM_QUEUE, reconcile_job_id
from pirate_worker.llm.prompt import FEEDBACK_HEADER
from pirate_worker.services.queueing import queue
from tests.support.llm_server import (
    LLMServer,
    RecordedRequest,
    error,
    garbage,
    invalid_schema,
    truncated,
    valid,
)
from tests.support.processes import ROOT, WorkerProcess, wait_for
from tests.support.secrets import redis_dump

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYS = {"anthropic": "sk-ant-scenario-7f3a9c2e5b1d4f60", "openai": "sk-scenario-openai-9d8c7b6a5f4e3d2c"}
STATE_PREFIX = {"anthropic": "claude", "openai": "openai", "ollama": "ollama"}


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server


def provider_env(provider: str, server: LLMServer, **extra: str) -> dict[str, str]:
    env = {
        "LLM_PROVIDER": provider,
        "LLM_MODEL_NAME": f"{provider}-test-model",
        "LLM_TIMEOUT_S": "2",
        **extra,
    }
    if provider == "anthropic":
        env.update(ANTHROPIC_API_KEY=KEYS["anthropic"], ANTHROPIC_BASE_URL=server.url)
    elif provider == "openai":
        env.update(OPENAI_API_KEY=KEYS["openai"], OPENAI_BASE_URL=f"{server.url}/v1")
    else:
        env.update(OLLAMA_HOST=server.url)
    return env


def start_llm(
    workers: list[WorkerProcess], env: dict[str, str], tmp: Path, role: str = "llm", count: int = 1
) -> WorkerProcess:
    worker = WorkerProcess.start(role, count, env, tmp, scripted=False)
    workers.append(worker)
    return worker


def fetch(redis: Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)


def status_of(redis: Redis, job_id: str) -> str | None:
    raw = redis.hget(f"rq:job:{job_id}", "status")
    return raw.decode() if raw else None


def failure_reason(redis: Redis, job_id: str) -> str:
    result = fetch(redis, job_id).latest_result()
    assert result is not None and result.exc_string
    return str(result.exc_string)


def no_provider_state(redis: Redis, provider: str) -> bool:
    prefix = STATE_PREFIX[provider]
    return redis.get(f"{prefix}:quota:status") is None and redis.get(f"{prefix}:auth:status") is None


def user_text(request: RecordedRequest) -> str:
    """All user-message text of a recorded request, whatever the protocol's message shape."""
    texts = []
    for message in request.body["messages"]:
        if message["role"] != "user":
            continue
        content = message["content"]
        texts.extend(b["text"] for b in content) if isinstance(content, list) else texts.append(content)
    return "\n".join(texts)


# -- answers and validation ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["anthropic", "openai", "ollama"])
def test_valid_answer_lands_in_the_reconciler(
    provider, llm_server, redis, submit, sample_records, workers, worker_env, tmp_path
):
    env = {**worker_env, **provider_env(provider, llm_server)}
    job_id = submit(sample_records[:1]).enqueued[0].job_id
    start_llm(workers, env, tmp_path)
    start_llm(workers, env, tmp_path, role="reconciler")
    wait_for(lambda: status_of(redis, reconcile_job_id(job_id)) == "finished", 40, what="reconciled")
    assert len(fetch(redis, reconcile_job_id(job_id)).return_value()["location_ids"]) == 1
    result = fetch(redis, job_id).return_value()["result"]
    assert result["model"] == f"{provider}-test-model"
    assert result["validation_details"] == {"attempts": 1, "valid": True, "rejected": []}
    assert result["usage"]["input_tokens"] == 120 and result["usage"]["output_tokens"] == 80
    [request] = llm_server.requests
    assert request.body["model"] == f"{provider}-test-model"
    assert sample_records[0].content in user_text(request)


@pytest.mark.parametrize("provider", ["anthropic", "openai", "ollama"])
def test_garbage_then_valid_sends_the_errors_back(
    provider, llm_server, redis, submit, sample_records, workers, worker_env, tmp_path
):
    llm_server.script(garbage())
    job_id = submit(sample_records[:1]).enqueued[0].job_id
    start_llm(workers, {**worker_env, **provider_env(provider, llm_server)}, tmp_path)
    wait_for(lambda: status_of(redis, job_id) == "finished", 40, what="job finished")
    first, second = llm_server.requests
    assert FEEDBACK_HEADER not in user_text(first)
    retry = user_text(second)
    assert FEEDBACK_HEADER in retry and "the answer is not valid JSON" in retry
    assert sample_records[0].content in retry
    details = fetch(redis, job_id).return_value()["result"]["validation_details"]
    assert details["attempts"] == 2
    assert details["rejected"][0]["errors"][0].startswith("the answer is not valid JSON")
    assert fetch(redis, job_id).retries_left == 3  # validation retries are not job retries


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_always_invalid_fails_with_every_reason_after_max_attempts(
    provider, llm_server, redis, submit, sample_records, workers, worker_env, tmp_path
):
    llm_server.script(invalid_schema(), garbage(), truncated(), valid())
    job_id = submit(sample_records[:1]).enqueued[0].job_id
    env = {**worker_env, **provider_env(provider, llm_server, LLM_MAX_ATTEMPTS="3")}
    start_llm(workers, env, tmp_path)
    wait_for(lambda: status_of(redis, job_id) == "failed", 40, what="job failed")
    assert llm_server.calls() == 3
    reason = failure_reason(redis, job_id).strip().splitlines()[-1]
    assert "no valid HSDS answer in 3 attempts" in reason
    assert "attempt 1: (document): 'locations' is a required property" in reason
    assert "organization.name: 42 is not of type 'string'" in reason
    assert "attempt 2: the answer is not valid JSON" in reason
    assert "attempt 3: the answer was cut off at the token limit" in reason
    # The third request carried the second answer's errors, not the first's.
    third = user_text(llm_server.requests[2])
    assert "not valid JSON" in third and "42 is not of type" not in third
    assert no_provider_state(redis, provider)


# -- rate limits, quota, auth, transient -----------------------------------------------------------


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_429_short_is_rescheduled_without_quota_state(
    provider, llm_server, redis, submit, sample_records, workers, worker_env, tmp_path
):
    llm_server.script(error(429, "rate limited", {"retry-after": "3"}))
    job_id = submit(sample_records[:1]).enqueued[0].job_id
    start_llm(workers, {**worker_env, **provider_env(provider, llm_server)}, tmp_path)
    wait_for(lambda: status_of(redis, job_id) == "scheduled", 20, what="job rescheduled")
    assert no_provider_state(redis, provider)
    scheduled_at = queue(redis, LLM_QUEUE).scheduled_job_registry.get_scheduled_time(job_id)
    assert 0 < (scheduled_at - datetime.now(UTC)).total_seconds() <= 3.5
    wait_for(lambda: status_of(redis, job_id) == "finished", 30, what="job finished after the wait")
    # A 429 is the provider's pacing, not a failure of the job: no retry was spent on it.
    assert llm_server.calls() == 2 and fetch(redis, job_id).retries_left == 3
    assert no_provider_state(redis, provider)


def test_429_long_with_reset_header_blocks_until_the_reset_and_pauses_workers(
    llm_server, redis, submit, sample_records, workers, worker_env, tmp_path
):
    env = {**worker_env, **provider_env("anthropic", llm_server, LLM_TRANSIENT_RETRY_MAX_S="2")}
    worker = start_llm(workers, env, tmp_path)
    # The reset is set once the worker is up, so a slow start cannot make it stale.
    reset = (datetime.now(UTC) + timedelta(seconds=10)).replace(microsecond=0)
    headers = {
        "retry-after": "10",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset.isoformat().replace("+00:00", "Z"),
    }
    llm_server.script(error(429, "Number of requests has exceeded your rate limit", headers))
    job_id = submit(sample_records[:1]).enqueued[0].job_id

    doc = wait_for(lambda: parse_document(redis.get("claude:quota:status")), 20, what="quota state")
    assert doc.status == "quota_exceeded" and doc.retry_at == reset
    assert "rate limit" in doc.message
    wait_for(lambda: status_of(redis, job_id) == "queued", 10, what="job back on the queue")
    assert fetch(redis, job_id).retries_left == 3
    code, health = worker.json("/health")
    assert code == 200 and health["status"] == "paused" and health["provider_state"] == "quota_exceeded"
    assert llm_server.calls() == 1

    wait_for(lambda: status_of(redis, job_id) == "finished", 30, what="job after the reset")
    assert datetime.now(UTC) >= reset and llm_server.calls() == 2
    assert redis.get("claude:quota:status") is None


def test_openai_429_with_a_long_wait_blocks_openai_and_resumes_after_it(
    llm_server, redis, submit, sample_records, workers, worker_env, tmp_path
):
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6s"}
    llm_server.script(error(429, "Rate limit reached for requests", headers))
    job_id = submit(sample_records[:1]).enqueued[0].job_id
    env = {**worker_env, **provider_env("openai", llm_server, LLM_TRANSIENT_RETRY_MAX_S="2")}
    worker = start_llm(workers, env, tmp_path)
    doc = wait_for(lambda: parse_document(redis.get("openai:quota:status")), 20, what="quota state")
    blocked_at = datetime.now(UTC)
    assert doc.status == "quota_exceeded" and doc.retry_after == 6
    assert abs((doc.retry_at - blocked_at).total_seconds() - 6) < 2
    assert redis.get("claude:quota:status") is None
    wait_for(lambda: status_of(redis, job_id) == "queued", 10, what="job back on the queue")
    assert worker.json("/health")[1]["status"] == "paused"
    wait_for(lambda: status_of(redis, job_id) == "finished", 30, what="job after the wait")
    assert datetime.now(UTC) >= doc.retry_at and fetch(redis, job_id).retries_left == 3
    assert redis.get("openai:quota:status") is None


@pytest.mark.parametrize(
    ("provider", "reply"),
    [
        ("anthropic", error(400, "Your credit balance is too low to access the Anthropic API.")),
        ("openai", error(429, "You exceeded your current quota", error_type="insufficient_quota")),
    ],
)
def test_exhausted_credit_blocks_on_the_backoff_schedule(
    provider, reply, llm_server, redis, submit, sample_records, workers, worker_env, tmp_path
):
    llm_server.script(reply)
    job_id = submit(sample_records[:1]).enqueued[0].job_id
    env = {**worker_env, **provider_env(provider, llm_server, CLAUDE_QUOTA_RETRY_DELAY="1000")}
    worker = start_llm(workers, env, tmp_path)
    key = keys.quota_status_key(provider)
    assert key == f"{STATE_PREFIX[provider]}:quota:status"
    doc = wait_for(lambda: parse_document(redis.get(key)), 20, what="quota state")
    assert doc.status == "quota_exceeded" and doc.retry_after == 1000
    assert abs((doc.retry_at - datetime.now(UTC)).total_seconds() - 1000) < 15
    wait_for(lambda: status_of(redis, job_id) == "queued", 10, what="job back on the queue")
    assert fetch(redis, job_id).retries_left == 3
    assert worker.json("/health")[1]["status"] == "paused"


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_401_blocks_on_auth_for_300_seconds(
    provider, llm_server, redis, submit, sample_records, workers, worker_env, tmp_path
):
    llm_server.script(error(401, "invalid x-api-key"))
    job_id = submit(sample_records[:1]).enqueued[0].job_id
    worker = start_llm(workers, {**worker_env, **provider_env(provider, llm_server)}, tmp_path)
    key = f"{STATE_PREFIX[provider]}:auth:status"
    doc = wait_for(lambda: parse_document(redis.get(key)), 20, what="auth state")
    assert doc.status == "auth_failed" and doc.retry_after == 300
    assert abs((doc.retry_at - datetime.now(UTC)).total_seconds() - 300) < 15
    wait_for(lambda: status_of(redis, job_id) == "queued", 10, what="job back on the queue")
    assert fetch(redis, job_id).retries_left == 3
    _, health = worker.json("/health")
    assert health["status"] == "paused" and health["authenticated"] is False


@pytest.mark.parametrize(
    ("provider", "reply"),
    [
        ("anthropic", error(529, "Overloaded")),
        ("anthropic", valid(delay_s=4)),  # longer than LLM_TIMEOUT_S=2
        ("openai", error(503, "The server is overloaded")),
        ("openai", valid(delay_s=4)),
        ("ollama", valid(delay_s=4)),
    ],
    ids=["anthropic-529", "anthropic-timeout", "openai-503", "openai-timeout", "ollama-timeout"],
)
def test_overload_and_timeouts_are_transient_with_no_state(
    provider, reply, llm_server, redis, submit, sample_records, workers, worker_env, tmp_path
):
    llm_server.script(reply)
    job_id = submit(sample_records[:1]).enqueued[0].job_id
    worker = start_llm(workers, {**worker_env, **provider_env(provider, llm_server)}, tmp_path)
    wait_for(lambda: status_of(redis, job_id) == "scheduled", 20, what="retry scheduled")
    job = fetch(redis, job_id)
    assert job.retries_left == 2  # RQ's retry schedule: one retry used
    assert no_provider_state(redis, provider)
    assert worker.json("/health")[1]["status"] == "healthy"


# -- secrets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_the_api_key_never_leaves_the_request_headers(
    provider, llm_server, redis, submit, sample_records, workers, worker_env, tmp_path
):
    secret = KEYS[provider]
    # The worst case: the API quotes the key back in its error texts.
    llm_server.script(
        error(401, f"Incorrect API key provided: {secret}"),
        garbage(),
        valid(),
        error(400, f"request for key {secret} rejected"),
    )
    report = submit(sample_records[:2])
    first, second = (item.job_id for item in report.enqueued)
    env = {**worker_env, **provider_env(provider, llm_server, AUTH_RETRY_DELAY="2"), "LOG_LEVEL": "DEBUG"}
    worker = start_llm(workers, env, tmp_path)
    wait_for(
        lambda: status_of(redis, first) == "finished" and status_of(redis, second) == "failed",
        40,
        what="one job finished, one failed",
    )
    # The key did travel where it belongs: the request headers.
    header = llm_server.requests[0].headers
    assert secret in header.get("authorization", "") + header.get("x-api-key", "")

    reason = failure_reason(redis, second)
    assert "rejected" in reason
    surfaces = {
        "failure reason": reason,
        "redis": redis_dump(redis),
        "health": json.dumps(worker.json("/health")[1]),
        "worker-status": json.dumps(worker.json("/worker-status")[1]),
        "metrics": worker.get("/metrics")[1].decode(),
    }
    worker.stop()
    surfaces["worker log"] = worker.log()
    for name, text in surfaces.items():
        assert secret not in text, f"API key found in {name}"
        assert secret[-12:] not in text, f"part of the API key found in {name}"
    assert len(surfaces["redis"]) > 1000 and "auth" in surfaces["worker log"]


# -- cost visibility -------------------------------------------------------------------------------


def metric_values(worker: WorkerProcess, family: str) -> dict[tuple[str, ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for fam in text_string_to_metric_families(worker.get("/metrics")[1].decode()):
        if fam.name == family:
            for sample in fam.samples:
                if not sample.name.endswith("_created"):
                    found[tuple(v for _, v in sorted(sample.labels.items()))] = sample.value
    return found


def test_cost_is_visible_in_metrics_and_status(
    llm_server, redis, redis_url, submit, sample_records, workers, worker_env, tmp_path
):
    llm_server.script(garbage())
    job_id = submit(sample_records[:1]).enqueued[0].job_id
    assert len(submit(sample_records[:1]).deduplicated) == 1  # a provider call avoided at enqueue
    worker = start_llm(workers, {**worker_env, **provider_env("anthropic", llm_server)}, tmp_path)
    wait_for(lambda: status_of(redis, job_id) == "finished", 40, what="job finished")

    calls = wait_for(
        lambda: (v := metric_values(worker, "pirate_provider_calls")) and len(v) == 2 and v, 10, what="calls"
    )
    assert calls == {("invalid_answer", "anthropic"): 1, ("success", "anthropic"): 1}  # (outcome, provider)
    tokens = metric_values(worker, "pirate_provider_tokens")
    assert tokens[("input_tokens", "anthropic")] == 240 and tokens[("output_tokens", "anthropic")] == 160
    assert tokens[("cache_read_tokens", "anthropic")] == 60
    assert metric_values(worker, "pirate_provider_calls_avoided")[("enqueue",)] == 1

    env = {**os.environ, **worker_env, "REDIS_URL": redis_url}
    run = [sys.executable, "-m", "pirate_worker", "status"]
    snap = json.loads(
        subprocess.run([*run, "--json"], env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    )
    assert snap["cost"] == {
        "provider_calls": {"invalid_answer": 1, "success": 1},
        "tokens": {"anthropic": {"input_tokens": 240, "output_tokens": 160, "cache_read_tokens": 60}},
        "provider_calls_avoided": 1,
    }
    text = subprocess.run(run, env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "provider calls: 1 invalid_answer, 1 success" in text
    assert "tokens anthropic: 60 cache_read, 240 input, 160 output" in text
    assert "1 provider calls avoided" in text
