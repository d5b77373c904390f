"""The LLM job: content store first, then the provider, then chaining to reconciler and recorder.

Every provider answer is checked (:func:`~pirate_worker.llm.answer.check_answer`); an invalid one
is asked again with its errors as feedback, up to ``LLM_MAX_ATTEMPTS`` answers per job.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from typing import Any

from pydantic import ValidationError

from pirate_worker.contracts import keys
from pirate_worker.contracts.payloads import JobResult, JobStatus, LLMJob, LLMResponse
from pirate_worker.contracts.queues import (
    RECONCILER_JOB_FUNC,
    RECONCILER_QUEUE,
    RECORDER_JOB_FUNC,
    RECORDER_QUEUE,
    reconcile_job_id,
    record_job_id,
)
from pirate_worker.errors import PermanentJobError
from pirate_worker.hsds.schema import aligned_document_schema
from pirate_worker.jobs.context import JobContext, current
from pirate_worker.llm.answer import check_answer
from pirate_worker.llm.base import (
    AuthFailedError,
    BudgetWaitError,
    GenerationResult,
    Message,
    ProviderBlockedError,
    ProviderError,
    QuotaExceededError,
    RateLimitedError,
    TransientProviderError,
)
from pirate_worker.llm.prompt import build_messages
from pirate_worker.llm.rate_limits import header_limits
from pirate_worker.services.content_store import content_hash
from pirate_worker.services.queueing import enqueue_chained
from pirate_worker.services.rate_budget import Limits, call_cost, call_use

log = logging.getLogger(__name__)


def parse_llm_payload(payload: Any) -> LLMJob:
    """Validate a queued payload; a malformed one fails the job at once with a readable reason."""
    try:
        return LLMJob.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise PermanentJobError(f"malformed LLM job payload: {where}: {first['msg']}") from None


def process_llm_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Align one scraped record to HSDS and chain it on. Returns the ``JobResult`` as JSON data."""
    ctx = current()
    job = parse_llm_payload(payload)
    started = time.monotonic()
    digest = job.content_hash or content_hash(job.prompt)

    cached = _from_content_store(ctx, digest)
    if cached is not None:
        response, from_store = cached, True
    else:
        response, from_store = _call_provider(ctx, job), False

    result = JobResult(
        job_id=job.id,
        job=job,
        status=JobStatus.COMPLETED,
        result=response,
        processing_time=time.monotonic() - started,
        from_content_store=from_store,
    )
    _chain(ctx, result, digest)
    return result.model_dump(mode="json")


def _from_content_store(ctx: JobContext, digest: str) -> LLMResponse | None:
    store = ctx.content_store
    if store is None:
        return None
    entry = store.get(digest)
    if entry is None or entry.result is None:
        return None
    store.count_hit("processing")
    ctx.events.emit("dedup_hit", stage="processing")
    return LLMResponse.model_validate(entry.result)


#: Validation errors sent back as feedback and kept per rejected attempt (the first, sorted).
MAX_FEEDBACK_ERRORS = 20


def _call_provider(ctx: JobContext, job: LLMJob) -> LLMResponse:
    """Ask the provider until an answer validates, sending each rejected answer's errors back.

    Provider errors (quota, auth, transient) end the attempts at once and steer the job via the
    runtime; after ``LLM_MAX_ATTEMPTS`` invalid answers the job fails with every reason.
    """
    state = ctx.provider_state
    blocked = state.current(ctx.clock())
    if blocked.blocked:
        # Another worker hit the block after this job was dequeued; put it back untouched.
        raise ProviderBlockedError(
            f"provider {state.provider} is {blocked.condition.value}", blocked.retry_at
        )
    max_attempts = ctx.settings.LLM_MAX_ATTEMPTS
    rejected: list[dict[str, Any]] = []
    feedback: list[str] = []
    for attempt in range(1, max_attempts + 1):
        generated = _generate(ctx, build_messages(job.prompt, feedback or None))
        document, problems = check_answer(generated, ctx.generation_config.max_tokens)
        if document is not None and not problems:
            _count_call(ctx, "success", usage=generated.usage)
            return LLMResponse(
                text=generated.text,
                model=generated.model,
                parsed=document,
                usage=generated.usage,
                stop_reason=generated.stop_reason,
                truncated=generated.truncated,
                validation_details={"attempts": attempt, "valid": True, "rejected": rejected},
            )
        _count_call(ctx, "invalid_answer", usage=generated.usage)
        feedback = problems[:MAX_FEEDBACK_ERRORS]
        rejected.append({"attempt": attempt, "errors": feedback})
        log.info("job %s: answer %d/%d rejected (%d problems)", job.id, attempt, max_attempts, len(problems))
    reasons = " | ".join(f"attempt {r['attempt']}: {'; '.join(r['errors'][:5])}" for r in rejected)
    if generated.truncated:
        # For the people reading the failure: the model was asked for less, the limit is theirs.
        reasons += f" (raise LLM_MAX_TOKENS, now {ctx.settings.LLM_MAX_TOKENS}, if documents are this long)"
    attempts = f"{max_attempts} attempt" + ("s" if max_attempts != 1 else "")
    raise PermanentJobError(f"no valid HSDS answer in {attempts}: {reasons}")


