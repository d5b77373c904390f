"""The recorder job: keep a JSON audit file of every finished LLM job under ``OUTPUT_DIR``."""

from __future__ import annotations

from typing import Any

from pirate_worker.errors import PermanentJobError
from pirate_worker.jobs.context import current
from pirate_worker.jobs.reconciler import parse_job_result
from pirate_worker.services.recorder import RecorderError, record


def record_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Write the audit file; returns its path."""
    ctx = current()
    result = parse_job_result(payload)
    try:
        path = record(ctx.settings.OUTPUT_DIR, result.model_dump(mode="json"), ctx.clock())
    except RecorderError as exc:
        raise PermanentJobError(str(exc)) from exc
    return {"path": str(path)}
