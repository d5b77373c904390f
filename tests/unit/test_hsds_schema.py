"""The HSDS aligned document schema: generated selection, strict variant, readable validation."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pirate_worker.hsds.schema import aligned_document_schema, load_table, strict_variant, validate_aligned

PHONE = {"number", "extension", "type", "description"}
SCHEDULE = {
    "valid_from",
    "valid_to",
    "dtstart",
    "freq",
    "interval",
    "byday",
    "bymonthday",
    "description",
    "opens_at",
    "closes_at",
    "notes",
}


def _node(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """Follow property names (array items are stepped through) to an object schema."""
    node = schema
    for name in path:
        node = node["properties"][name]
        if node["type"] == "array":
            node = node["items"]
    return node


def _objects(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if "properties" in node:
        yield path, node
        for name, sub in node["properties"].items():
            yield from _objects(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _objects(node["items"], f"{path}[]")


@pytest.mark.parametrize(
    ("path", "properties", "required"),
    [
        (
            ("organization",),
            {"name", "alternate_name", "description", "email", "website", "phones"},
            ["name", "description"],
        ),
        (("organization", "phones"), PHONE, ["number"]),
        (
            ("services",),
            {
                "name",
                "alternate_name",
                "description",
                "url",
                "email",
                "status",
                "interpretation_services",
                "application_process",
                "fees_description",
                "eligibility_description",
                "minimum_age",
                "maximum_age",
                "phones",
                "schedules",
            },
            ["name", "status"],
        ),
        (("services", "phones"), PHONE, ["number"]),
        (("services", "schedules"), SCHEDULE, []),
        (
            ("locations",),
            {
                "location_type",
                "url",
                "name",
                "alternate_name",
                "description",
                "transportation",
                "latitude",
                "longitude",
                "addresses",
                "phones",
                "schedules",
            },
            ["location_type"],
        ),
        (
            ("locations", "addresses"),
            {
                "attention",
                "address_1",
                "address_2",
                "city",
                "region",
                "state_province",
                "postal_code",
                "country",
                "address_type",
            },
            ["address_1", "city", "state_province", "postal_code", "country", "address_type"],
        ),
        (("locations", "phones"), PHONE, ["number"]),
        (("locations", "schedules"), SCHEDULE, []),
    ],
)
def test_selects_core_and_allow_listed_fields_with_hsds_required(
    path: tuple[str, ...], properties: set[str], required: list[str]
) -> None:
    node = _node(aligned_document_schema(), path)

    assert set(node["properties"]) == properties
    assert node["required"] == required


def test_top_level_holds_exactly_the_three_parts() -> None:
    schema = aligned_document_schema()

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["organization", "services", "locations"]
    assert schema["properties"]["services"]["type"] == "array"
    assert schema["properties"]["locations"]["type"] == "array"
    Draft202012Validator.check_schema(schema)


def test_no_identifiers_metadata_or_open_objects_anywhere() -> None:
    for path, node in _objects(aligned_document_schema()):
        names = set(node["properties"])
        assert not {name for name in names if name == "id" or name.endswith("_id")}, path
        assert not names & {"metadata", "attributes"}, path
        assert node["additionalProperties"] is False, path


@pytest.mark.parametrize(
    ("path", "table", "field"),
    [
        (("organization",), "organization", "email"),
        (("services",), "service", "status"),
        (("locations",), "location", "latitude"),
        (("locations", "addresses"), "address", "country"),
        (("services", "schedules"), "schedule", "freq"),
        (("locations", "phones"), "phone", "type"),
    ],
)
def test_properties_keep_their_hsds_description_format_and_enum(
    path: tuple[str, ...], table: str, field: str
) -> None:
    hsds = load_table(table)["properties"][field]
    generated = _node(aligned_document_schema(), path)["properties"][field]

    assert generated["description"] == hsds["description"]
    assert generated.get("format") == hsds.get("format")
    if "enum" in hsds:
        assert [value for value in generated["enum"] if value is not None] == hsds["enum"]


@pytest.mark.parametrize(
    ("path", "field", "expected_type"),
    [
        (("organization",), "name", "string"),
        (("organization",), "email", ["string", "null"]),
        (("services",), "status", "string"),
        (("services",), "minimum_age", ["number", "null"]),
        (("locations",), "latitude", ["number", "null"]),
        (("locations", "addresses"), "postal_code", "string"),
        (("locations", "addresses"), "region", ["string", "null"]),
    ],
)
def test_required_scalars_are_not_nullable_and_optional_ones_are(
    path: tuple[str, ...], field: str, expected_type: str | list[str]
) -> None:
    assert _node(aligned_document_schema(), path)["properties"][field]["type"] == expected_type


def test_optional_enum_accepts_null_so_unknown_is_expressible() -> None:
    freq = _node(aligned_document_schema(), ("locations", "schedules"))["properties"]["freq"]

    assert freq["enum"] == ["WEEKLY", "MONTHLY", None]


def test_schema_and_tables_are_fresh_copies() -> None:
    aligned_document_schema()["properties"].clear()
    load_table("phone")["properties"].clear()

    assert "organization" in aligned_document_schema()["properties"]
    assert "number" in load_table("phone")["properties"]


@pytest.mark.parametrize("name", ["nope", "../organization", "Organization", ""])
def test_load_table_rejects_unknown_names(name: str) -> None:
    with pytest.raises(ValueError, match="HSDS table"):
        load_table(name)


def test_vendored_license_notice_ships_with_the_tables() -> None:
    from importlib import resources

    readme = resources.files("pirate_worker.hsds").joinpath("schema", "README.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in readme


# -- strict variant ----------------------------------------------------------------------------

SMALL = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "email": {"type": "string", "format": "email"},
        "opens_at": {"type": ["string", "null"], "pattern": "^\\d\\d:\\d\\d$"},
        "freq": {"type": "string", "enum": ["WEEKLY", "MONTHLY"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "place": {"type": "object", "properties": {"city": {"type": "string"}}, "required": []},
    },
    "required": ["name"],
}


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("name", {"type": "string"}),
        ("email", {"type": ["string", "null"]}),
        ("opens_at", {"type": ["string", "null"]}),
        ("freq", {"type": ["string", "null"], "enum": ["WEEKLY", "MONTHLY", None]}),
        ("tags", {"type": "array", "items": {"type": "string"}}),
        (
            "place",
            {
                "type": ["object", "null"],
                "properties": {"city": {"type": ["string", "null"]}},
                "required": ["city"],
                "additionalProperties": False,
            },
        ),
    ],
)
def test_strict_variant_converts_each_kind_of_property(field: str, expected: dict[str, Any]) -> None:
    assert strict_variant(SMALL)["properties"][field] == expected


def test_strict_variant_requires_everything_and_leaves_its_input_alone() -> None:
    before = copy.deepcopy(SMALL)

    strict = strict_variant(SMALL)

    assert strict["required"] == list(SMALL["properties"])
    assert strict["additionalProperties"] is False
    assert "$schema" not in strict
    assert before == SMALL


UNSUPPORTED = {"format", "pattern", "minLength", "maxLength", "minItems", "maxItems", "$schema"}


def _keywords(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key != "properties":
                yield key
            yield from _keywords(value if key != "properties" else list(value.values()))
    elif isinstance(node, list):
        for item in node:
            yield from _keywords(item)


def test_strict_variant_of_the_aligned_schema_is_strict_everywhere() -> None:
    strict = strict_variant(aligned_document_schema())

    for path, node in _objects(strict):
        assert node["required"] == list(node["properties"]), path
        assert node["additionalProperties"] is False, path
    assert not set(_keywords(strict)) & UNSUPPORTED
    Draft202012Validator.check_schema(strict)


# -- validation --------------------------------------------------------------------------------


def _valid() -> dict[str, Any]:
    return {
        "organization": {"name": "Lakeside Food Bank", "description": "Offers hot meals.", "phones": []},
        "services": [{"name": "Hot meals", "status": "active"}],
        "locations": [
            {
                "location_type": "physical",
                "addresses": [
                    {
                        "address_1": "1 Main St",
                        "city": "Albany",
                        "state_province": "NY",
                        "postal_code": "12207",
                        "country": "US",
                        "address_type": "physical",
                    }
                ],
                "schedules": [{"freq": "WEEKLY", "byday": "MO", "opens_at": "08:00", "closes_at": "16:30"}],
            }
        ],
    }


def _set(path: tuple[str | int, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        target: Any = document
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


def _delete(path: tuple[str | int, ...]) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        target: Any = document
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return change


def test_a_valid_document_has_no_errors() -> None:
    assert validate_aligned(_valid()) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            _set(("locations", 0, "addresses", 0, "postal_code"), 12207),
            "locations[0].addresses[0].postal_code: 12207 is not of type 'string'",
        ),
        (_delete(("organization", "description")), "organization: 'description' is a required property"),
        (_set(("organization", "name"), None), "organization.name: None is not of type 'string'"),
        (
            _set(("services", 0, "id"), "abc"),
            "services[0]: Additional properties are not allowed ('id' was unexpected)",
        ),
        (
            _set(("services", 0, "status"), "open"),
            "services[0].status: 'open' is not one of ['active', 'inactive', 'defunct', 'temporarily closed']",  # noqa: E501
        ),
        (
            _set(("organization", "email"), "not-an-address"),
            "organization.email: 'not-an-address' is not a 'email'",
        ),
        (
            _set(("locations", 0, "schedules", 0, "opens_at"), "8am"),
            "locations[0].schedules[0].opens_at: '8am' does not match",
        ),
        (_delete(("locations",)), "(document): 'locations' is a required property"),
        (
            _set(("locations", 0, "latitude"), "44.05"),
            "locations[0].latitude: '44.05' is not of type 'number', 'null'",
        ),
    ],
)
def test_validation_names_the_path_and_the_problem(
    change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    document = _valid()
    change(document)

    errors = validate_aligned(document)

    assert len(errors) == 1
    assert errors[0].startswith(expected)


@pytest.mark.parametrize(
    ("field", "value"),
    [("email", None), ("website", None), ("alternate_name", None), ("email", "info@example.org")],
)
def test_optional_fields_may_be_null_or_present(field: str, value: object) -> None:
    document = _valid()
    document["organization"][field] = value

    assert validate_aligned(document) == []


def test_a_non_object_is_reported_at_the_document() -> None:
    assert validate_aligned([]) == ["(document): [] is not of type 'object'"]


def test_errors_are_ordered_by_path_with_numeric_indexes() -> None:
    document = _valid()
    document["services"] = [{"name": "ok", "status": "active"} for _ in range(11)]
    document["services"][10]["status"] = "bad"
    document["services"][2]["status"] = "bad"

    errors = validate_aligned(document)

    assert [error.split(":")[0] for error in errors] == ["services[2].status", "services[10].status"]


def test_long_messages_are_shortened() -> None:
    document = _valid()
    document["services"] = "x" * 1000

    (error,) = validate_aligned(document)

    assert error.startswith("services: 'xxx")
    assert error.endswith("...")
    assert len(error) < 300