def _generate(ctx: JobContext, messages: list[Message]) -> GenerationResult:
    """One provider call; records quota/auth state and counts the call by outcome."""
    state = ctx.provider_state
    try:
        generated = _paced_call(ctx, messages)
    except BudgetWaitError:
        raise  # nothing was sent: not a provider call
    except RateLimitedError:
        _count_call(ctx, "rate_limited")
        raise
    except QuotaExceededError as exc:
        _count_call(ctx, "quota_exceeded")
        state.record_quota_exceeded(str(exc), ctx.clock(), exc.retry_at)
        raise
    except AuthFailedError as exc:
        _count_call(ctx, "auth_failed")
        state.record_auth_failed(str(exc), ctx.clock())
        raise
    except TransientProviderError:
        _count_call(ctx, "transient_error")
        raise
    except ProviderError as exc:
        _count_call(ctx, "rejected")
        raise PermanentJobError(f"provider could not align the record: {exc}") from exc
    # Any answer, valid or not, proves the credentials and the quota.
    state.record_success(ctx.clock())
    return generated


def _paced_call(ctx: JobContext, messages: list[Message]) -> GenerationResult:
    """The provider call, sent when the fleet's shared budget covers it (one Redis round trip
    before, one after). A turn further away than ``LLM_TRANSIENT_RETRY_MAX_S`` sends nothing:
    :class:`BudgetWaitError` puts the job back at the front of its queue, retries untouched."""
    schema, config, budget = aligned_document_schema(), ctx.generation_config, ctx.rate_budget
    if budget is None:
        return ctx.provider.generate(messages, schema, config)
    cost = call_cost(estimate_input_tokens(messages), config.max_tokens)
    max_wait = float(ctx.settings.LLM_TRANSIENT_RETRY_MAX_S)
    reservation = budget.reserve(cost, max_wait)
    while reservation.discovering and reservation.wait_s > 0:
        time.sleep(reservation.wait_s)  # another call is learning the limits; a short poll
        reservation = budget.reserve(cost, max_wait)
    if reservation.refused:
        raise BudgetWaitError(
            f"the provider's rate limit is spoken for the next {reservation.wait_s:.0f}s",
            retry_after_s=math.ceil(reservation.wait_s),
        )
    if reservation.wait_s > 0:
        time.sleep(reservation.wait_s)
    started = time.monotonic()
    try:
        generated = ctx.provider.generate(messages, schema, config)
    except RateLimitedError as exc:
        used = {"requests": 1.0}
        limits = Limits(*header_limits(exc.headers))
        budget.settle(reservation, used, limits, time.monotonic() - started, exc.retry_after_s or 0.0)
        raise
    except BaseException:
        if reservation.discovering:
            budget.release()
        raise
    limits = Limits(*header_limits(generated.rate_headers))
    budget.settle(reservation, call_use(generated.usage), limits, time.monotonic() - started)
    return generated


def estimate_input_tokens(messages: list[Message]) -> int:
    """A call's input tokens before it is sent (messages and the schema): about four characters a
    token. The settle after the call learns what it really used."""
    return (sum(len(m.content) for m in messages) + _schema_chars()) // 4 + 1


@functools.cache
def _schema_chars() -> int:
    return len(json.dumps(aligned_document_schema(), separators=(",", ":")))


def _count_call(ctx: JobContext, outcome: str, usage: dict[str, int] | None = None) -> None:
    provider = getattr(ctx.provider, "name", ctx.settings.provider)
    usage = usage or {}
    with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(keys.run_stats_key(), f"provider_calls:{outcome}", 1)
        for kind, count in usage.items():
            if count:
                pipe.hincrby(keys.run_stats_key(), f"tokens:{provider}:{kind}", int(count))
        pipe.execute()
    ctx.events.emit("provider_call", provider=provider, outcome=outcome, usage=usage)


def _chain(ctx: JobContext, result: JobResult, digest: str) -> None:
    """Reconciler first (its failure fails this job), then content store and recorder (best effort)."""
    ttl = ctx.settings.REDIS_TTL_SECONDS
    payload = result.model_dump(mode="json")
    enqueue_chained(
        ctx.redis, RECONCILER_QUEUE, RECONCILER_JOB_FUNC, payload, reconcile_job_id(result.job_id), ttl
    )
    store = ctx.content_store
    if store is not None and not result.from_content_store and result.result is not None:
        try:
            store.complete(digest, result.job_id, result.result.model_dump(mode="json"))
        except Exception:
            log.warning(
                "content store write failed for job %s; the result is still chained",
                result.job_id,
                exc_info=True,
            )
    try:
        enqueue_chained(
            ctx.redis, RECORDER_QUEUE, RECORDER_JOB_FUNC, payload, record_job_id(result.job_id), ttl
        )
    except Exception:
        log.warning(
            "recorder enqueue failed for job %s; the record is still reconciled", result.job_id, exc_info=True
        )
