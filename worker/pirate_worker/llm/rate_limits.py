"""What HTTP answers of the LLM APIs mean for a job: wait times, reset times, safe messages.

Shared by the SDK adapters. A rate limit that asks to wait at most ``transient_max_s``
(``LLM_TRANSIENT_RETRY_MAX_S``) is transient: the job is rescheduled after the wait and nobody
else is paused. A longer wait is a quota block, stored with the provider's reset time so every
worker pauses until then.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import Any, Final

from pirate_worker.llm.base import ProviderError, QuotaExceededError, RateLimitedError, TransientProviderError

#: Longest provider message kept in an error (and so in Redis, /health and failure reasons).
MAX_MESSAGE_CHARS: Final = 300

#: Anything that looks like an API key, whoever's it is (OpenAI and Anthropic key shapes, bearer
#: tokens): provider error texts sometimes quote a (partly masked) key back.
_KEY_LIKE: Final = re.compile(r"(sk-[A-Za-z0-9_*\-]{8,}|Bearer\s+\S+)")
_ANTHROPIC_RESET: Final = re.compile(r"^anthropic-ratelimit-(?P<limit>[a-z-]+)-reset$")
#: Headers a budget learns from: the limits, what remains, and the waits of a 429.
_BUDGET_HEADER: Final = re.compile(r"^(anthropic-ratelimit-|x-ratelimit-|retry-after)")
#: Anthropic's ``anthropic-ratelimit-<name>-{limit,remaining}`` and OpenAI's
#: ``x-ratelimit-{limit,remaining}-<name>``: the budget dimension each name is.
_ANTHROPIC_DIMENSIONS: Final = {
    "requests": "requests",
    "tokens": "tokens",
    "input-tokens": "input_tokens",
    "output-tokens": "output_tokens",
}
_OPENAI_DIMENSIONS: Final = {"requests": "requests", "tokens": "tokens"}
_DURATION_PART: Final = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|h|m|s)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@contextlib.contextmanager
def sdk_errors(
    name: str, sdk: ModuleType, timeout_s: float, classify: Callable[[Any], ProviderError]
) -> Iterator[None]:
    """Turn the errors of a Stainless-generated SDK (``anthropic``, ``openai``) into ours.

    HTTP errors go through ``classify``; timeouts, connection failures and unreadable answers are
    transient. Only a redacted summary leaves: the SDK's own text quotes the response body, and
    ``from None`` keeps it out of the traceback RQ stores with a failed job.
    """
    try:
        yield
    except sdk.APIStatusError as exc:
        raise classify(exc) from None
    except sdk.APITimeoutError:  # a subclass of APIConnectionError: first
        raise TransientProviderError(f"{name}: no answer within {timeout_s:g}s") from None
    except sdk.APIConnectionError:
        raise TransientProviderError(f"{name}: connection failed") from None
    except sdk.APIResponseValidationError:
        raise TransientProviderError(f"{name}: unreadable API response") from None


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` shortened, on one line, with every secret and key-like token replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _KEY_LIKE.sub("***", text)
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def retry_after_s(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds to wait per ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def anthropic_reset_at(headers: Mapping[str, str]) -> datetime | None:
    """When the exhausted Anthropic rate limit resets (``anthropic-ratelimit-<limit>-reset``).

    Anthropic sends a reset time (RFC 3339) for each limit on every answer; the one that matters
    is the limit whose ``-remaining`` is 0. When no remaining count says which, the latest reset.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    resets: dict[str, datetime] = {}
    for name, value in lowered.items():
        match = _ANTHROPIC_RESET.match(name)
        if match is None:
            continue
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            continue
        resets[match["limit"]] = when if when.tzinfo else when.replace(tzinfo=UTC)
    if not resets:
        return None
    exhausted = [
        when for limit, when in resets.items() if lowered.get(f"anthropic-ratelimit-{limit}-remaining") == "0"
    ]
    return max(exhausted or resets.values())


def openai_reset_s(headers: Mapping[str, str]) -> float | None:
    """Seconds until the exhausted OpenAI limit resets (``x-ratelimit-reset-*``, e.g. ``6m0s``)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    waits: list[float] = []
    for kind in ("requests", "tokens"):
        value = lowered.get(f"x-ratelimit-reset-{kind}")
        if value is None or lowered.get(f"x-ratelimit-remaining-{kind}") not in (None, "0"):
            continue
        parsed = parse_duration(value)
        if parsed is not None:
            waits.append(parsed)
    return max(waits) if waits else None


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (``1s``, ``6m0s``, ``20ms``, ``1h2m``) or a plain number."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = list(_DURATION_PART.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        return None
    return sum(float(p["value"]) * _UNIT_SECONDS[p["unit"]] for p in parts)


def budget_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The rate-limit headers of an answer (lower-cased), the only ones kept with a result."""
    return {k.lower(): v for k, v in headers.items() if _BUDGET_HEADER.match(k.lower())}


def header_limits(headers: Mapping[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """Limits per minute and remaining amounts per budget dimension, from either provider's headers."""
    lowered = {k.lower(): v for k, v in headers.items()}
    limits: dict[str, float] = {}
    remaining: dict[str, float] = {}
    for name, dimension in _ANTHROPIC_DIMENSIONS.items():
        _read(lowered, f"anthropic-ratelimit-{name}-limit", dimension, limits)
        _read(lowered, f"anthropic-ratelimit-{name}-remaining", dimension, remaining)
    for name, dimension in _OPENAI_DIMENSIONS.items():
        _read(lowered, f"x-ratelimit-limit-{name}", dimension, limits)
        _read(lowered, f"x-ratelimit-remaining-{name}", dimension, remaining)
    return limits, remaining


def _read(headers: Mapping[str, str], header: str, dimension: str, into: dict[str, float]) -> None:
    value = headers.get(header)
    if value is None:
        return
    try:
        number = float(value)
    except ValueError:
        return
    if math.isfinite(number) and number >= 0:
        into[dimension] = number


def rate_limited(
    message: str,
    now: datetime,
    transient_max_s: float,
    wait_s: float | None = None,
    reset_at: datetime | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProviderError:
    """The error for a rate-limit answer: paced for a short wait, a quota block otherwise.

    The wait is ``wait_s`` (``retry-after``) or else the time to ``reset_at``. A short one is the
    provider's pacing (:class:`RateLimitedError`: the job goes again after it, its retries
    untouched). No hint at all is transient (RQ's retry schedule, one retry spent), since nothing
    says when the limit frees up and a job must not wait on it forever.
    """
    if wait_s is None and reset_at is not None:
        wait_s = max((reset_at - now).total_seconds(), 0.0)
    if wait_s is None:
        return TransientProviderError(message)
    if wait_s <= transient_max_s:
        return RateLimitedError(
            message, retry_after_s=max(math.ceil(wait_s), 1), headers=budget_headers(headers or {})
        )
    retry_at = reset_at if reset_at is not None and reset_at > now else now + timedelta(seconds=wait_s)
    return QuotaExceededError(message, retry_at=retry_at)
