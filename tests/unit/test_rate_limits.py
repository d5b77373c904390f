"""Pure parts of provider error handling: wait times, reset times, the transient/quota line, redaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pirate_worker.llm.base import QuotaExceededError, RateLimitedError, TransientProviderError
from pirate_worker.llm.rate_limits import (
    anthropic_reset_at,
    budget_headers,
    header_limits,
    openai_reset_s,
    parse_duration,
    rate_limited,
    redact,
    retry_after_s,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "30"}, 30.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "2500", "retry-after": "9"}, 2.5),
        ({"retry-after": "Sun, 01 Mar 2026 12:02:00 GMT"}, 120.0),
        ({"retry-after": "Sun, 01 Mar 2026 11:00:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(headers, NOW) == expected


def test_anthropic_reset_prefers_the_exhausted_limit() -> None:
    headers = {
        "anthropic-ratelimit-requests-reset": "2026-03-01T12:00:10Z",
        "anthropic-ratelimit-requests-remaining": "40",
        "anthropic-ratelimit-output-tokens-reset": "2026-03-01T12:00:40Z",
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": "2026-03-01T12:05:00Z",
        "anthropic-ratelimit-tokens-remaining": "1000",
    }
    assert anthropic_reset_at(headers) == NOW + timedelta(seconds=40)


def test_anthropic_reset_without_remaining_counts_takes_the_latest() -> None:
    headers = {
        "anthropic-ratelimit-requests-reset": "2026-03-01T12:00:10Z",
        "anthropic-ratelimit-input-tokens-reset": "2026-03-01T13:00:00+00:00",
        "anthropic-ratelimit-tokens-reset": "not a time",
    }
    assert anthropic_reset_at(headers) == NOW + timedelta(hours=1)
    assert anthropic_reset_at({"retry-after": "3"}) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3s", 3723.0),
        ("7.5", 7.5),
        ("6m0", None),
        ("", None),
    ],
)
def test_parse_duration(text: str, expected: float | None) -> None:
    assert parse_duration(text) == expected


def test_openai_reset_uses_only_exhausted_limits() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "12s",
        "x-ratelimit-remaining-tokens": "500",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert openai_reset_s(headers) == 12.0
    assert openai_reset_s({"x-ratelimit-remaining-tokens": "9", "x-ratelimit-reset-tokens": "1s"}) is None


@pytest.mark.parametrize(
    ("wait", "reset", "kind", "retry_after", "retry_at"),
    [
        (None, None, TransientProviderError, None, None),
        (0.2, None, RateLimitedError, 1, None),
        (60, None, RateLimitedError, 60, None),
        (61, None, QuotaExceededError, None, NOW + timedelta(seconds=61)),
        (None, NOW + timedelta(seconds=30), RateLimitedError, 30, None),
        (None, NOW + timedelta(hours=1), QuotaExceededError, None, NOW + timedelta(hours=1)),
        (3600, NOW + timedelta(minutes=59), QuotaExceededError, None, NOW + timedelta(minutes=59)),
        (5, NOW + timedelta(hours=1), RateLimitedError, 5, None),
    ],
)
def test_rate_limited_draws_the_line_at_the_transient_maximum(
    wait: float | None, reset: datetime | None, kind: type, retry_after: int | None, retry_at: datetime | None
) -> None:
    exc = rate_limited("429", NOW, 60, wait, reset)
    assert type(exc) is kind
    if isinstance(exc, TransientProviderError):
        assert exc.retry_after_s == retry_after
    else:
        assert isinstance(exc, QuotaExceededError) and exc.retry_at == retry_at


def test_redact_removes_secrets_and_key_shapes_and_keeps_one_short_line() -> None:
    text = "bad key my-secret-value\nIncorrect API key provided: sk-proj-abc*********wxyz; Bearer abc.def"
    out = redact(text, ["my-secret-value"])
    assert "my-secret-value" not in out and "sk-proj" not in out and "abc.def" not in out
    assert "\n" not in out and out.count("***") == 3
    assert len(redact("x" * 1000, [])) == 300


def test_a_paced_429_carries_the_rate_limit_headers_and_nothing_else() -> None:
    headers = {"Retry-After": "3", "anthropic-ratelimit-requests-remaining": "0", "request-id": "r1"}
    exc = rate_limited("429", NOW, 60, 3.0, headers=headers)
    assert type(exc) is RateLimitedError
    assert exc.headers == {"retry-after": "3", "anthropic-ratelimit-requests-remaining": "0"}


def test_header_limits_reads_both_providers_into_budget_dimensions() -> None:
    anthropic = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "35000",
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "bad",
        "anthropic-ratelimit-tokens-limit": "48000",
    }
    limits, remaining = header_limits(anthropic)
    assert limits == {"requests": 50, "input_tokens": 40000, "output_tokens": 8000, "tokens": 48000}
    assert remaining == {"requests": 49, "input_tokens": 35000}
    openai = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-tokens": "1200", "X-Other": "1"}
    assert header_limits(openai) == ({"requests": 500}, {"tokens": 1200})
    kept = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-tokens": "1200"}
    assert budget_headers(openai) == kept
