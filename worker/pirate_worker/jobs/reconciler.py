"""The reconciler job: validate the aligned HSDS document and upsert it into the database."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import ValidationError

from pirate_worker.contracts.payloads import JobResult
from pirate_worker.errors import PermanentJobError
from pirate_worker.hsds.schema import validate_aligned
from pirate_worker.jobs.context import current
from pirate_worker.services.reconciler import InvalidRecordError, SourceInfo, reconcile


def parse_job_result(payload: Any) -> JobResult:
    try:
        return JobResult.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise PermanentJobError(f"malformed job result payload: {where}: {first['msg']}") from None


def reconcile_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Store one aligned record; returns the ids of the HSDS rows it maps to."""
    ctx = current()
    result = parse_job_result(payload)
    document = result.result.parsed if result.result is not None else None
    if document is None:
        raise PermanentJobError(f"job {result.job_id} carries no aligned document to reconcile")
    problems = validate_aligned(document)
    if problems:
        raise PermanentJobError(f"invalid HSDS document: {'; '.join(problems[:10])}")
    source = SourceInfo(
        scraper_id=result.job.scraper_id, job_id=result.job_id, content_hash=result.job.content_hash
    )
    try:
        outcome = reconcile(ctx.database, document, source)
    except InvalidRecordError as exc:
        raise PermanentJobError(str(exc)) from exc
    # DatabaseUnavailableError propagates: RQ retries it on the transient schedule.
    return asdict(outcome)
