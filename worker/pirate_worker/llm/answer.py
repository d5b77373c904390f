"""What a provider answer holds: the aligned document, or the reasons it cannot be accepted.

The reasons are written for the model as much as for people: they go back to the provider as
feedback on the next attempt, and into the job's failure reason after the last one.
"""

from __future__ import annotations

import json
from typing import Any

from pirate_worker.hsds.schema import validate_aligned
from pirate_worker.llm.base import GenerationResult


def check_answer(generated: GenerationResult, max_tokens: int) -> tuple[dict[str, Any] | None, list[str]]:
    """The answer's document and what is wrong with it (``[]`` when it is a valid HSDS document)."""
    if generated.refusal is not None:
        return None, [f"the model refused to answer: {generated.refusal[:200]}"]
    if generated.truncated:
        return None, [
            f"the answer was cut off at the token limit ({max_tokens} tokens); "
            "answer with a shorter, complete document"
        ]
    document = generated.parsed
    if document is None:
        document, problem = parse_json_object(generated.text)
        if problem is not None:
            return None, [problem]
    return document, validate_aligned(document)


def parse_json_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parse an answer's text (tolerating a Markdown code fence around it) into a JSON object."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        parsed = json.loads(stripped)
    except json.JSONDecodeError as exc:
        return None, f"the answer is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if not isinstance(parsed, dict):
        return None, f"the answer is a JSON {type(parsed).__name__}, not an object"
    return parsed, None
