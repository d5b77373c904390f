"""Build the configured provider inside the worker, from the worker's own settings."""

from __future__ import annotations

from pirate_worker.errors import ConfigError
from pirate_worker.llm.base import Provider
from pirate_worker.settings import Settings


def build_provider(settings: Settings) -> Provider:
    """The provider named by ``LLM_PROVIDER``; credentials come from settings, never from jobs."""
    if settings.provider == "rules":
        from pirate_worker.llm.rules import RulesProvider

        return RulesProvider()
    raise ConfigError(
        f"invalid environment variable LLM_PROVIDER={settings.provider}: this build ships only the offline "
        "'rules' provider (SDK providers arrive with the LLM providers release)"
    )
