"""OpenAI (and OpenRouter or any compatible endpoint via ``OPENAI_BASE_URL``) through the official
``openai`` SDK: Chat Completions with ``response_format`` json_schema, ``strict: true``.

Strict mode accepts only a subset of JSON Schema, so the schema sent is
:func:`~pirate_worker.hsds.schema.strict_variant` of the aligned document schema (every property
required, nullable instead of optional, ``additionalProperties: false``, no ``format``/``pattern``
or length keywords); answers in that form still validate against the full schema.

Error classification: 429 ``insufficient_quota`` → quota block on the backoff schedule; any other
429 → :func:`~pirate_worker.llm.rate_limits.rate_limited` with ``retry-after`` (or the exhausted
``x-ratelimit-reset-*``); 401, 403 → auth failed; 408, 409, 5xx, timeouts, connection errors →
transient; other statuses fail the job.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import openai

from pirate_worker.hsds.schema import strict_variant
from pirate_worker.llm.base import (
    AuthFailedError,
    GenerationConfig,
    GenerationResult,
    Message,
    ProviderError,
    QuotaExceededError,
    TransientProviderError,
    utcnow,
)
from pirate_worker.llm.rate_limits import (
    budget_headers,
    openai_reset_s,
    rate_limited,
    redact,
    retry_after_s,
    sdk_errors,
)

SCHEMA_NAME: Final = "hsds_aligned_document"


class OpenAIProvider:
    """``LLM_PROVIDER=openai``."""

    name = "openai"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        transient_max_s: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)
        # OpenAI's own API wants max_completion_tokens (reasoning models reject max_tokens);
        # compatible endpoints (OpenRouter, vLLM, ...) document max_tokens.
        self._token_limit_field = "max_completion_tokens" if base_url is None else "max_tokens"
        self._secrets = (api_key,)
        self._transient_max_s = transient_max_s
        self._clock = clock

    def generate(
        self, messages: list[Message], schema: dict[str, Any], config: GenerationConfig
    ) -> GenerationResult:
        """One Chat Completions call; raises a :class:`ProviderError` subclass on failure."""
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": strict_variant(schema)},
        }
        params: dict[str, Any] = {
            "model": config.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": config.temperature,
            "response_format": response_format,
            "timeout": config.timeout_s,
            self._token_limit_field: config.max_tokens,
        }
        with sdk_errors("openai", openai, config.timeout_s, self._classify):
            raw = self._client.chat.completions.with_raw_response.create(**params)
            response = raw.parse()
        return _result(response).model_copy(update={"rate_headers": budget_headers(raw.headers)})

    def _classify(self, exc: openai.APIStatusError) -> ProviderError:
        status = exc.status_code
        code = str(exc.code or exc.type or "error") if isinstance(exc.body, dict) else "error"
        text = str(exc.body.get("message", "")) if isinstance(exc.body, dict) else ""
        request_id = exc.request_id or ""
        message = redact(
            f"openai {status} {code}: {text}" + (f" (request {request_id})" if request_id else ""),
            self._secrets,
        )
        now = self._clock()
        headers = exc.response.headers
        if status == 429:
            if code == "insufficient_quota":
                return QuotaExceededError(message)
            wait = retry_after_s(headers, now)
            if wait is None:
                wait = openai_reset_s(headers)
            return rate_limited(message, now, self._transient_max_s, wait, headers=headers)
        if status in (401, 403):
            return AuthFailedError(message)
        if status in (408, 409) or status >= 500:
            return TransientProviderError(message, retry_after_s(headers, now))
        return ProviderError(message)


def _result(response: Any) -> GenerationResult:
    choice = response.choices[0]
    content = choice.message.content or ""
    usage = response.usage
    cached = 0
    if usage is not None and usage.prompt_tokens_details is not None:
        cached = usage.prompt_tokens_details.cached_tokens or 0
    refusal = choice.message.refusal
    if refusal is None and choice.finish_reason == "content_filter":
        refusal = "the answer was withheld by the content filter"
    return GenerationResult(
        text=content,
        model=response.model,
        usage={
            "input_tokens": (usage.prompt_tokens - cached) if usage else 0,
            "output_tokens": usage.completion_tokens if usage else 0,
            "cache_read_tokens": cached,
        },
        stop_reason=choice.finish_reason,
        truncated=choice.finish_reason == "length",
        refusal=refusal,
    )
