"""Every Redis key the project reads or writes outside RQ's own layout.

Provider state keys keep the upstream Pantry Pirate Radio names (``claude:quota:status`` ...);
everything else lives under ``pirate:``.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "pirate:"

#: Provider names as configured (``LLM_PROVIDER``) mapped to their Redis key prefix.
_STATE_PREFIXES: Final[dict[str, str]] = {
    "anthropic": "claude",
    "claude": "claude",
    "openai": "openai",
    "ollama": "ollama",
    "rules": "rules",
}


def provider_prefix(provider: str) -> str:
    """Key prefix for a provider's auth/quota state; Anthropic keeps upstream's ``claude``."""
    return _STATE_PREFIXES.get(provider, provider)


def auth_status_key(provider: str) -> str:
    return f"{provider_prefix(provider)}:auth:status"


def quota_status_key(provider: str) -> str:
    return f"{provider_prefix(provider)}:quota:status"


def last_check_key(provider: str) -> str:
    return f"{provider_prefix(provider)}:last:check"


def quota_hits_key(provider: str) -> str:
    """Consecutive quota hits, the exponent of the backoff schedule; reset by a success."""
    return f"{PREFIX}provider:{provider_prefix(provider)}:quota:hits"


def probe_lock_key(provider: str) -> str:
    """Held by the one worker that probes the provider after a block's ``retry_at`` (half-open)."""
    return f"{PREFIX}provider:{provider_prefix(provider)}:probe"


def content_entry_key(content_hash: str) -> str:
    return f"{PREFIX}content:{content_hash}"


def content_stats_key() -> str:
    return f"{PREFIX}content:stats"


def run_stats_key() -> str:
    """Counters of enqueue/processing outcomes shown by ``status`` and the demo summary."""
    return f"{PREFIX}stats"


def geocode_cache_key(query_digest: str) -> str:
    """One geocoder answer (JSON ``{"found", "lat", "lon"}``), shared by every reconciler."""
    return f"{PREFIX}geocode:cache:{query_digest}"


def geocode_slot_key() -> str:
    """When the next geocoder request may go out (ms since the epoch, Redis clock): the shared rate limit."""
    return f"{PREFIX}geocode:next-slot"


def rate_budget_key(provider: str) -> str:
    """The provider's rate-limit budget shared by the llm fleet (a hash, see ``contracts.rate_budget``)."""
    return f"{PREFIX}provider:{provider_prefix(provider)}:budget"
