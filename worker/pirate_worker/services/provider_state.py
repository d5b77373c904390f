"""Reads and writes the provider auth/quota state keys (DESIGN §4), shared by every pod.

Quota blocks back off ``CLAUDE_QUOTA_RETRY_DELAY * CLAUDE_QUOTA_BACKOFF_MULTIPLIER^n`` capped at
``CLAUDE_QUOTA_MAX_DELAY`` (n = consecutive hits, reset by a success) unless the provider named a
reset time. Auth failures retry after ``AUTH_RETRY_DELAY``. A success clears what it proves.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis import Redis

from pirate_worker.contracts import keys
from pirate_worker.contracts.provider_state import (
    ProviderCondition,
    ProviderState,
    StateDocument,
    effective_state,
)
from pirate_worker.settings import Settings

log = logging.getLogger(__name__)

LAST_CHECK_TTL_S = 3600
#: How long the consecutive-hit counter outlives the last hit.
HITS_MEMORY_S = 86_400


@dataclass(frozen=True)
class BackoffPolicy:
    retry_delay_s: int = 3600
    max_delay_s: int = 14_400
    multiplier: float = 1.5
    auth_retry_delay_s: int = 300

    def quota_delay(self, consecutive_hits: int) -> int:
        """Delay for the n-th consecutive hit (1-based): 1 h, 1.5 h, 2.25 h, 3.375 h, 4 h, ..."""
        exponent = max(consecutive_hits - 1, 0)
        return int(min(self.retry_delay_s * self.multiplier**exponent, self.max_delay_s))


class ProviderStateStore:
    """State of one provider (``claude`` keys for anthropic/claude)."""

    def __init__(self, connection: Redis, provider: str, policy: BackoffPolicy) -> None:
        self._redis = connection
        self.provider = provider
        self.policy = policy
        self._auth_key = keys.auth_status_key(provider)
        self._quota_key = keys.quota_status_key(provider)
        self._hits_key = keys.quota_hits_key(provider)

    def current(self, now: datetime) -> ProviderState:
        """Combined state at ``now`` in one round trip."""
        auth_raw, quota_raw = self._redis.mget([self._auth_key, self._quota_key])
        return effective_state(auth_raw, quota_raw, now)

    def try_probe(self, owner: str, ttl_s: int) -> bool:
        """Take the fleet-wide probe lock (half-open state); True if ``owner`` now holds it."""
        return bool(self._redis.set(keys.probe_lock_key(self.provider), owner, nx=True, ex=ttl_s))

    def release_probe(self, owner: str) -> None:
        key = keys.probe_lock_key(self.provider)
        if self._redis.get(key) == owner.encode():
            self._redis.delete(key)

    def record_quota_exceeded(
        self, message: str, now: datetime, retry_at: datetime | None = None
    ) -> StateDocument:
        """Store a quota block; with no provider-named ``retry_at`` the backoff schedule decides."""
        hits = int(self._redis.incr(self._hits_key))
        self._redis.expire(self._hits_key, HITS_MEMORY_S)
        if retry_at is None or retry_at <= now:
            delay = self.policy.quota_delay(hits)
            retry_at = now + timedelta(seconds=delay)
        else:
            delay = math.ceil((retry_at - now).total_seconds())
        doc = self._store(self._quota_key, ProviderCondition.QUOTA_EXCEEDED, message, now, retry_at, delay)
        log.warning(
            "provider %s quota exceeded (hit %d): paused until %s", self.provider, hits, retry_at.isoformat()
        )
        return doc

    def record_auth_failed(self, message: str, now: datetime) -> StateDocument:
        delay = self.policy.auth_retry_delay_s
        doc = self._store(
            self._auth_key, ProviderCondition.AUTH_FAILED, message, now, now + timedelta(seconds=delay), delay
        )
        log.error("provider %s rejected the credentials: paused for %ds", self.provider, delay)
        return doc

    def record_success(self, now: datetime) -> None:
        """A successful call proves both the credentials and the quota: clear both, note the check."""
        check = StateDocument(status="healthy", timestamp=now, retry_at=now, retry_after=0)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._auth_key, self._quota_key, self._hits_key)
            pipe.set(
                keys.last_check_key(self.provider),
                check.model_dump_json(include={"timestamp", "status"}),
                ex=LAST_CHECK_TTL_S,
            )
            pipe.execute()

    def _store(
        self,
        key: str,
        condition: ProviderCondition,
        message: str,
        now: datetime,
        retry_at: datetime,
        retry_after: int,
    ) -> StateDocument:
        doc = StateDocument(
            status=condition.value,
            message=message[:500],
            timestamp=now.astimezone(UTC),
            retry_at=retry_at.astimezone(UTC),
            retry_after=retry_after,
        )
        # The key outlives the block by a minute, so readers can tell "just expired" (probing).
        self._redis.set(key, doc.to_json(), ex=retry_after + 60)
        return doc


def provider_state_store(settings: Settings, connection: Redis) -> ProviderStateStore:
    """The state store of the configured provider with the configured backoff."""
    policy = BackoffPolicy(
        retry_delay_s=settings.CLAUDE_QUOTA_RETRY_DELAY,
        max_delay_s=settings.CLAUDE_QUOTA_MAX_DELAY,
        multiplier=settings.CLAUDE_QUOTA_BACKOFF_MULTIPLIER,
        auth_retry_delay_s=settings.AUTH_RETRY_DELAY,
    )
    return ProviderStateStore(connection, settings.provider, policy)
