"""An aligned document as the rows it asks for, with their natural keys, before any I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table

from pirate_worker.services import hsds_tables as hsds


@dataclass
class Item:
    """One row the document asks for: its stored fields, its key among its owner's rows, and the
    ``kind`` a changed child is paired by (phone type, address type; '' pairs with any)."""

    fields: dict[str, Any]
    key: str
    kind: str = ""


@dataclass
class LocationPlan:
    item: Item
    address_key: str | None
    addresses: list[Item] = field(default_factory=list)
    phones: list[Item] = field(default_factory=list)
    schedules: list[Item] = field(default_factory=list)

    @property
    def has_coordinates(self) -> bool:
        return self.item.fields.get("latitude") is not None and self.item.fields.get("longitude") is not None


@dataclass
class ServicePlan:
    item: Item
    phones: list[Item] = field(default_factory=list)
    schedules: list[Item] = field(default_factory=list)


@dataclass
class DocumentPlan:
    organization: Item
    domain: str
    phones: list[Item] = field(default_factory=list)
    services: list[ServicePlan] = field(default_factory=list)
    locations: list[LocationPlan] = field(default_factory=list)


def _fields(table: Table, source: Mapping[str, Any]) -> dict[str, Any]:
    return {column.name: source.get(column.name) for column in hsds.stored_fields(table)}


def _unique(items: list[Item]) -> list[Item]:
    """A key repeated within one owner is one row (the first wins)."""
    seen: dict[str, Item] = {}
    for item in items:
        seen.setdefault(item.key, item)
    return list(seen.values())


def _phones(owner: Mapping[str, Any]) -> list[Item]:
    return _unique(
        [
            Item(_fields(hsds.phone, p), hsds.phone_digits(p["number"]), hsds.normalize_text(p.get("type")))
            for p in owner.get("phones") or []
        ]
    )


def _schedules(owner: Mapping[str, Any]) -> list[Item]:
    return _unique(
        [Item(_fields(hsds.schedule, s), hsds.schedule_key(s)) for s in owner.get("schedules") or []]
    )


def plan_document(document: Mapping[str, Any]) -> DocumentPlan:
    """The plan of a valid aligned document (see :func:`services.hsds_validation.find_violations`)."""
    organization = document["organization"]
    plan = DocumentPlan(
        organization=Item(
            _fields(hsds.organization, organization), hsds.normalize_text(organization["name"])
        ),
        domain=hsds.domain_key(organization),
        phones=_phones(organization),
    )
    services: dict[str, ServicePlan] = {}
    for service in document.get("services") or []:
        item = Item(_fields(hsds.service, service), hsds.normalize_text(service["name"]))
        services.setdefault(item.key, ServicePlan(item, _phones(service), _schedules(service)))
    plan.services = list(services.values())
    for location in document.get("locations") or []:
        addresses = location.get("addresses") or []
        address_key, match_key = hsds.location_keys(location, addresses)
        plan.locations.append(
            LocationPlan(
                item=Item(_fields(hsds.location, location), match_key),
                address_key=address_key,
                addresses=_unique(
                    [
                        Item(
                            _fields(hsds.address, a),
                            hsds.address_key(a),
                            hsds.normalize_text(a.get("address_type")),
                        )
                        for a in addresses
                    ]
                ),
                phones=_phones(location),
                schedules=_schedules(location),
            )
        )
    return plan


def plan_rows(document: Mapping[str, Any]) -> dict[str, set[str]]:
    """The natural keys a valid document maps to per table, each qualified by its owner's key."""
    plan = plan_document(document)
    org = f"{plan.organization.key}@{plan.domain}"
    rows: dict[str, set[str]] = {table.name: set() for table in hsds.HSDS_TABLES}
    rows["organization"].add(org)

    def children(owner: str, phones: list[Item], schedules: list[Item]) -> None:
        rows["phone"].update(f"{owner}/{p.key}" for p in phones)
        rows["schedule"].update(f"{owner}/{s.key}" for s in schedules)

    children(org, plan.phones, [])
    locations = []
    for location in plan.locations:
        loc = f"{org}/{location.item.key}"
        locations.append(loc)
        rows["location"].add(loc)
        rows["address"].update(f"{loc}/{a.key}" for a in location.addresses)
        children(loc, location.phones, location.schedules)
    for service in plan.services:
        svc = f"{org}/{service.item.key}"
        rows["service"].add(svc)
        children(svc, service.phones, service.schedules)
        rows["service_at_location"].update(f"{svc}@{loc}" for loc in locations)
    return rows
