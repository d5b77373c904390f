"""A scripted LLM provider for runtime tests that are about the worker, not the provider (the
SDK providers are tested against the local wire server, ``tests/support/llm_server.py``).

Each call pops one instruction from the Redis list ``test:provider:script`` (REDIS_URL):
``ok`` or empty list → the real offline ``rules`` provider; ``sleep:S`` → sleep S seconds, then
``rules``; ``quota`` / ``quota_until:EPOCH`` / ``quota_in:S`` (reset S seconds after the call) /
``auth`` / ``transient:S`` → the matching error.
Bad answers (the provider "succeeds" with something unusable): ``garbage`` → text that is not
JSON; ``truncated`` → the rules answer cut in half, stopped at ``max_tokens``; ``non_object`` → a
JSON array; ``not_hsds`` → a JSON object that is not an HSDS document.
Every call is counted in ``test:provider:calls``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from pirate_worker.llm.base import (
    AuthFailedError,
    GenerationConfig,
    GenerationResult,
    Message,
    QuotaExceededError,
    TransientProviderError,
)
from pirate_worker.llm.rules import RulesProvider
from pirate_worker.settings import Settings

SCRIPT_KEY = "test:provider:script"
BAD_ANSWERS = frozenset({"garbage", "truncated", "non_object", "not_hsds"})
CALLS_KEY = "test:provider:calls"


class ScriptedProvider:
    name = "scripted"

    def __init__(self, redis_url: str) -> None:
        self._redis = Redis.from_url(redis_url)
        self._rules = RulesProvider()

    def generate(
        self, messages: list[Message], schema: dict[str, Any], config: GenerationConfig
    ) -> GenerationResult:
        self._redis.incr(CALLS_KEY)
        raw = self._redis.lpop(SCRIPT_KEY)
        step = raw.decode() if isinstance(raw, bytes) else "ok"
        kind, _, arg = step.partition(":")
        if kind == "sleep":
            time.sleep(float(arg))
        elif kind == "quota":
            raise QuotaExceededError("scripted: rate limit reached for this month")
        elif kind == "quota_until":
            raise QuotaExceededError(
                "scripted: quota exceeded", retry_at=datetime.fromtimestamp(float(arg), UTC)
            )
        elif kind == "quota_in":
            raise QuotaExceededError(
                "scripted: quota exceeded", retry_at=datetime.fromtimestamp(time.time() + float(arg), UTC)
            )
        elif kind == "auth":
            raise AuthFailedError("scripted: invalid x-api-key")
        elif kind == "transient":
            raise TransientProviderError("scripted: overloaded", retry_after_s=float(arg or 1))
        elif kind in BAD_ANSWERS:
            return self._bad_answer(kind, messages, schema, config)
        return self._rules.generate(messages, schema, config)

    def _bad_answer(
        self, kind: str, messages: list[Message], schema: dict[str, Any], config: GenerationConfig
    ) -> GenerationResult:
        if kind == "truncated":
            whole = self._rules.generate(messages, schema, config).text
            return GenerationResult(
                text=whole[: len(whole) // 2], model=config.model, stop_reason="max_tokens", truncated=True
            )
        text = {
            "garbage": "Sure! Here is the HSDS document you asked for: <organization>?",
            "non_object": "[1, 2, 3]",
            "not_hsds": '{"organization": "Lakeside", "hours": "always"}',
        }[kind]
        return GenerationResult(text=text, model=config.model, stop_reason="end_turn")


def build_scripted(settings: Settings) -> ScriptedProvider:
    return ScriptedProvider(settings.REDIS_URL)
