"""A local or remote Ollama server through the official ``ollama`` client, ``format=<json schema>``.

Ollama turns the schema into a decoding grammar. No key is involved. Errors: 401, 403 → auth
failed (a protected remote server); 429, 5xx, timeouts and connection errors → transient;
others (404: the model is not pulled) fail the job.
"""

from __future__ import annotations

from typing import Any

import httpx
import ollama

from pirate_worker.llm.base import (
    AuthFailedError,
    GenerationConfig,
    GenerationResult,
    Message,
    ProviderError,
    TransientProviderError,
)
from pirate_worker.llm.rate_limits import redact


class OllamaProvider:
    """``LLM_PROVIDER=ollama``; ``OLLAMA_HOST`` names the server (default ``localhost:11434``)."""

    name = "ollama"

    def __init__(self, host: str | None = None, *, timeout_s: float = 120.0) -> None:
        self._client = ollama.Client(host=host, timeout=timeout_s)
        self._timeout_s = timeout_s

    def generate(
        self, messages: list[Message], schema: dict[str, Any], config: GenerationConfig
    ) -> GenerationResult:
        """One chat call; raises a :class:`ProviderError` subclass on failure."""
        try:
            response = self._client.chat(
                model=config.model,
                messages=[{"role": m.role, "content": m.content} for m in messages],
                format={k: v for k, v in schema.items() if k != "$schema"},
                options={"temperature": config.temperature, "num_predict": config.max_tokens},
                stream=False,
            )
        except ollama.ResponseError as exc:
            raise _classify(exc) from None
        except httpx.TimeoutException:
            raise TransientProviderError(f"ollama: no answer within {self._timeout_s:g}s") from None
        except (ConnectionError, httpx.TransportError):
            raise TransientProviderError("ollama: connection failed") from None
        prompt_tokens = response.prompt_eval_count or 0
        return GenerationResult(
            text=response.message.content or "",
            model=response.model or config.model,
            usage={"input_tokens": prompt_tokens, "output_tokens": response.eval_count or 0},
            stop_reason=response.done_reason,
            truncated=response.done_reason == "length",
        )


def _classify(exc: ollama.ResponseError) -> ProviderError:
    status = exc.status_code
    message = redact(f"ollama {status}: {exc.error}", ())
    if status in (401, 403):
        return AuthFailedError(message)
    if status in (408, 429) or status >= 500:
        return TransientProviderError(message)
    return ProviderError(message)
