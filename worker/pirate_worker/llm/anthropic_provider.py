"""Claude through the official ``anthropic`` SDK (Messages API), structured output by a forced tool.

The HSDS schema is the ``input_schema`` of one tool and ``tool_choice`` names it, so the answer
arrives as the tool's input object. The SDK's own retries are off (``max_retries=0``): what a
failure means for the job is decided here, once.

Error classification:

* 429 → :func:`~pirate_worker.llm.rate_limits.rate_limited`: a ``retry-after`` up to
  ``LLM_TRANSIENT_RETRY_MAX_S`` is transient; a longer one, or no ``retry-after`` but an
  ``anthropic-ratelimit-*-reset`` time further away, is a quota block until that reset time;
* 400 "credit balance is too low" → quota block on the backoff schedule (no reset time known);
* 401, 403 → auth failed; 408, 409, 5xx, 529 overloaded, timeouts, connection errors → transient;
* anything else (400 bad request, 404 unknown model, 413) → the job fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import anthropic

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
    anthropic_reset_at,
    budget_headers,
    rate_limited,
    redact,
    retry_after_s,
    sdk_errors,
)

TOOL_NAME: Final = "record_hsds_document"
TOOL_DESCRIPTION: Final = (
    "Record the aligned HSDS document for the scraped listing. Call it exactly once with the "
    "complete document."
)


class AnthropicProvider:
    """``LLM_PROVIDER=anthropic`` (or ``claude``)."""

    name = "anthropic"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        transient_max_s: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
        )
        self._secrets = (api_key,)
        self._transient_max_s = transient_max_s
        self._clock = clock

    def generate(
        self, messages: list[Message], schema: dict[str, Any], config: GenerationConfig
    ) -> GenerationResult:
        """One Messages API call; raises a :class:`ProviderError` subclass on failure."""
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        input_schema = {k: v for k, v in schema.items() if k != "$schema"}
        params: dict[str, Any] = {
            "model": config.model,
            "max_tokens": config.max_tokens,
            "system": system,
            "messages": _turns(messages),
            "tools": [{"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": input_schema}],
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
            # This SDK release no longer types ``temperature``; the API still takes it.
            "extra_body": {"temperature": config.temperature},
            "timeout": config.timeout_s,
        }
        with sdk_errors("anthropic", anthropic, config.timeout_s, self._classify):
            raw = self._client.messages.with_raw_response.create(**params)
            response = raw.parse()
        return _result(response).model_copy(update={"rate_headers": budget_headers(raw.headers)})

    def _classify(self, exc: anthropic.APIStatusError) -> ProviderError:
        status = exc.status_code
        kind, text = _error_body(exc.body)
        request_id = exc.response.headers.get("request-id", "")
        message = redact(
            f"anthropic {status} {kind}: {text}" + (f" (request {request_id})" if request_id else ""),
            self._secrets,
        )
        now = self._clock()
        if status == 429:
            headers = exc.response.headers
            return rate_limited(
                message,
                now,
                self._transient_max_s,
                retry_after_s(headers, now),
                anthropic_reset_at(headers),
                headers=headers,
            )
        if status == 400 and "credit balance" in text.lower():
            return QuotaExceededError(message)
        if status in (401, 403):
            return AuthFailedError(message)
        if status in (408, 409) or status >= 500:
            return TransientProviderError(message, retry_after_s(exc.response.headers, now))
        return ProviderError(message)


def _turns(messages: list[Message]) -> list[dict[str, Any]]:
    """Non-system messages as API turns; consecutive same-role messages become one turn."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        block = {"type": "text", "text": message.content}
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].append(block)
        else:
            turns.append({"role": message.role, "content": [block]})
    return turns


def _error_body(body: object) -> tuple[str, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("type", "error")), str(error.get("message", ""))
    return "error", ""


def _result(response: anthropic.types.Message) -> GenerationResult:
    parsed: dict[str, Any] | None = None
    texts: list[str] = []
    for block in response.content:
        if block.type == "tool_use" and block.name == TOOL_NAME and isinstance(block.input, dict):
            parsed = block.input
        elif block.type == "text":
            texts.append(block.text)
    text = json.dumps(parsed, ensure_ascii=False) if parsed is not None else "".join(texts)
    usage = response.usage
    refused = response.stop_reason == "refusal"
    return GenerationResult(
        text=text,
        parsed=parsed,
        model=response.model,
        usage={
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_input_tokens or 0,
            "cache_write_tokens": usage.cache_creation_input_tokens or 0,
        },
        stop_reason=response.stop_reason,
        truncated=response.stop_reason == "max_tokens",
        refusal=("".join(texts) or "refused") if refused else None,
    )
