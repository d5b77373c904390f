"""The provider interface every LLM adapter implements, and the errors that steer retries.

Error classes decide what happens to a job: :class:`TransientProviderError` retries with RQ's
schedule, :class:`QuotaExceededError` and :class:`AuthFailedError` put the job back on its queue
without consuming a retry and pause the llm workers, anything else fails the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field


class Message(BaseModel):
    role: str
    content: str


class GenerationConfig(BaseModel):
    model: str
    temperature: float = 0.2
    max_tokens: int = 4096
    timeout_s: float = 120.0


#: Token kinds a provider reports in ``GenerationResult.usage`` (the label of the tokens metric).
#: ``input_tokens`` counts uncached input only; cached input is ``cache_read_tokens``.
TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


class GenerationResult(BaseModel):
    """One provider answer. ``parsed`` is set when the API hands back an object (tool input);
    otherwise the caller parses ``text``. ``truncated`` means the token limit cut the answer off;
    ``refusal`` holds the model's stated reason when it declined to answer."""

    text: str
    parsed: dict[str, Any] | None = None
    model: str
    usage: dict[str, int] = Field(default_factory=dict)
    stop_reason: str | None = None
    truncated: bool = False
    refusal: str | None = None
    #: The answer's rate-limit headers (lower-cased), from which the shared budget learns.
    rate_headers: dict[str, str] = Field(default_factory=dict)


def utcnow() -> datetime:
    """The default clock of providers (injected in tests)."""
    return datetime.now(UTC)


class ProviderError(Exception):
    """Base of provider failures."""


class TransientProviderError(ProviderError):
    """Worth retrying soon (timeouts, overload, 5xx, short rate limits)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimitedError(TransientProviderError):
    """A 429 with a short wait: the job is scheduled again after it without spending a retry.

    ``headers`` carries the answer's rate-limit headers, so the shared budget learns from it.
    """

    def __init__(
        self, message: str, retry_after_s: float | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, retry_after_s)
        self.headers = headers or {}


class BudgetWaitError(RateLimitedError):
    """The fleet's shared rate-limit budget is spoken for longer than a job may wait in a slot.

    Nothing was sent. The job goes back to the front of its queue untouched and the worker takes
    no job for ``retry_after_s``, so a fleet larger than the limit sheds its surplus instead of
    churning the queue.
    """


class ProviderBlockedError(ProviderError):
    """The provider refuses all work for a while; the job goes back to its queue unharmed."""

    def __init__(self, message: str, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class QuotaExceededError(ProviderBlockedError):
    """Quota or credit exhausted. ``retry_at`` is set when the provider named a reset time."""


class AuthFailedError(ProviderBlockedError):
    """The credentials were rejected."""


class Provider(Protocol):
    """An LLM adapter. ``generate`` never logs prompts or keys."""

    name: str

    def generate(
        self, messages: list[Message], schema: dict[str, Any], config: GenerationConfig
    ) -> GenerationResult: ...


@dataclass
class ProviderCall:
    """Bookkeeping of one call, for metrics."""

    provider: str
    outcome: str
    usage: dict[str, int] = field(default_factory=dict)
