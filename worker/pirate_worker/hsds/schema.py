"""HSDS tables loaded from the vendored schema files, and the aligned document generated from them.

An *aligned document* is what a provider returns for one scraped record: one organization, its
services and its locations, nested the way a listing reads rather than flattened into tables::

    {"organization": {<organization fields>, "phones": [<phone>]},
     "services":  [{<service fields>, "phones": [<phone>], "schedules": [<schedule>]}],
     "locations": [{<location fields>, "addresses": [<address>], "phones": [<phone>],
                    "schedules": [<schedule>]}]}

The schema is generated from the HSDS table files, never written by hand, so that a new HSDS
release changes it by replacing data files only.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

# jsonschema ships no type information and the project has no stubs for it (yet).
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

#: Table properties never asked of a provider, whatever the table says: the reconciler assigns
#: identifiers, and change metadata and taxonomy attributes are not in a scraped listing.
_DROPPED_FIELDS: Final = frozenset({"id", "metadata", "attributes"})

#: Longest validation message kept; jsonschema quotes whole instances, which would flood a retry.
_MAX_MESSAGE_CHARS: Final = 240

#: HSDS marks dates and times with a Frictionless ``datapackage_type`` instead of a JSON Schema
#: format; these patterns turn that mark into something a validator checks. Times may carry the
#: UTC offset HSDS recommends, but listings rarely state one, so it stays optional.
_DATAPACKAGE_PATTERNS: Final[dict[str, str]] = {
    "date": r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$",
    "time": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?$",
}

_SCALAR_TYPES: Final = frozenset({"string", "number", "integer", "boolean"})
_TABLE_NAME: Final = re.compile(r"^[a-z_]+$")


@dataclass(frozen=True)
class _Selection:
    """Which part of one HSDS table the aligned document asks for."""

    table: str
    #: Non-core properties worth asking for because listings often state them.
    extra_fields: tuple[str, ...] = ()
    #: Nested arrays (property name, selection of the item table), in output order.
    nested: tuple[tuple[str, _Selection], ...] = ()


_PHONE: Final = _Selection("phone", extra_fields=("type", "description", "extension"))
_SCHEDULE: Final = _Selection("schedule", extra_fields=("notes",))
_ADDRESS: Final = _Selection("address", extra_fields=("address_2",))
_ORGANIZATION: Final = _Selection("organization", nested=(("phones", _PHONE),))
_SERVICE: Final = _Selection(
    "service",
    extra_fields=(
        "alternate_name",
        "application_process",
        "fees_description",
        "interpretation_services",
        "minimum_age",
        "maximum_age",
    ),
    nested=(("phones", _PHONE), ("schedules", _SCHEDULE)),
)
_LOCATION: Final = _Selection(
    "location",
    extra_fields=("alternate_name", "transportation"),
    nested=(("addresses", _ADDRESS), ("phones", _PHONE), ("schedules", _SCHEDULE)),
)


def load_table(name: str) -> dict[str, Any]:
    """Return the parsed HSDS table file ``schema/<name>.json`` (e.g. ``"organization"``).

    Files are read once; every call returns a fresh copy, so callers may change it freely.
    Raises ``ValueError`` for a name that is not a vendored table.
    """
    return copy.deepcopy(_read_table(name))


@functools.cache
def _read_table(name: str) -> dict[str, Any]:
    if not _TABLE_NAME.match(name):
        raise ValueError(f"invalid HSDS table name {name!r}")
    resource = resources.files("pirate_worker.hsds").joinpath("schema", f"{name}.json")
    if not resource.is_file():
        raise ValueError(f"unknown HSDS table {name!r}")
    table: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return table


def aligned_document_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of one aligned document, generated from HSDS.

    Field selection, per table: the properties HSDS marks ``"core": "Y"``, plus a short
    allow-list of useful non-core ones (phone type/description/extension, service
    application process, fees, interpretation services, ages and alternate name, location
    transportation and alternate name, address line 2, schedule notes), plus anything HSDS
    requires; minus ``id``, every ``*_id`` foreign key (the reconciler assigns identifiers),
    ``metadata`` and ``attributes``. Only scalar properties are taken; the nested arrays are
    exactly those shown in the module docstring.

    Each property keeps its HSDS ``type``, ``format``, ``description`` and ``enum``; HSDS dates
    and times become ``pattern`` checks. ``required`` is the table's HSDS ``required`` minus the
    dropped fields; other scalars are optional and also accept ``null``, so a provider can say
    "unknown" explicitly. Every object has ``additionalProperties: false``.

    Returns a fresh copy on each call.
    """
    return copy.deepcopy(_aligned_schema())


@functools.cache
def _aligned_schema() -> dict[str, Any]:
    service_table = _read_table("service")
    location_table = _read_table("location")
    return {
        "$schema": DIALECT,
        "title": "Aligned HSDS document",
        "description": (
            "One scraped food-pantry listing aligned to Open Referral HSDS 3: the organization, "
            "the services it offers and the locations where it operates."
        ),
        "type": "object",
        "properties": {
            "organization": _object_schema(_ORGANIZATION),
            "services": {
                "type": "array",
                "description": service_table["description"],
                "items": _object_schema(_SERVICE),
            },
            "locations": {
                "type": "array",
                "description": location_table["description"],
                "items": _object_schema(_LOCATION),
            },
        },
        "required": ["organization", "services", "locations"],
        "additionalProperties": False,
    }


