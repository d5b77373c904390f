"""The SDK providers, unpatched, against the local wire server: what they send, how they classify."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from pirate_worker.errors import ConfigError
from pirate_worker.hsds.schema import aligned_document_schema, strict_variant, validate_aligned
from pirate_worker.llm.anthropic_provider import TOOL_NAME, AnthropicProvider
from pirate_worker.llm.base import (
    AuthFailedError,
    GenerationConfig,
    ProviderError,
    QuotaExceededError,
    RateLimitedError,
    TransientProviderError,
)
from pirate_worker.llm.factory import build_provider
from pirate_worker.llm.ollama_provider import OllamaProvider
from pirate_worker.llm.openai_provider import OpenAIProvider
from pirate_worker.llm.prompt import FEEDBACK_HEADER, SYSTEM_PROMPT, build_messages
from pirate_worker.settings import load_settings
from tests.support.llm_server import LLMServer, Reply, error, garbage, refusal, truncated, valid

pytestmark = pytest.mark.integration

ANTHROPIC_KEY = "sk-ant-wire-0123456789abcdef"
OPENAI_KEY = "sk-wire-openai-0123456789abcdef"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RECORD = json.dumps(
    {
        "org_name": "Riverside Food Pantry",
        "location": "12 Main St, Albany, NY 12207",
        "hours": "Mon-Fri 9am-5pm",
        "phone": "518-555-0100",
    }
)
CONFIG = GenerationConfig(model="test-model-1", temperature=0.3, max_tokens=1234, timeout_s=1.0)


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


def anthropic(server: LLMServer, **kw: Any) -> AnthropicProvider:
    return AnthropicProvider(ANTHROPIC_KEY, base_url=server.url, clock=lambda: NOW, **kw)


def openai(server: LLMServer, **kw: Any) -> OpenAIProvider:
    return OpenAIProvider(OPENAI_KEY, base_url=f"{server.url}/v1", clock=lambda: NOW, **kw)


def ask(provider: Any, feedback: list[str] | None = None) -> Any:
    return provider.generate(build_messages(RECORD, feedback), aligned_document_schema(), CONFIG)


def raised(provider: Any, server: LLMServer, reply: Reply) -> ProviderError:
    server.script(reply)
    with pytest.raises(ProviderError) as info:
        ask(provider)
    return info.value


# -- what the SDKs send ------------------------------------------------------------------------


def test_anthropic_sends_the_schema_as_a_forced_tool(server: LLMServer) -> None:
    result = ask(anthropic(server))
    [request] = server.requests
    body = request.body
    assert request.path == "/v1/messages"
    assert body["model"] == "test-model-1" and body["max_tokens"] == 1234 and body["temperature"] == 0.3
    assert body["system"] == SYSTEM_PROMPT
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": RECORD}]}]
    [tool] = body["tools"]
    expected_schema = {k: v for k, v in aligned_document_schema().items() if k != "$schema"}
    assert tool["name"] == TOOL_NAME and tool["input_schema"] == expected_schema
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    assert ANTHROPIC_KEY in request.headers.get("x-api-key", "") + request.headers.get("authorization", "")
    assert request.headers["x-stainless-retry-count"] == "0"
    # The answer comes back as the tool's input: parsed, valid, with usage by kind.
    assert result.parsed is not None and validate_aligned(result.parsed) == []
    assert result.parsed["organization"]["name"] == "Riverside Food Pantry"
    assert result.usage == {
        "input_tokens": 120,
        "output_tokens": 80,
        "cache_read_tokens": 30,
        "cache_write_tokens": 0,
    }
    assert not result.truncated and result.refusal is None and result.stop_reason == "tool_use"


def test_anthropic_feedback_rides_in_the_same_user_turn(server: LLMServer) -> None:
    ask(anthropic(server), feedback=["organization.name: 42 is not of type 'string'"])
    [turn] = server.requests[0].body["messages"]
    assert turn["role"] == "user" and turn["content"][0]["text"] == RECORD
    assert turn["content"][1]["text"].startswith(FEEDBACK_HEADER)
    assert "organization.name: 42 is not of type 'string'" in turn["content"][1]["text"]


def test_openai_sends_a_strict_json_schema(server: LLMServer) -> None:
    result = ask(openai(server))
    [request] = server.requests
    body = request.body
    assert request.path == "/v1/chat/completions"
    assert body["model"] == "test-model-1" and body["temperature"] == 0.3 and body["max_tokens"] == 1234
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": RECORD},
    ]
    response_format = body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema == strict_variant(aligned_document_schema())
    Draft202012Validator.check_schema(schema)
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert result.parsed is None and validate_aligned(json.loads(result.text)) == []
    assert result.usage == {"input_tokens": 120, "output_tokens": 80, "cache_read_tokens": 30}


def test_openai_default_endpoint_uses_max_completion_tokens() -> None:
    provider = OpenAIProvider(OPENAI_KEY)
    assert provider._token_limit_field == "max_completion_tokens"


def test_ollama_sends_the_schema_as_format(server: LLMServer) -> None:
    result = ask(OllamaProvider(server.url, timeout_s=1.0))
    [request] = server.requests
    body = request.body
    assert request.path == "/api/chat" and body["model"] == "test-model-1" and body["stream"] is False
    assert body["format"] == {k: v for k, v in aligned_document_schema().items() if k != "$schema"}
    assert body["options"] == {"temperature": 0.3, "num_predict": 1234}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert validate_aligned(json.loads(result.text)) == []
    assert result.usage == {"input_tokens": 120, "output_tokens": 80}


@pytest.mark.parametrize("make", [anthropic, openai, lambda s: OllamaProvider(s.url, timeout_s=1.0)])
def test_truncation_refusal_and_garbage_are_reported(server: LLMServer, make: Any) -> None:
    provider = make(server)
    server.script(truncated(), garbage(), refusal())
    assert ask(provider).truncated
    garbled = ask(provider)
    assert garbled.parsed is None and "<b>" in garbled.text and not garbled.truncated
    refused = ask(provider)
    if not isinstance(provider, OllamaProvider):  # Ollama has no refusal signal
        assert refused.refusal


# -- error classification ----------------------------------------------------------------------


def test_anthropic_429_short_retry_after_is_paced(server: LLMServer) -> None:
    headers = {"retry-after": "7", "anthropic-ratelimit-requests-remaining": "0"}
    exc = raised(anthropic(server), server, error(429, headers=headers))
    assert type(exc) is RateLimitedError and exc.retry_after_s == 7
    assert exc.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_anthropic_429_long_wait_with_reset_header_is_quota_until_the_reset(server: LLMServer) -> None:
    reset = NOW + timedelta(hours=2)
    headers = {
        "retry-after": "7200",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset.isoformat().replace("+00:00", "Z"),
        "anthropic-ratelimit-tokens-remaining": "5000",
        "anthropic-ratelimit-tokens-reset": (NOW + timedelta(seconds=5)).isoformat(),
    }
    exc = raised(anthropic(server), server, error(429, "rate limit", headers))
    assert isinstance(exc, QuotaExceededError) and exc.retry_at == reset


def test_anthropic_429_reset_header_alone_far_away_is_quota(server: LLMServer) -> None:
    reset = NOW + timedelta(minutes=30)
    headers = {"anthropic-ratelimit-input-tokens-reset": reset.isoformat()}
    exc = raised(anthropic(server), server, error(429, headers=headers))
    assert isinstance(exc, QuotaExceededError) and exc.retry_at == reset


def test_anthropic_credit_balance_is_quota_on_the_backoff_schedule(server: LLMServer) -> None:
    text = "Your credit balance is too low to access the Anthropic API."
    exc = raised(anthropic(server), server, error(400, text))
    assert isinstance(exc, QuotaExceededError) and exc.retry_at is None
    assert "credit balance" in str(exc)


@pytest.mark.parametrize("status", [401, 403])
def test_anthropic_auth_failures(server: LLMServer, status: int) -> None:
    assert isinstance(raised(anthropic(server), server, error(status, "invalid x-api-key")), AuthFailedError)


@pytest.mark.parametrize("status", [500, 502, 503, 529])
def test_anthropic_overload_and_5xx_are_transient_never_quota(server: LLMServer, status: int) -> None:
    exc = raised(anthropic(server), server, error(status, "Overloaded"))
    assert type(exc) is TransientProviderError


def test_anthropic_other_400_fails_the_job(server: LLMServer) -> None:
    exc = raised(anthropic(server), server, error(400, "tools.0.input_schema: invalid"))
    assert type(exc) is ProviderError


@pytest.mark.parametrize("make", [anthropic, openai, lambda s: OllamaProvider(s.url, timeout_s=1.0)])
def test_timeouts_and_refused_connections_are_transient(server: LLMServer, make: Any) -> None:
    exc = raised(make(server), server, valid(delay_s=3))
    assert type(exc) is TransientProviderError and "within" in str(exc)
    server.stop()
    with pytest.raises(TransientProviderError):
        ask(make(server))


def test_openai_insufficient_quota_is_quota_on_the_backoff_schedule(server: LLMServer) -> None:
    reply = error(429, "You exceeded your current quota", error_type="insufficient_quota")
    exc = raised(openai(server), server, reply)
    assert isinstance(exc, QuotaExceededError) and exc.retry_at is None


def test_openai_rate_limit_is_paced_with_retry_after(server: LLMServer) -> None:
    exc = raised(openai(server), server, error(429, headers={"retry-after-ms": "2500"}))
    assert type(exc) is RateLimitedError and exc.retry_after_s == 3
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s"}
    exc = raised(openai(server), server, error(429, headers=headers))
    assert type(exc) is RateLimitedError and exc.retry_after_s == 20


def test_openai_rate_limit_with_a_long_wait_is_quota(server: LLMServer) -> None:
    exc = raised(openai(server), server, error(429, headers={"retry-after": "600"}))
    assert isinstance(exc, QuotaExceededError) and exc.retry_at == NOW + timedelta(seconds=600)


@pytest.mark.parametrize(("status", "expected"), [(401, AuthFailedError), (500, TransientProviderError)])
def test_openai_auth_and_server_errors(server: LLMServer, status: int, expected: type) -> None:
    assert type(raised(openai(server), server, error(status))) is expected


@pytest.mark.parametrize(("status", "expected"), [(404, ProviderError), (500, TransientProviderError)])
def test_ollama_errors(server: LLMServer, status: int, expected: type) -> None:
    provider = OllamaProvider(server.url, timeout_s=1.0)
    assert type(raised(provider, server, error(status, "model 'x' not found"))) is expected


def test_error_messages_never_carry_the_key(server: LLMServer) -> None:
    echo = f"Incorrect API key provided: {OPENAI_KEY}. Authorization: Bearer {OPENAI_KEY}"
    exc = raised(openai(server), server, error(401, echo))
    assert OPENAI_KEY not in str(exc) and "sk-" not in str(exc)
    assert exc.__cause__ is None and exc.__suppress_context__
    exc = raised(anthropic(server), server, error(401, f"bad key {ANTHROPIC_KEY}"))
    assert ANTHROPIC_KEY not in str(exc)


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "variable"),
    [("anthropic", "ANTHROPIC_API_KEY"), ("claude", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY")],
)
def test_a_missing_key_is_a_one_line_config_error(
    provider: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError) as info:
        build_provider(load_settings(LLM_PROVIDER=provider))
    unless = " without OPENAI_BASE_URL" if provider == "openai" else ""
    assert str(info.value) == (
        f"invalid environment variable {variable}: required when LLM_PROVIDER={provider}{unless}"
    )


def test_a_keyless_openai_compatible_endpoint_needs_no_key(
    server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = build_provider(load_settings(LLM_PROVIDER="openai", OPENAI_BASE_URL=f"{server.url}/v1"))
    assert validate_aligned(json.loads(ask(provider).text)) == []
    assert server.requests[0].headers["authorization"] == "Bearer no-key"


def test_claude_is_an_alias_of_anthropic(server: LLMServer) -> None:
    settings = load_settings(
        LLM_PROVIDER="claude", ANTHROPIC_API_KEY=ANTHROPIC_KEY, ANTHROPIC_BASE_URL=server.url
    )
    provider = build_provider(settings)
    assert isinstance(provider, AnthropicProvider) and provider.name == "anthropic"
    assert settings.model_name == "claude-sonnet-4-20250514"
