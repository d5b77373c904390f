"""Real LLM APIs, only when their key is set (never in CI): ``pytest -m live``.

Each test sends one sample listing through the configured provider and checks that the answer
passes the same validation the llm job applies. Model names come from ``LLM_MODEL_NAME`` or
each provider's default.
"""

from __future__ import annotations

import os

import pytest

from pirate_worker.hsds.schema import aligned_document_schema
from pirate_worker.llm.answer import check_answer
from pirate_worker.llm.base import GenerationConfig
from pirate_worker.llm.factory import build_provider
from pirate_worker.llm.prompt import build_messages
from pirate_worker.services.scraper_files import ScrapedRecord
from pirate_worker.settings import load_settings
from tests.conftest import IN_CI

pytestmark = [pytest.mark.integration, pytest.mark.live]


@pytest.mark.parametrize(
    ("provider", "variable"),
    [("anthropic", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY")],
)
def test_a_real_provider_aligns_a_listing(provider: str, variable: str, sample_records: list[ScrapedRecord]):
    if IN_CI or not os.environ.get(variable):
        pytest.skip(f"live test: set {variable} (never runs in CI)")
    settings = load_settings(LLM_PROVIDER=provider)
    config = GenerationConfig(
        model=settings.model_name,
        temperature=settings.LLM_TEMPERATURE,
        max_tokens=settings.LLM_MAX_TOKENS,
        timeout_s=settings.LLM_TIMEOUT_S,
    )
    result = build_provider(settings).generate(
        build_messages(sample_records[0].content), aligned_document_schema(), config
    )
    document, problems = check_answer(result, config.max_tokens)
    assert problems == [] and document is not None, problems
    assert document["organization"]["name"]
    assert result.usage["input_tokens"] > 0 and result.usage["output_tokens"] > 0
