"""The per-process context job functions run in.

RQ calls job functions by dotted path with only the payload, so the long-lived clients a job
needs (Redis pool, content store, provider, database) live in one context object that the worker
runtime installs at start. A job run by a plain ``rq worker`` builds it from the environment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final, Protocol

from redis import Redis

from pirate_worker.contracts.connection import connect
from pirate_worker.llm.base import GenerationConfig, Provider
from pirate_worker.services.content_store import ContentStore, RedisContentStore, SqliteContentStore
from pirate_worker.services.provider_state import ProviderStateStore, provider_state_store
from pirate_worker.services.rate_budget import RateBudget
from pirate_worker.settings import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from pirate_worker.services.geocoding import Geocoder


#: Providers whose answers carry rate-limit headers (hosted APIs); the others are not paced.
PACED_PROVIDERS: Final = frozenset({"anthropic", "claude", "openai"})


class EventSink(Protocol):
    """Where job functions report what the worker parent counts (provider calls, dedup hits)."""

    def emit(self, kind: str, **labels: Any) -> None: ...


class NullSink:
    def emit(self, kind: str, **labels: Any) -> None:
        return None


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class JobContext:
    settings: Settings
    redis: Redis
    provider_factory: Callable[[Settings], Provider]
    events: EventSink = field(default_factory=NullSink)
    clock: Callable[[], datetime] = utcnow

    @cached_property
    def provider(self) -> Provider:
        return self.provider_factory(self.settings)

    @cached_property
    def provider_state(self) -> ProviderStateStore:
        return provider_state_store(self.settings, self.redis)

    @cached_property
    def rate_budget(self) -> RateBudget | None:
        """The provider's shared rate-limit budget; None for offline and local providers."""
        if not self.settings.LLM_RATE_PACING or self.settings.provider not in PACED_PROVIDERS:
            return None
        return RateBudget(self.redis, self.settings.provider)

    @cached_property
    def content_store(self) -> ContentStore | None:
        return build_content_store(self.settings, self.redis)

    @cached_property
    def database(self) -> Engine:
        from pirate_worker.services.reconciler import open_database

        # Not cached on failure: an unreachable database is retried on the next job.
        return open_database(self.settings.DATABASE_URL, auto_migrate=self.settings.DATABASE_AUTO_MIGRATE)

    @cached_property
    def geocoder(self) -> Geocoder:
        from pirate_worker.services.geocoding import build_geocoder

        s = self.settings
        return build_geocoder(
            s.GEOCODER,
            self.redis,
            base_url=s.GEOCODER_URL,
            user_agent=s.GEOCODER_USER_AGENT,
            min_interval_s=s.GEOCODER_MIN_INTERVAL_SECONDS,
            cache_ttl_s=s.GEOCODER_CACHE_TTL_SECONDS,
            timeout_s=s.GEOCODER_TIMEOUT_SECONDS,
        )

    @property
    def generation_config(self) -> GenerationConfig:
        s = self.settings
        return GenerationConfig(
            model=s.model_name,
            temperature=s.LLM_TEMPERATURE,
            max_tokens=s.LLM_MAX_TOKENS,
            timeout_s=s.LLM_TIMEOUT_S,
        )


def build_content_store(settings: Settings, connection: Redis) -> ContentStore | None:
    """The configured content store, or None when disabled."""
    if not settings.CONTENT_STORE_ENABLED:
        return None
    if settings.CONTENT_STORE_BACKEND == "sqlite":
        return SqliteContentStore(settings.CONTENT_STORE_PATH)
    return RedisContentStore(connection, pending_ttl_s=settings.REDIS_TTL_SECONDS)


_lock = threading.Lock()
_current: JobContext | None = None


def install(context: JobContext) -> None:
    """Make ``context`` the one job functions of this process use."""
    global _current
    with _lock:
        _current = context


def current() -> JobContext:
    """The installed context, built from the environment on first use if none was installed."""
    global _current
    with _lock:
        if _current is None:
            from pirate_worker.llm.factory import build_provider

            settings = load_settings()
            _current = JobContext(
                settings=settings,
                redis=connect(settings.REDIS_URL, settings.REDIS_POOL_SIZE),
                provider_factory=build_provider,
            )
        return _current
