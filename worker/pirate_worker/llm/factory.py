"""Build the configured provider inside the worker, from the worker's own settings.

Credentials and endpoints come from settings only, never from a job payload. A provider that
cannot be built raises :class:`ConfigError` naming the variable, so ``worker --role llm`` fails
at start (exit 2) instead of on the first job.
"""

from __future__ import annotations

from pydantic import SecretStr

from pirate_worker.errors import ConfigError
from pirate_worker.llm.base import Provider
from pirate_worker.settings import Settings

#: Sent as the key to an ``OPENAI_BASE_URL`` endpoint configured without one (keyless servers).
KEYLESS_PLACEHOLDER = "no-key"


def build_provider(settings: Settings) -> Provider:
    """The provider named by ``LLM_PROVIDER`` (``rules`` when unset)."""
    name = settings.provider
    if name in ("anthropic", "claude"):
        from pirate_worker.llm.anthropic_provider import AnthropicProvider

        return AnthropicProvider(
            _required_key(settings.ANTHROPIC_API_KEY, "ANTHROPIC_API_KEY", name),
            base_url=settings.ANTHROPIC_BASE_URL,
            timeout_s=settings.LLM_TIMEOUT_S,
            transient_max_s=settings.LLM_TRANSIENT_RETRY_MAX_S,
        )
    if name == "openai":
        from pirate_worker.llm.openai_provider import OpenAIProvider

        # A compatible endpoint of one's own (vLLM, a gateway) may need no key; the SDK still
        # wants a string, which such endpoints ignore.
        key = settings.OPENAI_API_KEY
        if settings.OPENAI_BASE_URL and (key is None or not key.get_secret_value().strip()):
            api_key = KEYLESS_PLACEHOLDER
        else:
            api_key = _required_key(key, "OPENAI_API_KEY", name, " without OPENAI_BASE_URL")
        return OpenAIProvider(
            api_key,
            base_url=settings.OPENAI_BASE_URL,
            timeout_s=settings.LLM_TIMEOUT_S,
            transient_max_s=settings.LLM_TRANSIENT_RETRY_MAX_S,
        )
    if name == "ollama":
        from pirate_worker.llm.ollama_provider import OllamaProvider

        return OllamaProvider(settings.OLLAMA_HOST, timeout_s=settings.LLM_TIMEOUT_S)
    from pirate_worker.llm.rules import RulesProvider

    return RulesProvider()


def _required_key(value: SecretStr | None, variable: str, provider: str, unless: str = "") -> str:
    secret = value.get_secret_value().strip() if value is not None else ""
    if not secret:
        raise ConfigError(
            f"invalid environment variable {variable}: required when LLM_PROVIDER={provider}{unless}"
        )
    return secret
