"""The provider auth/quota state documents (DESIGN §4) and how to read them, without I/O.

A state document is JSON ``{status, message, timestamp, retry_at, retry_after}``. It is in force
while ``retry_at`` is in the future; when auth and quota are both in force, auth wins.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ValidationError


class ProviderCondition(StrEnum):
    OK = "ok"
    QUOTA_EXCEEDED = "quota_exceeded"
    AUTH_FAILED = "auth_failed"
    PROBING = "probing"


class StateDocument(BaseModel):
    """Stored value of ``<provider>:auth:status`` / ``<provider>:quota:status``."""

    status: str
    message: str = ""
    timestamp: datetime
    retry_at: datetime
    retry_after: int

    def to_json(self) -> str:
        return self.model_dump_json()

    def in_force(self, now: datetime) -> bool:
        return self.retry_at > now


class ProviderState(BaseModel):
    """What a reader concludes from both documents at a given moment."""

    condition: ProviderCondition
    retry_at: datetime | None = None
    message: str = ""

    @property
    def blocked(self) -> bool:
        return self.condition in (ProviderCondition.QUOTA_EXCEEDED, ProviderCondition.AUTH_FAILED)


def parse_document(raw: str | bytes | None) -> StateDocument | None:
    """Parse a stored state document; unreadable values count as absent (and are logged by callers)."""
    if raw is None:
        return None
    try:
        return StateDocument.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None


def effective_state(
    auth_raw: str | bytes | None, quota_raw: str | bytes | None, now: datetime
) -> ProviderState:
    """Combine the two documents: auth in force wins, then quota in force; an expired one means probing.

    ``probing`` is the half-open state: a block's ``retry_at`` has passed but no success has cleared
    it yet (the key lives ``retry_after + 60`` seconds), so one probe may run.
    """
    now = now.astimezone(UTC)
    auth = parse_document(auth_raw)
    quota = parse_document(quota_raw)
    for doc, condition in ((auth, ProviderCondition.AUTH_FAILED), (quota, ProviderCondition.QUOTA_EXCEEDED)):
        if doc is not None and doc.in_force(now):
            return ProviderState(condition=condition, retry_at=doc.retry_at, message=doc.message)
    expired = [doc for doc in (auth, quota) if doc is not None]
    if expired:
        latest = max(expired, key=lambda doc: doc.retry_at)
        return ProviderState(
            condition=ProviderCondition.PROBING, retry_at=latest.retry_at, message=latest.message
        )
    return ProviderState(condition=ProviderCondition.OK)
