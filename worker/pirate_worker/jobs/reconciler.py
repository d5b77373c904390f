"""The reconciler job: validate the aligned HSDS document and upsert it into the database."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from pydantic import ValidationError

from pirate_worker.contracts.payloads import JobResult
from pirate_worker.errors import PermanentJobError
from pirate_worker.hsds.schema import validate_aligned
from pirate_worker.jobs.context import current
from pirate_worker.services.reconciler import InvalidRecordError, SourceInfo, reconcile

log = logging.getLogger(__name__)


def parse_job_result(payload: Any) -> JobResult:
    try:
        return JobResult.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise PermanentJobError(f"malformed job result payload: {where}: {first['msg']}") from None


def invalid_document(job_id: str, violations: list[str]) -> PermanentJobError:
    """The job's failure reason: one line of JSON listing every violation."""
    reason = {"error": "invalid HSDS document", "job_id": job_id, "violations": violations}
    return PermanentJobError(json.dumps(reason, ensure_ascii=False))


def reconcile_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Store one aligned record; returns the ids of its HSDS rows, what was written and geocoded.

    Invalid HSDS fails the job at once with a JSON reason; a database outage
    (:class:`~pirate_worker.db.errors.DatabaseUnavailableError`) propagates, and RQ retries it.
    """
    ctx = current()
    result = parse_job_result(payload)
    document = result.result.parsed if result.result is not None else None
    if document is None:
        raise PermanentJobError(f"job {result.job_id} carries no aligned document to reconcile")
    problems = validate_aligned(document)
    if problems:
        raise invalid_document(result.job_id, problems)
    source = SourceInfo.from_job_result(result)
    settings = ctx.settings
    try:
        outcome = reconcile(
            ctx.database,
            document,
            source,
            geocoder=ctx.geocoder,
            tolerance=settings.LOCATION_MATCH_TOLERANCE,
            now=ctx.clock(),
        )
    except InvalidRecordError as exc:
        raise invalid_document(result.job_id, exc.violations) from exc
    return asdict(outcome)
