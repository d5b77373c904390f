"""The offline rules provider: every sample aligns to a valid document, field by field, deterministically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pirate_worker.hsds.schema import aligned_document_schema, strict_variant, validate_aligned
from pirate_worker.llm.base import GenerationConfig, Message, ProviderError, TransientProviderError
from pirate_worker.llm.hours import parse_hours
from pirate_worker.llm.prompt import FEEDBACK_HEADER, SYSTEM_PROMPT, build_messages, scraped_content
from pirate_worker.llm.rules import RulesProvider, UnalignableRecordError, align_record

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIG = GenerationConfig(model="rules-v1")


def _canonical(item: object) -> str:
    """The content the enqueuer sends for one scraped item."""
    return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _samples() -> list[Any]:
    params = []
    for path in sorted(EXAMPLES.glob("*.json")):
        for index, item in enumerate(json.loads(path.read_text(encoding="utf-8"))["raw_data"]):
            params.append(pytest.param(item, id=f"{path.stem}[{index}]"))
    return params


SAMPLES = _samples()


def _generate(content: str, feedback: list[str] | None = None) -> Any:
    return RulesProvider().generate(build_messages(content, feedback), aligned_document_schema(), CONFIG)


def test_all_sample_records_are_covered() -> None:
    assert len(SAMPLES) == 56


@pytest.mark.parametrize("item", SAMPLES)
def test_every_sample_record_aligns_to_a_valid_document(item: dict[str, Any]) -> None:
    result = _generate(_canonical(item))

    assert validate_aligned(result.parsed) == []
    assert json.loads(result.text) == result.parsed
    assert result.parsed["organization"]["name"]
    assert len(result.parsed["services"]) == 3
    (location,) = result.parsed["locations"]
    assert len(location["addresses"]) == 1
    assert location["schedules"][0]["freq"] == "WEEKLY"


def _fill_absent(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """What a strict-mode model would send: every property present, unknown ones null or []."""
    filled: dict[str, Any] = {}
    for name, sub in schema["properties"].items():
        if sub["type"] == "array":
            filled[name] = [_fill_absent(item, sub["items"]) for item in node.get(name, [])]
        elif sub["type"] == "object":
            filled[name] = _fill_absent(node[name], sub)
        else:
            filled[name] = node.get(name)
    return filled


@pytest.mark.parametrize("item", SAMPLES[::9])
def test_documents_fit_the_strict_variant_once_unknowns_are_spelled_out(item: dict[str, Any]) -> None:
    schema = aligned_document_schema()
    document = _fill_absent(align_record(_canonical(item)), schema)

    assert list(Draft202012Validator(strict_variant(schema)).iter_errors(document)) == []
    assert validate_aligned(document) == []


FLAT = {
    "org_name": "Riverbend Food Bank",
    "location": "1196 Cedar Ln, Dayton, OH 45402",
    "phone": "(719) 419-1614",
    "email": "info0@riverbendfoodbank.org",
    "hours": "Mon-Sat 8am-4pm",
    "services": "baby formula, emergency groceries, hot meals",
    "eligibility": "Open to all",
    "latitude": 39.71831,
    "longitude": -84.18332,
}


def test_flat_record_aligns_to_exactly_this_document() -> None:
    phone = {"number": "(719) 419-1614", "type": "voice"}
    service = {"status": "active", "eligibility_description": "Open to all"}

    assert align_record(_canonical(FLAT)) == {
        "organization": {
            "name": "Riverbend Food Bank",
            "description": "Offers baby formula, emergency groceries, hot meals. Eligibility: Open to all.",
            "email": "info0@riverbendfoodbank.org",
            "phones": [phone],
        },
        "services": [
            {"name": "Baby formula", **service},
            {"name": "Emergency groceries", **service},
            {"name": "Hot meals", **service},
        ],
        "locations": [
            {
                "name": "Riverbend Food Bank",
                "location_type": "physical",
                "latitude": 39.71831,
                "longitude": -84.18332,
                "addresses": [
                    {
                        "address_1": "1196 Cedar Ln",
                        "city": "Dayton",
                        "state_province": "OH",
                        "postal_code": "45402",
                        "country": "US",
                        "address_type": "physical",
                    }
                ],
                "phones": [phone],
                "schedules": [
                    {
                        "freq": "WEEKLY",
                        "byday": "MO,TU,WE,TH,FR,SA",
                        "opens_at": "08:00",
                        "closes_at": "16:00",
                        "description": "Mon-Sat 8am-4pm",
                    }
                ],
            }
        ],
    }


NESTED = {
    "title": "St. Anne's Mobile Pantry",
    "address": {"line1": "8973 Liberty Rd", "city": "Tucson", "region": "AZ", "postcode": "85701"},
    "geo": {"lat": 32.19704, "lng": -110.92813},
    "contact": {"tel": "(516) 423-6842", "mail": "info7@stannesmobilepantry.org"},
    "schedule": "Sat 9am-12pm",
    "notes": "Offers fresh produce, SNAP application help, emergency groceries. Seniors 60+.",
}


def test_nested_record_reads_address_geo_contact_and_notes() -> None:
    document = align_record(_canonical(NESTED))
    (location,) = document["locations"]

    assert document["organization"]["name"] == "St. Anne's Mobile Pantry"
    assert document["organization"]["email"] == "info7@stannesmobilepantry.org"
    assert location["addresses"] == [
        {
            "address_1": "8973 Liberty Rd",
            "city": "Tucson",
            "state_province": "AZ",
            "postal_code": "85701",
            "country": "US",
            "address_type": "physical",
        }
    ]
    assert (location["latitude"], location["longitude"]) == (32.19704, -110.92813)
    assert location["phones"] == [{"number": "(516) 423-6842", "type": "voice"}]
    assert location["schedules"] == [
        {
            "freq": "WEEKLY",
            "byday": "SA",
            "opens_at": "09:00",
            "closes_at": "12:00",
            "description": "Sat 9am-12pm",
        }
    ]
    assert [service["name"] for service in document["services"]] == [
        "Fresh produce",
        "SNAP application help",
        "Emergency groceries",
    ]
    assert {service["eligibility_description"] for service in document["services"]} == {"Seniors 60+"}


FREE_TEXT = {
    "raw_text": "Harvest Hope Food Bank\n3120 Liberty Rd\nAlbany, NY 12207\nPhone: (229) 979-7554\n"
    "Hours: Wed-Fri 10:30am-6pm\nWe provide emergency groceries, delivery for homebound, baby formula. "
    "Eligibility: Seniors 60+."
}


def test_free_text_record_reads_each_line() -> None:
    document = align_record(_canonical(FREE_TEXT))
    (location,) = document["locations"]

    assert document["organization"]["name"] == "Harvest Hope Food Bank"
    assert document["organization"]["phones"] == [{"number": "(229) 979-7554", "type": "voice"}]
    assert "email" not in document["organization"]
    assert location["addresses"][0] == {
        "address_1": "3120 Liberty Rd",
        "city": "Albany",
        "state_province": "NY",
        "postal_code": "12207",
        "country": "US",
        "address_type": "physical",
    }
    assert "latitude" not in location
    assert location["schedules"][0] | {"description": None} == {
        "freq": "WEEKLY",
        "byday": "WE,TH,FR",
        "opens_at": "10:30",
        "closes_at": "18:00",
        "description": None,
    }
    assert [service["name"] for service in document["services"]] == [
        "Emergency groceries",
        "Delivery for homebound",
        "Baby formula",
    ]
    assert document["services"][0]["eligibility_description"] == "Seniors 60+"


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        ("Mon-Sat 8am-4pm", [("MO,TU,WE,TH,FR,SA", "08:00", "16:00")]),
        ("Sat 9am-12pm", [("SA", "09:00", "12:00")]),
        ("Tue-Wed 10:30am-4:45pm", [("TU,WE", "10:30", "16:45")]),
        ("Mon 12am-12pm", [("MO", "00:00", "12:00")]),
        ("Mon-Fri 9am-5pm; Sat 10am-2pm", [("MO,TU,WE,TH,FR", "09:00", "17:00"), ("SA", "10:00", "14:00")]),
        ("Fri-Mon 11-2pm", [("MO,FR,SA,SU", "11:00", "14:00")]),
        ("Tues and Thurs noon-3:30pm", [("TU,TH", "12:00", "15:30")]),
        ("Mon, Wed & Fri 9:00-17:00", [("MO,WE,FR", "09:00", "17:00")]),
        ("Monday to Friday 9 am to 5 pm", [("MO,TU,WE,TH,FR", "09:00", "17:00")]),
        ("Thursday 1-5pm", [("TH", "13:00", "17:00")]),
    ],
)
def test_parse_hours_reads_days_and_times(hours: str, expected: list[tuple[str, str, str]]) -> None:
    schedules = parse_hours(hours)

    assert [(s["byday"], s["opens_at"], s["closes_at"]) for s in schedules] == expected
    assert {s["freq"] for s in schedules} == {"WEEKLY"}
    assert {s["description"] for s in schedules} == {hours}


@pytest.mark.parametrize(
    "hours", ["By appointment", "9-5", "Mon 9-5", "Mon 13pm-2pm", "Sat 9am-9am", "Mon 9:75-10"]
)
def test_parse_hours_keeps_unreadable_hours_as_description_only(hours: str) -> None:
    assert parse_hours(hours) == [{"description": hours}]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json at all", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "JSON array, not an object"),
        ('"Lakeside Food Bank"', "JSON string, not an object"),
        ("null", "JSON null, not an object"),
        ("42", "JSON number, not an object"),
        ("{}", "names no organization"),
        ('{"org_name": "   ", "phone": "555"}', "names no organization"),
        ('{"org_name": 12345}', "names no organization"),
        ('{"title": ["Lakeside"]}', "names no organization"),
        ('{"raw_text": "  \\n "}', "names no organization"),
        ('{"raw_text": "12345\\nPhone: 555"}', "does not start with an organization name"),
    ],
)
def test_unalignable_records_raise_a_one_line_non_transient_error(content: str, reason: str) -> None:
    with pytest.raises(UnalignableRecordError, match=reason) as caught:
        _generate(content)

    assert isinstance(caught.value, ProviderError)
    assert not isinstance(caught.value, TransientProviderError)
    assert "\n" not in str(caught.value)


def test_a_conversation_without_a_record_is_unalignable() -> None:
    with pytest.raises(UnalignableRecordError, match="no scraped record"):
        RulesProvider().generate([Message(role="system", content=SYSTEM_PROMPT)], {}, CONFIG)


@pytest.mark.parametrize(
    ("record", "location_description"),
    [
        (
            {"org_name": "Pantry", "location": "12 Rue Verte, Lyon, XX 69001"},
            "Address as listed: 12 Rue Verte",
        ),
        ({"org_name": "Pantry", "location": "Downtown, near the church"}, "Address as listed: Downtown"),
        (
            {"title": "Pantry", "address": {"line1": "1 Main St", "city": "Dayton"}},
            "Address as listed: 1 Main St",
        ),
    ],
)
def test_incomplete_addresses_are_kept_as_text_not_completed(
    record: dict[str, Any], location_description: str
) -> None:
    document = align_record(_canonical(record))
    (location,) = document["locations"]

    assert location["addresses"] == []
    assert location["description"].startswith(location_description)
    assert validate_aligned(document) == []


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (
            {"line1": "1 Main St", "line2": "Suite 4", "city": "Boston", "state": "ma", "zip": 2134},
            {"address_2": "Suite 4", "state_province": "MA", "postal_code": "02134", "country": "US"},
        ),
        (
            {"line1": "1 Main St", "city": "Toronto", "region": "ON", "postcode": "M5V 2T6", "country": "ca"},
            {"state_province": "ON", "postal_code": "M5V 2T6", "country": "CA"},
        ),
    ],
)
def test_nested_address_variants(address: dict[str, Any], expected: dict[str, str]) -> None:
    document = align_record(_canonical({"title": "Pantry", "address": address}))

    assert document["locations"][0]["addresses"][0].items() >= expected.items()


def test_record_without_place_or_offerings_states_only_what_it_has() -> None:
    document = align_record(_canonical({"org_name": "Grace Pantry", "email": "no-at-sign"}))

    assert document == {
        "organization": {
            "name": "Grace Pantry",
            "description": "Listing for Grace Pantry; the source gives no description.",
            "phones": [],
        },
        "services": [],
        "locations": [],
    }
    assert validate_aligned(document) == []


@pytest.mark.parametrize(
    ("geo", "expected"),
    [
        ({"lat": "44.5", "lng": "-123.1"}, (44.5, -123.1)),
        ({"lat": 95.0, "lng": 10.0}, None),
        ({"lat": True, "lng": 10.0}, None),
        ({"lat": "north", "lng": 10.0}, None),
    ],
)
def test_coordinates_are_taken_only_when_they_are_coordinates(
    geo: dict[str, Any], expected: tuple[float, float] | None
) -> None:
    record = {"title": "Pantry", "geo": geo, "schedule": "Mon 9am-1pm"}
    (location,) = align_record(_canonical(record))["locations"]

    assert (location.get("latitude"), location.get("longitude")) == (expected or (None, None))


def test_generation_result_is_deterministic_and_describes_the_call() -> None:
    content = _canonical(SAMPLES[30].values[0])

    first, second = _generate(content), _generate(content)

    assert first.text == second.text
    assert first.text == json.dumps(first.parsed, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert first.model == "rules-v1"
    assert first.stop_reason == "end_turn"
    assert not first.truncated
    assert set(first.usage) == {"input_tokens", "output_tokens"}
    assert first.usage["input_tokens"] > len(content.split(",")) > 0
    assert first.usage["output_tokens"] > 0


def test_key_order_of_the_record_does_not_change_the_answer() -> None:
    reordered = json.dumps(dict(reversed(list(FLAT.items()))), ensure_ascii=False)

    assert _generate(reordered).text == _generate(_canonical(FLAT)).text


def test_retry_feedback_does_not_hide_the_record() -> None:
    content = _canonical(FLAT)

    retried = _generate(content, feedback=["organization: 'description' is a required property"])

    assert retried.text == _generate(content).text


def test_build_messages_puts_the_record_verbatim_and_feedback_after_it() -> None:
    messages = build_messages('{"a":1}', feedback=["x: bad", "y: worse"])

    assert [message.role for message in messages] == ["system", "user", "user"]
    assert messages[0].content == SYSTEM_PROMPT
    assert messages[1].content == '{"a":1}'
    assert messages[2].content == f"{FEEDBACK_HEADER}\n- x: bad\n- y: worse"
    assert scraped_content(messages) == '{"a":1}'
    assert len(build_messages("{}")) == len(build_messages("{}", feedback=[])) == 2
