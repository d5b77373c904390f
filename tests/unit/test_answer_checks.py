"""What the llm job makes of one provider answer, before any retry decision."""

from __future__ import annotations

import json

import pytest

from pirate_worker.llm.answer import check_answer, parse_json_object
from pirate_worker.llm.base import GenerationConfig, GenerationResult
from pirate_worker.llm.prompt import build_messages
from pirate_worker.llm.rules import RulesProvider

RECORD = json.dumps({"org_name": "Hope Pantry", "location": "5 Elm St, Troy, NY 12180"})
VALID = RulesProvider().generate(build_messages(RECORD), {}, GenerationConfig(model="rules-v1")).parsed


def answer(text: str, **kw: object) -> GenerationResult:
    return GenerationResult(text=text, model="m", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "the answer is not valid JSON: Expecting value at line 1 column 1"),
        ("[1, 2]", "the answer is a JSON list, not an object"),
        ('{"a": ', "the answer is not valid JSON: Expecting value at line 1 column 6"),
    ],
)
def test_unparseable_answers_name_the_problem(text: str, problem: str) -> None:
    assert parse_json_object(text) == (None, problem)
    assert check_answer(answer(text), 100) == (None, [problem])


def test_a_fenced_valid_answer_is_accepted() -> None:
    document, problems = check_answer(answer(f"```json\n{json.dumps(VALID)}\n```"), 100)
    assert problems == [] and document == VALID


def test_parsed_answers_are_validated_against_the_schema() -> None:
    document, problems = check_answer(answer("{}", parsed={"organization": {"name": 1}}), 100)
    assert document == {"organization": {"name": 1}}
    assert "(document): 'services' is a required property" in problems
    assert "organization.name: 1 is not of type 'string'" in problems


def test_truncation_and_refusal_win_over_the_content() -> None:
    assert check_answer(answer(json.dumps(VALID), truncated=True), 512)[1] == [
        "the answer was cut off at the token limit (512 tokens); answer with a shorter, complete document"
    ]
    assert check_answer(answer("", refusal="not allowed"), 512)[1] == [
        "the model refused to answer: not allowed"
    ]
