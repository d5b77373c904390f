"""Validation of an aligned document: only what the write path relies on (the job validates it
against the full HSDS schema first). Every violation is one ``path: problem`` string."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import Table

from pirate_worker.services import hsds_tables as hsds


def find_violations(document: object) -> list[str]:
    """Why ``document`` can't be stored, one ``path: problem`` entry each; empty if it can."""
    if not isinstance(document, Mapping):
        return [f"document: expected an object, got {_kind(document)}"]
    violations: list[str] = []
    organization = document.get("organization")
    if isinstance(organization, Mapping):
        violations += _check(hsds.organization, organization, "organization")
    else:
        violations.append(f"organization: expected an object, got {_kind(organization)}")
    for name, table in (("services", hsds.service), ("locations", hsds.location)):
        for path, item in _items(document, name, violations):
            violations += _check(table, item, path)
    return violations


_OWNED = (("phones", hsds.phone), ("schedules", hsds.schedule))
_CHILDREN: Final[dict[str, tuple[tuple[str, Table], ...]]] = {
    "organization": _OWNED,
    "service": _OWNED,
    "location": (("addresses", hsds.address), *_OWNED),
}


def _check(table: Table, item: Mapping[str, Any], path: str) -> list[str]:
    """Type of every stored field and presence of the required ones, then the same for children."""
    found = []
    for column in hsds.stored_fields(table):
        value = item.get(column.name)
        if value is None:
            if not column.nullable:
                found.append(f"{path}.{column.name}: required")
        elif not _has_type(value, column.type.python_type):
            expected = _TYPE_NAMES[column.type.python_type]
            found.append(f"{path}.{column.name}: expected {expected}, got {_kind(value)}")
        elif not column.nullable and not hsds.normalize_text(value):
            # It would be an empty natural key, merging every such record into one row.
            found.append(f"{path}.{column.name}: has no letters or digits")
    if table is hsds.phone and isinstance(item.get("number"), str) and not hsds.phone_digits(item["number"]):
        found.append(f"{path}.number: has no digits")
    for name, child_table in _CHILDREN.get(table.name, ()):
        for child_path, child in _items(item, name, found, path):
            found += _check(child_table, child, child_path)
    return found


def _items(
    parent: Mapping[str, Any], name: str, violations: list[str], path: str = ""
) -> list[tuple[str, Mapping[str, Any]]]:
    """The objects of an optional list field with their paths; wrong shapes go to ``violations``."""
    where = f"{path}.{name}" if path else name
    value = parent.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        violations.append(f"{where}: expected a list, got {_kind(value)}")
        return []
    items = []
    for index, item in enumerate(value):
        if isinstance(item, Mapping):
            items.append((f"{where}[{index}]", item))
        else:
            violations.append(f"{where}[{index}]: expected an object, got {_kind(item)}")
    return items


_TYPE_NAMES: Final[dict[type, str]] = {str: "a string", float: "a number", int: "an integer"}


def _has_type(value: object, expected: type) -> bool:
    if isinstance(value, bool):  # JSON true/false is never a number here
        return False
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def _kind(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
