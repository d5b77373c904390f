"""The bad-input catalogue of issue 7 (item 2), for the kinds other tests do not already cover.

Malformed scraper files are in ``test_enqueue_cli``; invalid pools in ``tests/unit``. Here:

* malformed job payloads written straight into each queue (wrong types, missing fields, not JSON,
  hostile ids and content hashes, someone else's function) → each job failed at once with a
  reason that says why, never run, no retry used; the worker keeps serving: a valid job enqueued
  afterwards finishes; nothing lands outside ``OUTPUT_DIR``;
* garbage and truncated LLM answers (the scripted provider) → failed with a clear reason, one
  provider call each;
* every worker and operator setting with a bad value → exit 2, one line naming the variable;
* a pool whose Redis URL (from a Secret) cannot be used → Fallback with the reason, no crash.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq.job import Job, Retry
from rq.serializers import JSONSerializer

from pirate_operator.api import ConditionStatus, ConditionType
from pirate_worker.contracts.payloads import JobResult, JobStatus, LLMJob, LLMResponse
from pirate_worker.contracts.queues import (
    JOB_FUNCS,
    LLM_QUEUE,
    RECONCILER_JOB_FUNC,
    RECONCILER_QUEUE,
    RECORDER_JOB_FUNC,
    RECORDER_QUEUE,
)
from pirate_worker.llm.base import GenerationConfig
from pirate_worker.llm.prompt import build_messages
from pirate_worker.llm.rules import RulesProvider
from pirate_worker.services.content_store import content_hash
from pirate_worker.services.queueing import enqueue_chained, queue
from pirate_worker.services.scraper_files import ScrapedRecord
from tests.integration.conftest import script
from tests.integration.test_operator_reconcile import FakeKube, Harness
from tests.support.processes import ROOT, WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Payload = Callable[[dict[str, Any]], Any]
"""Builds the bad payload from a valid one (an ``LLMJob`` or ``JobResult`` dump)."""


def status_of(redis: Redis, job_id: str) -> str | None:
    raw = redis.hget(f"rq:job:{job_id}", "status")
    return raw.decode() if raw else None


def failure_reason(redis: Redis, job_id: str) -> str:
    result = Job.fetch(job_id, connection=redis, serializer=JSONSerializer).latest_result()
    assert result is not None and result.exc_string, f"job {job_id} has no failure recorded"
    return str(result.exc_string).strip().splitlines()[-1]


def valid_result(record: ScrapedRecord) -> dict[str, Any]:
    """What the llm job hands to reconciler and recorder for ``record``."""
    generated = RulesProvider().generate(
        build_messages(record.content), {}, GenerationConfig(model="rules-v1")
    )
    job = LLMJob(
        prompt=record.content, metadata={**record.metadata, "content_hash": content_hash(record.content)}
    )
    response = LLMResponse(text=generated.text, model=generated.model, parsed=generated.parsed)
    result = JobResult(job_id=job.id, job=job, status=JobStatus.COMPLETED, result=response)
    return result.model_dump(mode="json")


def valid_llm_payload(record: ScrapedRecord) -> dict[str, Any]:
    return LLMJob(prompt=record.content, metadata=dict(record.metadata)).model_dump(mode="json")


def changed(path: str, value: Any) -> Payload:
    """The valid payload with one field (dotted path) replaced."""

    def build(valid: dict[str, Any]) -> dict[str, Any]:
        node = valid
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
        return valid

    return build


def dropped(name: str) -> Payload:
    def build(valid: dict[str, Any]) -> dict[str, Any]:
        del valid[name]
        return valid

    return build


HOSTILE = "../../etc/passwd"
#: (case id, queue, payload builder or a raw injection, reason the job must fail with).
#: A builder returns the job's single argument; ``FOREIGN`` and ``GARBAGE`` are injected raw.
FOREIGN = "foreign-function"
GARBAGE = "garbage-data"
NO_ARGS = "no-arguments"
CASES: list[tuple[str, str, Payload | str, str]] = [
    ("llm-string", LLM_QUEUE, lambda v: "a bare string", "malformed LLM job payload: payload"),
    ("llm-null", LLM_QUEUE, lambda v: None, "malformed LLM job payload"),
    ("llm-list", LLM_QUEUE, lambda v: [v], "malformed LLM job payload"),
    ("llm-no-prompt", LLM_QUEUE, dropped("prompt"), "malformed LLM job payload: prompt: Field required"),
    ("llm-prompt-object", LLM_QUEUE, changed("prompt", {"a": 1}), "prompt: Input should be a valid string"),
    ("llm-extra-field", LLM_QUEUE, changed("shell", "rm -rf /"), "shell: Extra inputs are not permitted"),
    (
        "llm-hostile-id",
        LLM_QUEUE,
        changed("id", HOSTILE),
        "malformed LLM job payload: id: String should match",
    ),
    ("llm-bad-date", LLM_QUEUE, changed("created_at", "yesterday"), "malformed LLM job payload: created_at"),
    (
        "llm-hostile-content-hash",
        LLM_QUEUE,
        changed("metadata.content_hash", HOSTILE),
        "invalid content hash '../../etc/passwd': expected 64 lowercase hex characters",
    ),
    (
        "llm-credentials-in-job",
        LLM_QUEUE,
        changed("provider_config", {"api_key": "sk-ant-in-a-job"}),
        "provider_config must not carry credentials",
    ),
    ("llm-foreign", LLM_QUEUE, FOREIGN, "job function 'os.system' is not run by llm workers"),
    ("llm-garbage", LLM_QUEUE, GARBAGE, "job data is not readable JSON"),
    ("llm-no-args", LLM_QUEUE, NO_ARGS, "job arguments must be one payload object, got 0 positional"),
    (
        "reconciler-empty",
        RECONCILER_QUEUE,
        lambda v: {},
        "malformed job result payload: job_id: Field required",
    ),
    ("reconciler-number", RECONCILER_QUEUE, lambda v: 42, "malformed job result payload: payload"),
    (
        "reconciler-bad-status",
        RECONCILER_QUEUE,
        changed("status", "exploded"),
        "malformed job result payload: status",
    ),
    (
        "reconciler-hostile-id",
        RECONCILER_QUEUE,
        changed("job.id", HOSTILE),
        "malformed job result payload: job.id",
    ),
    ("reconciler-no-document", RECONCILER_QUEUE, changed("result", None), "carries no aligned document"),
    (
        "reconciler-not-hsds",
        RECONCILER_QUEUE,
        changed("result.parsed", {"organization": "nope"}),
        "invalid HSDS document",
    ),
    ("reconciler-foreign", RECONCILER_QUEUE, FOREIGN, "is not run by reconciler workers"),
    ("reconciler-garbage", RECONCILER_QUEUE, GARBAGE, "job data is not readable JSON"),
    (
        "recorder-hostile-job-id",
        RECORDER_QUEUE,
        changed("job_id", HOSTILE),
        "job_id '../../etc/passwd' is not a safe",
    ),
    (
        "recorder-hostile-scraper",
        RECORDER_QUEUE,
        changed("job.metadata.scraper_id", "../outside"),
        "job.metadata.scraper_id '../outside' is not a safe file name",
    ),
    ("recorder-empty", RECORDER_QUEUE, lambda v: {}, "malformed job result payload"),
    ("recorder-foreign", RECORDER_QUEUE, FOREIGN, "is not run by recorder workers"),
    ("recorder-garbage", RECORDER_QUEUE, GARBAGE, "job data is not readable JSON"),
]


def inject(redis: Redis, queue_name: str, how: Payload | str, valid: dict[str, Any], marker: Path) -> str:
    """Enqueue one bad job with a retry budget, as real jobs carry, so a retry would show."""
    retry = Retry(max=3, interval=[60, 300, 900])
    q = queue(redis, queue_name)
    func, args = JOB_FUNCS[queue_name], None
    if how == FOREIGN:
        func, args = "os.system", (f"touch {marker}",)
    elif how == NO_ARGS:
        args = ()
    elif how == GARBAGE:
        args = (valid,)
    else:
        assert callable(how)
        args = (how(valid),)
    job = q.enqueue_call(func, args=args, timeout=60, retry=retry, result_ttl=600, failure_ttl=600)
    if how == GARBAGE:
        redis.hset(job.key, "data", b"\x00not json {{{")
    return job.id


@pytest.mark.parametrize("queue_name", [LLM_QUEUE, RECONCILER_QUEUE, RECORDER_QUEUE])
def test_malformed_jobs_fail_with_a_reason_and_the_worker_keeps_serving(
    redis, submit, sample_records, worker_env, workers, tmp_path, queue_name
):
    cases = [(case, how, reason) for case, q, how, reason in CASES if q == queue_name]
    record = sample_records[0]
    valid = valid_llm_payload(record) if queue_name == LLM_QUEUE else valid_result(record)
    marker = tmp_path / "foreign-function-ran"
    bad = {case: inject(redis, queue_name, how, _copy(valid), marker) for case, how, _ in cases}

    worker = WorkerProcess.start(queue_name, 1, worker_env, tmp_path)
    workers.append(worker)
    wait_for(
        lambda: all(status_of(redis, job_id) == "failed" for job_id in bad.values()),
        60,
        what=f"every malformed {queue_name} job failed",
    )
    reasons = {case: failure_reason(redis, job_id) for case, job_id in bad.items()}
    for case, _, reason in cases:
        assert reason in reasons[case], (case, reasons[case])
    # Failed at once: no retry scheduled, none left anywhere but the failed registry.
    q = queue(redis, queue_name)
    assert q.scheduled_job_registry.get_job_count(cleanup=False) == 0
    assert q.failed_job_registry.get_job_count(cleanup=False) == len(bad)
    assert not marker.exists(), "a function written into the queue was run"

    # Still serving: a valid job enqueued afterwards finishes.
    good = _enqueue_valid(redis, submit, queue_name, record)
    wait_for(
        lambda: status_of(redis, good) == "finished", 60, what=f"valid {queue_name} job after the bad ones"
    )
    assert worker.proc.poll() is None, worker.log()[-3000:]
    assert worker.health_code() == 200
    assert q.failed_job_registry.get_job_count(cleanup=False) == len(bad)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.json") if "outputs" in p.parts)
    if queue_name == RECORDER_QUEUE:
        [audit] = [p for p in written if p.name != "summary.json"]
        assert audit.name == f"{good.removesuffix('-record')}.json"
        assert audit.parts[:2] == ("outputs", "daily") and audit.parts[3:5] == ("scrapers", record.scraper_id)
    else:
        assert written == []
    assert not any(p.name == "passwd.json" for p in tmp_path.rglob("*")), "a hostile id became a path"


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(value)


def _enqueue_valid(redis: Redis, submit: Any, queue_name: str, record: ScrapedRecord) -> str:
    if queue_name == LLM_QUEUE:
        return str(submit([record]).enqueued[0].job_id)
    result = valid_result(record)
    func = RECONCILER_JOB_FUNC if queue_name == RECONCILER_QUEUE else RECORDER_JOB_FUNC
    job_id = f"{result['job_id']}-{'reconcile' if queue_name == RECONCILER_QUEUE else 'record'}"
    return enqueue_chained(redis, queue_name, func, result, job_id, 600).id


ANSWERS = [
    ("garbage", "the answer is not valid JSON: Expecting value at line 1 column 1"),
    ("non_object", "the answer is a JSON list, not an object"),
    ("not_hsds", "no valid HSDS answer in 1 attempt: attempt 1: "),
    ("truncated", "the answer was cut off at the token limit"),
]


def test_garbage_and_truncated_answers_fail_once_with_a_reason(
    redis, submit, sample_records, worker_env, workers, tmp_path
):
    """One attempt per job here (retries with feedback are tests/integration/test_llm_scenarios.py)."""
    script(redis, *(step for step, _ in ANSWERS))
    # Distinct records, so no answer is served from the content store.
    report = submit(sample_records[: len(ANSWERS) + 1])
    jobs = [item.job_id for item in report.enqueued]
    bad, good = jobs[: len(ANSWERS)], jobs[len(ANSWERS)]
    worker = WorkerProcess.start("llm", 1, {**worker_env, "LLM_MAX_ATTEMPTS": "1"}, tmp_path)
    workers.append(worker)
    wait_for(lambda: status_of(redis, good) == "finished", 60, what="the valid answer after the bad ones")
    for job_id, (step, reason) in zip(bad, ANSWERS, strict=True):
        assert status_of(redis, job_id) == "failed", step
        assert reason in failure_reason(redis, job_id), step
    assert "LLM_MAX_TOKENS" in failure_reason(redis, bad[-1])
    assert int(redis.get("test:provider:calls")) == len(ANSWERS) + 1  # no retries burnt on bad answers
    assert queue(redis, RECONCILER_QUEUE).count == 1  # only the good answer was chained on
    assert worker.proc.poll() is None
    # A failed answer does not poison deduplication: the same record can be submitted again.
    again = submit([sample_records[0]])
    assert [item.job_id for item in again.enqueued] != [], again.items


WORKER_SETTINGS = [
    ("REDIS_POOL_SIZE", "0"),
    ("REDIS_TTL_SECONDS", "59"),
    ("REDIS_TTL_SECONDS", "a month"),
    ("REDIS_URL", "redis://localhost:6379/0?socket_timeout=soon"),
    ("REDIS_URL", "redis://localhost:6379/0?ssl_ca_certs=/etc/ssl/ca.pem"),
    ("REDIS_URL", "rediss://localhost:6379/0?ssl_ca_certs=/nonexistent/ca.pem"),
    ("REDIS_URL", "redis://localhost:6379/0?colour=blue"),
    ("REDIS_URL", "redis://:hunter2@localhost:sixty/0"),
    ("LLM_TEMPERATURE", "3"),
    ("LLM_TEMPERATURE", "warm"),
    ("LLM_MAX_TOKENS", "0"),
    ("CLAUDE_QUOTA_RETRY_DELAY", "0"),
    ("CLAUDE_QUOTA_MAX_DELAY", "-5"),
    ("AUTH_RETRY_DELAY", "soon"),
    ("DATABASE_URL", "hsds.db"),
    ("CONTENT_STORE_ENABLED", "maybe"),
    ("CONTENT_STORE_BACKEND", "memcached"),
    ("HEALTH_PORT", "70000"),
    ("LOG_LEVEL", "LOUD"),
]


def pirate_workers(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pirate_worker", *args],
        env={**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0", **env},
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


def assert_names_it(result: subprocess.CompletedProcess[str], name: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: invalid environment variable {name}"), line
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr


@pytest.mark.parametrize(("name", "value"), WORKER_SETTINGS)
def test_every_bad_worker_setting_exits_2_naming_it(name, value):
    assert_names_it(pirate_workers("worker", "--role", "recorder", **{name: value}), name)


@pytest.mark.parametrize("command", [["enqueue", "examples"], ["status"]])
def test_enqueue_and_status_check_the_redis_url_the_same_way(command):
    url = "redis://:hunter2@localhost:6379/0?ssl_ca_certs=/etc/ssl/ca.pem"
    assert_names_it(pirate_workers(*command, REDIS_URL=url), "REDIS_URL")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPERATOR_WATCH_TIMEOUT", "5"),
        ("OPERATOR_PEERING_PRIORITY", "first"),
        ("OPERATOR_PEERING_LIFETIME", "x"),
    ],
)
def test_bad_operator_settings_exit_2_naming_them(name, value):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pirate-workers"), "operator"],
        env={**os.environ, name: value}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {name}: ")


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@redis:6379/0?colour=blue",
        "redis://:hunter2@redis:6379/0?ssl_ca_certs=/ca.pem",
        "redis://:hunter2@redis:sixty/0",
    ],
)
def test_unusable_redis_url_from_a_secret_holds_replicas_with_the_reason(redis_url, url):
    kube = FakeKube()
    kube.secrets[("redis", "url")] = url
    harness = Harness(kube, redis_url)
    harness.body["spec"]["redis"] = {"urlSecretRef": {"name": "redis", "key": "url"}}
    try:
        harness.cycle()
        kube.deployments["pantry-llm"]["spec"]["replicas"] = 3
        harness.cycle()
        assert harness.replicas("llm") == 3
        assert harness.condition(ConditionType.FALLBACK) == (ConditionStatus.TRUE, "RedisUnreachable")
        text = str(harness.body.get("status")) + str(kube.events)
        assert "Redis URL is not usable" in text
        assert "hunter2" not in text
    finally:
        harness.loop.close()
