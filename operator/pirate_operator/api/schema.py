"""Pydantic JSON schema → Kubernetes *structural* OpenAPI v3 schema.

apiextensions.k8s.io/v1 accepts only structural schemas: every node has a ``type`` (or
``x-kubernetes-preserve-unknown-fields``), no ``$ref``, no type-carrying ``anyOf``, no
``additionalProperties`` next to ``properties``. Pydantic emits JSON Schema 2020-12 with ``$defs``
and ``anyOf [X, null]`` for optional fields, so this module inlines references, turns optional
into ``nullable: true``, drops ``title`` and null or empty-string defaults, and marks free-form objects
(``dict[str, Any]``) with ``x-kubernetes-preserve-unknown-fields``. Anything it does not know is
an error, so a model change that would yield an invalid CRD fails at generation time.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

PRESERVE = "x-kubernetes-preserve-unknown-fields"

#: Keywords copied as they are (after conversion of their values where they hold schemas).
_PASSTHROUGH = frozenset(
    {
        "type",
        "description",
        "enum",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "pattern",
        "format",
        "nullable",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        PRESERVE,
    }
)
_DROPPED = frozenset({"title", "$schema"})
_HANDLED = frozenset(
    {"$ref", "anyOf", "allOf", "const", "properties", "required", "items", "additionalProperties", "default"}
)


class SchemaError(ValueError):
    """The model's JSON schema cannot be expressed as a structural schema."""


class _CrdJsonSchema(GenerateJsonSchema):
    """Encodes model defaults minimally (only what differs from the nested defaults).

    The apiserver applies defaults top-down and then descends into the defaulted value, so
    ``behavior: {}`` plus the nested defaults yields the full behaviour; the CRD stays readable.
    """

    def encode_default(self, dft: Any) -> Any:
        return _minimal_default(dft)


def _minimal_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude_none=True)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): _minimal_default(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_minimal_default(item) for item in value]
    return value


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model`` (validation mode, camelCase names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_CrdJsonSchema)
    definitions = raw.pop("$defs", {})
    return _convert(raw, definitions)


def _resolve(node: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a ``$ref``/single ``allOf`` target with the node's sibling keywords (siblings win)."""
    if "$ref" in node:
        target = definitions[str(node["$ref"]).rsplit("/", 1)[-1]]
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        return {**_resolve(target, definitions), **siblings}
    if "allOf" in node:
        parts = node["allOf"]
        if len(parts) != 1:
            raise SchemaError(f"allOf with {len(parts)} parts has no structural form")
        siblings = {key: value for key, value in node.items() if key != "allOf"}
        return {**_resolve(parts[0], definitions), **siblings}
    if "anyOf" in node:
        variants = [variant for variant in node["anyOf"] if variant.get("type") != "null"]
        if len(variants) != 1 or len(variants) == len(node["anyOf"]):
            raise SchemaError(f"anyOf other than 'X or null' has no structural form: {node['anyOf']}")
        siblings = {key: value for key, value in node.items() if key != "anyOf"}
        return {**_resolve(variants[0], definitions), **siblings, "nullable": True}
    return dict(node)


def _convert(node: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    resolved = _resolve(node, definitions)
    unknown = set(resolved) - _PASSTHROUGH - _DROPPED - _HANDLED
    if unknown:
        raise SchemaError(f"keywords without a structural translation: {sorted(unknown)}")
    out: dict[str, Any] = {key: value for key, value in resolved.items() if key in _PASSTHROUGH}
    if resolved.get("default") not in (None, ""):
        # Kubernetes 1.20 reads an empty-string default as null and refuses the CRD; the models
        # still default to "" when they read an object without the field.
        out["default"] = resolved["default"]
    if "const" in resolved:
        out["enum"] = [resolved["const"]]
    kind = out.get("type")
    if kind == "object":
        _convert_object(resolved, out, definitions)
    elif kind == "array":
        out["items"] = _convert(resolved.get("items", {}), definitions)
        if not out["items"]:
            raise SchemaError("arrays need a typed items schema")
    elif kind is None and not out.get(PRESERVE):
        raise SchemaError(f"schema node without a type: {dict(node)}")
    return out


def _convert_object(resolved: Mapping[str, Any], out: dict[str, Any], definitions: Mapping[str, Any]) -> None:
    properties = resolved.get("properties")
    extra = resolved.get("additionalProperties")
    if properties:
        out["properties"] = {name: _convert(schema, definitions) for name, schema in properties.items()}
        required = resolved.get("required")
        if required:
            out["required"] = sorted(required)
    elif isinstance(extra, Mapping) and extra:
        out["additionalProperties"] = _convert(extra, definitions)
    else:
        # dict[str, Any] or an object without declared fields: free-form by intent.
        out[PRESERVE] = True
