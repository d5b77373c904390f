"""Job payloads as pydantic models, dumped to JSON for RQ's JSON serializer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SECRET_HINTS = ("key", "token", "secret", "password", "authorization")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LLMJob(BaseModel):
    """One scraped record to align to HSDS. Its ``id`` is also the RQ job id."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), pattern=r"^[A-Za-z0-9_-]{1,100}$")
    prompt: str = Field(description="The scraped content to align, exactly as hashed for deduplication")
    format: dict[str, Any] = Field(default_factory=dict, description="Output format hint (schema name)")
    provider_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Non-secret per-job provider hints; credentials never travel in jobs",
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=_utcnow)

    @field_validator("provider_config")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if any(hint in name.lower() for hint in _SECRET_HINTS):
                raise ValueError(f"provider_config must not carry credentials (field {name!r})")
        return value

    @property
    def content_hash(self) -> str | None:
        found = self.metadata.get("content_hash")
        return found if isinstance(found, str) else None

    @property
    def scraper_id(self) -> str | None:
        found = self.metadata.get("scraper_id")
        return found if isinstance(found, str) else None


class JobStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"


class LLMResponse(BaseModel):
    """What a provider answered, reduced to what later stages need."""

    text: str
    model: str
    parsed: dict[str, Any] | None = None
    usage: dict[str, int] = Field(default_factory=dict)
    stop_reason: str | None = None
    truncated: bool = False
    #: How the answer was accepted: ``{"attempts": n, "valid": true, "rejected": [{"attempt": i,
    #: "errors": [...]}]}``, what was wrong with each rejected earlier answer. None for results
    #: stored before validation details existed (and for the content store's older entries).
    validation_details: dict[str, Any] | None = None


class JobResult(BaseModel):
    """Outcome of an LLM job, passed to the reconciler and the recorder."""

    job_id: str
    job: LLMJob
    status: JobStatus
    result: LLMResponse | None = None
    error: str | None = None
    completed_at: datetime = Field(default_factory=_utcnow)
    processing_time: float = 0.0
    retry_count: int = 0
    from_content_store: bool = False
