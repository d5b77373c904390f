"""RQ queues of the pipeline: JSON-serialized jobs enqueued by dotted path, TTLs and timeouts explicit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from pirate_worker.contracts.payloads import LLMJob
from pirate_worker.contracts.queues import (
    DEFAULT_JOB_TIMEOUTS,
    LLM_JOB_FUNC,
    LLM_QUEUE,
    LLM_RETRY_INTERVALS,
    RECONCILER_QUEUE,
    RECONCILER_RETRY_INTERVALS,
)

#: States in which a job still owns its content (it will run, or is running).
LIVE_STATES = frozenset({JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED})


def queue(connection: Redis, name: str) -> Queue:
    """An RQ queue using RQ's JSON serializer (payloads are pydantic dumps, never pickles)."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def enqueue_llm_job(connection: Redis, job: LLMJob, ttl_s: int) -> Job:
    """Enqueue an LLM job under its own id, with the transient-error retry schedule."""
    return queue(connection, LLM_QUEUE).enqueue_call(
        LLM_JOB_FUNC,
        args=(job.model_dump(mode="json"),),
        job_id=job.id,
        timeout=DEFAULT_JOB_TIMEOUTS[LLM_QUEUE],
        result_ttl=ttl_s,
        failure_ttl=ttl_s,
        retry=Retry(max=len(LLM_RETRY_INTERVALS), interval=list(LLM_RETRY_INTERVALS)),
        description=f"llm {job.scraper_id or 'unknown'}#{job.metadata.get('record_index', '?')}",
    )


def enqueue_chained(
    connection: Redis, queue_name: str, func: str, payload: dict[str, Any], job_id: str, ttl_s: int
) -> Job:
    """Enqueue a follow-up job once: a retried parent re-chaining finds the existing job and keeps it."""
    existing = fetch_job(connection, job_id)
    if existing is not None and existing.get_status(refresh=False) != JobStatus.FAILED:
        return existing
    intervals = RECONCILER_RETRY_INTERVALS if queue_name == RECONCILER_QUEUE else LLM_RETRY_INTERVALS
    return queue(connection, queue_name).enqueue_call(
        func,
        args=(payload,),
        job_id=job_id,
        timeout=DEFAULT_JOB_TIMEOUTS[queue_name],
        result_ttl=ttl_s,
        failure_ttl=ttl_s,
        retry=Retry(max=len(intervals), interval=list(intervals)),
    )


def fetch_job(connection: Redis, job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


@dataclass(frozen=True)
class JobView:
    """What ``status`` shows for one job id."""

    id: str
    status: str
    queue: str
    retries_left: int | None
    enqueued_at: str | None
    ended_at: str | None
    error: str | None
    result: Any

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def describe_job(connection: Redis, job_id: str) -> JobView | None:
    """Status lookup by job id (an LLM job's id is its ``LLMJob.id``)."""
    job = fetch_job(connection, job_id)
    if job is None:
        return None
    status = job.get_status()
    result = job.latest_result()
    error = None
    if result is not None and result.type != result.Type.SUCCESSFUL and result.exc_string:
        error = result.exc_string.strip().splitlines()[-1]
    return JobView(
        id=job.id,
        status=str(status.value if status else "unknown"),
        queue=job.origin,
        retries_left=job.retries_left,
        enqueued_at=job.enqueued_at.isoformat() if job.enqueued_at else None,
        ended_at=job.ended_at.isoformat() if job.ended_at else None,
        error=error,
        result=result.return_value if result is not None and result.type == result.Type.SUCCESSFUL else None,
    )