def _object_schema(selection: _Selection) -> dict[str, Any]:
    table = _read_table(selection.table)
    table_properties: dict[str, dict[str, Any]] = table["properties"]
    hsds_required = set(table.get("required", ()))
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in table_properties.items():
        if not _is_selected(name, spec, selection, hsds_required):
            continue
        is_required = name in hsds_required
        properties[name] = _property_schema(spec, nullable=not is_required)
        if is_required:
            required.append(name)
    for name, item_selection in selection.nested:
        properties[name] = {
            "type": "array",
            "description": table_properties[name]["description"],
            "items": _object_schema(item_selection),
        }
    return {
        "type": "object",
        "description": table["description"],
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _is_selected(name: str, spec: Mapping[str, Any], selection: _Selection, required: set[str]) -> bool:
    if name in _DROPPED_FIELDS or name.endswith("_id"):
        return False
    if spec.get("type") not in _SCALAR_TYPES:
        return False
    return spec.get("core") == "Y" or name in selection.extra_fields or name in required


def _property_schema(spec: Mapping[str, Any], *, nullable: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": [spec["type"], "null"] if nullable else spec["type"]}
    if "format" in spec:
        out["format"] = spec["format"]
    pattern = _DATAPACKAGE_PATTERNS.get(spec.get("datapackage_type", ""))
    if pattern is not None:
        out["pattern"] = pattern
    if "enum" in spec:
        # ``enum`` is checked independently of ``type``, so "unknown" must be listed as well.
        out["enum"] = [*spec["enum"], None] if nullable else list(spec["enum"])
    if "description" in spec:
        out["description"] = spec["description"]
    return out


#: Keywords OpenAI's strict structured output rejects or ignores (its documented subset).
_STRICT_UNSUPPORTED: Final = frozenset(
    {
        "$schema",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "uniqueItems",
        "contains",
        "minContains",
        "maxContains",
        "minProperties",
        "maxProperties",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
    }
)


def strict_variant(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return the OpenAI strict-mode form of ``schema`` without changing the argument.

    Strict mode wants every property listed in ``required`` and ``additionalProperties: false``
    on every object, and rejects keywords such as ``format``, ``pattern`` and ``minLength``.
    Optional scalar or object properties become nullable, which keeps "absent" expressible.
    Optional arrays become required but stay non-null: an empty array says "none" just as well,
    and an answer in this form then still validates against the original schema.
    """
    return _strict_node(schema)


def _strict_node(node: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _STRICT_UNSUPPORTED:
            continue
        if key == "properties":
            required = set(node.get("required", ()))
            out[key] = {name: _strict_property(sub, required=name in required) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = _strict_node(value)
        elif key in ("anyOf", "allOf", "oneOf", "prefixItems"):
            out[key] = [_strict_node(sub) for sub in value]
        elif key == "$defs":
            out[key] = {name: _strict_node(sub) for name, sub in value.items()}
        else:
            out[key] = copy.deepcopy(value)
    if "properties" in out:
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


def _strict_property(sub: Mapping[str, Any], *, required: bool) -> dict[str, Any]:
    converted = _strict_node(sub)
    if required or _types_of(converted) == {"array"}:
        return converted
    return _nullable(converted)


def _types_of(node: Mapping[str, Any]) -> set[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared}
    return set(declared) if isinstance(declared, list) else set()


def _nullable(node: dict[str, Any]) -> dict[str, Any]:
    if "type" not in node:
        return {"anyOf": [node, {"type": "null"}]}
    types = _types_of(node)
    if "null" not in types:
        declared = node["type"]
        node["type"] = [*declared, "null"] if isinstance(declared, list) else [declared, "null"]
    if "enum" in node and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    return node


def validate_aligned(document: object) -> list[str]:
    """Validate an aligned document; return readable errors, sorted, or ``[]`` when valid.

    Each error reads ``<path>: <message>``, e.g.
    ``locations[0].addresses[0].postal_code: 12207 is not of type 'string'``; errors about the
    whole document use the path ``(document)``. Only ``email`` formats are checked: the other
    HSDS formats (``uri``) are too loose in practice to reject a listing over.
    """
    errors = sorted(
        _validator().iter_errors(document),
        key=lambda error: (_sort_key(error.absolute_path), error.message),
    )
    return [_describe(error.absolute_path, error.message) for error in errors]


@functools.cache
def _validator() -> Draft202012Validator:
    schema = _aligned_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker(formats=("email",)))


def _describe(path: Iterable[str | int], message: str) -> str:
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 3] + "..."
    return f"{_json_path(path)}: {message}"


def _json_path(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(document)"


def _sort_key(path: Iterable[str | int]) -> list[tuple[int, int, str]]:
    # Indexes sort numerically (locations[2] before locations[10]), names alphabetically.
    return [(0, part, "") if isinstance(part, int) else (1, 0, part) for part in path]
