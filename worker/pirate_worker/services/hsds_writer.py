"""Match a planned document against the stored rows and write the difference, in one transaction.

Matching (the README's "HSDS database" section says the same for users):

* organization — same normalized name, and the same web/e-mail domain when both sides have one
  (a record without a domain joins the oldest same-named organization; one with a domain fills
  it in on a same-named organization that had none);
* location (within its organization) — same street address; else, unless both have different
  street addresses, coordinates within ``tolerance`` degrees; else the same name/type key;
* service — organization + normalized name; address, phone, schedule — their owner + key;
  a child the record no longer lists is *paired* with a new one of the same kind (phone type,
  address type; any schedule), which is an update of that row (the phone's new number), not a
  second row.

A matched row is updated only where the record brings a non-null value that differs (nulls never
erase what another source said); each update bumps the row's ``version``/``updated_at`` and
writes one ``record_version`` row naming the source. An unchanged record writes nothing but its
provenance (``source_record.last_seen``).

Concurrency: on PostgreSQL every writer of one organization first takes a transaction-scoped
advisory lock on its normalized name, so matching that no unique constraint can express
(coordinate tolerance, domain rules) never races; unique constraints back the rest. SQLite's
``BEGIN IMMEDIATE`` already makes each transaction the only writer.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, case, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from pirate_worker.services import hsds_tables as hsds
from pirate_worker.services.hsds_plan import DocumentPlan, Item, LocationPlan


@dataclass
class WriteContext:
    """What every write of one document shares, and what it counts."""

    connection: Connection
    source_id: str
    job_id: str
    now: datetime
    tolerance: float
    ids: dict[str, list[str]] = field(default_factory=lambda: {t.name: [] for t in hsds.HSDS_TABLES})
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    versions: int = 0

    def keep(self, table: Table, row_id: str) -> str:
        if row_id not in self.ids[table.name]:
            self.ids[table.name].append(row_id)
        return row_id


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def lock_organization(ctx: WriteContext, plan: DocumentPlan) -> None:
    """Take the organization's advisory lock (PostgreSQL), the transaction's first statement so
    that nothing it writes is held while waiting. Released at commit or rollback."""
    if ctx.connection.dialect.name == "postgresql":
        key = lock_key(f"organization|{plan.organization.key}")
        ctx.connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def write_document(ctx: WriteContext, plan: DocumentPlan) -> str:
    """Write ``plan`` (after :func:`lock_organization`); returns the organization id.

    Owners first (organization, locations, services, links), then each child table in one query
    for all its owners: about a dozen statements for a record that changes nothing.
    """
    org_id = _organization(ctx, plan)
    stored_locations = list(_select(ctx, hsds.location, hsds.location.c.organization_id == org_id))
    location_ids = [_location(ctx, org_id, location, stored_locations) for location in plan.locations]
    stored_services = {
        row.name_key: row for row in _select(ctx, hsds.service, hsds.service.c.organization_id == org_id)
    }
    service_ids = []
    for service in plan.services:
        extra = {"organization_id": org_id, "name_key": service.item.key}
        stored = stored_services.get(service.item.key)
        service_ids.append(_upsert(ctx, hsds.service, stored, service.item.fields, extra))
    # Aligned documents don't say which service runs where, so each runs at every location.
    _links(ctx, [(service_id, location_id) for service_id in service_ids for location_id in location_ids])
    locations = list(zip(location_ids, plan.locations, strict=True))
    services = list(zip(service_ids, plan.services, strict=True))
    _children(
        ctx,
        hsds.phone,
        [
            ("organization_id", org_id, plan.phones),
            *(("location_id", owner, location.phones) for owner, location in locations),
            *(("service_id", owner, service.phones) for owner, service in services),
        ],
    )
    _children(
        ctx, hsds.address, [("location_id", owner, location.addresses) for owner, location in locations]
    )
    _children(
        ctx,
        hsds.schedule,
        [
            *(("location_id", owner, location.schedules) for owner, location in locations),
            *(("service_id", owner, service.schedules) for owner, service in services),
        ],
    )
    return org_id


def _organization(ctx: WriteContext, plan: DocumentPlan) -> str:
    table = hsds.organization
    candidates = _select(ctx, table, table.c.name_key == plan.organization.key)
    chosen = _choose_organization(candidates, plan.domain)
    extra: dict[str, Any] = {"name_key": plan.organization.key}
    if chosen is None or not chosen.domain_key:
        extra["domain_key"] = plan.domain
    return _upsert(ctx, table, chosen, plan.organization.fields, extra)


def _choose_organization(candidates: Sequence[Row[Any]], domain: str) -> Row[Any] | None:
    ordered = sorted(candidates, key=lambda row: (row.created_at, row.id))
    if not domain:
        return ordered[0] if ordered else None
    same = [row for row in ordered if row.domain_key == domain]
    if same:
        return same[0]
    return next((row for row in ordered if not row.domain_key), None)


def _location(ctx: WriteContext, org_id: str, plan: LocationPlan, stored: list[Row[Any]]) -> str:
    table = hsds.location
    chosen = next((row for row in stored if _same_location(row, plan, ctx.tolerance)), None)
    extra = {"organization_id": org_id, "match_key": plan.item.key, "address_key": plan.address_key}
    if chosen is not None:
        # Keep the key it was found by; fill the street in if it only had coordinates.
        extra = {} if chosen.address_key or plan.address_key is None else {"address_key": plan.address_key}
    location_id = _upsert(ctx, table, chosen, plan.item.fields, extra)
    if chosen is None:
        stored.extend(_select(ctx, table, table.c.id == location_id))
    return location_id


def _same_location(row: Row[Any], plan: LocationPlan, tolerance: float) -> bool:
    if plan.address_key is not None and row.address_key is not None:
        return bool(row.address_key == plan.address_key)
    fields = plan.item.fields
    if plan.has_coordinates and row.latitude is not None and row.longitude is not None:
        return bool(
            abs(row.latitude - fields["latitude"]) <= tolerance
            and abs(row.longitude - fields["longitude"]) <= tolerance
        )
    return bool(row.match_key == plan.item.key)


def _children(ctx: WriteContext, table: Table, owners: list[tuple[str, str, list[Item]]]) -> None:
    """Match each owner's listed children by key; pair unmatched ones with unlisted stored ones.

    ``owners`` holds (owner column, owner id, items); one query reads the stored rows of all.
    """
    wanted: dict[str, tuple[str, list[Item]]] = {}
    for column, owner_id, items in owners:
        # Two locations of a record that matched one row: their children are that row's.
        merged = wanted.setdefault(owner_id, (column, []))[1]
        merged.extend(item for item in items if item.key not in {m.key for m in merged})
    if not any(items for _, items in wanted.values()):
        return
    owner = table.c.owner_id if "owner_id" in table.c else table.c.location_id
    stored: dict[str, dict[str, Row[Any]]] = {}
    for row in _select(ctx, table, owner.in_(list(wanted))):
        stored.setdefault(getattr(row, owner.name), {})[row.match_key] = row
    for owner_id, (column, items) in wanted.items():
        _owner_children(ctx, table, column, owner_id, items, stored.get(owner_id, {}))


def _owner_children(
    ctx: WriteContext,
    table: Table,
    column: str,
    owner_id: str,
    items: list[Item],
    stored: dict[str, Row[Any]],
) -> None:
    listed = {item.key for item in items}
    spare = [row for key, row in stored.items() if key not in listed]
    for item in items:
        row = stored.get(item.key)
        extra: dict[str, Any] = {}
        if row is None:
            row = next((r for r in spare if _pairs(_kind(table, r), item.kind)), None)
            if row is not None:
                spare.remove(row)
                extra = {"match_key": item.key}
            else:
                extra = {column: owner_id, "match_key": item.key}
                if "owner_id" in table.c:
                    extra["owner_id"] = owner_id
        _upsert(ctx, table, row, item.fields, extra)


def _pairs(stored: str, incoming: str) -> bool:
    return stored == incoming or not stored or not incoming


def _kind(table: Table, row: Row[Any]) -> str:
    if table is hsds.phone:
        return hsds.normalize_text(row.type)
    if table is hsds.address:
        return hsds.normalize_text(row.address_type)
    return ""


def _links(ctx: WriteContext, pairs: list[tuple[str, str]]) -> None:
    """The service-at-location rows of ``pairs``: one query for those that exist, inserts for the rest."""
    if not pairs:
        return
    table = hsds.service_at_location
    existing = {
        (row.service_id, row.location_id): row.id
        for row in _select(ctx, table, table.c.service_id.in_({service for service, _ in pairs}))
    }
    for service_id, location_id in dict.fromkeys(pairs):
        if (found := existing.get((service_id, location_id))) is not None:
            ctx.keep(table, found)
            continue
        row: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "service_id": service_id,
            "location_id": location_id,
            "created_at": ctx.now,
            "updated_at": ctx.now,
            "version": 1,
        }
        # The organization lock makes a conflict impossible on PostgreSQL; DO NOTHING keeps it harmless.
        if _insert_if_absent(ctx.connection, table, row):
            ctx.created[table.name] = ctx.created.get(table.name, 0) + 1
            ctx.keep(table, str(row["id"]))
        else:
            [winner] = _select(
                ctx, table, table.c.service_id == service_id, table.c.location_id == location_id
            )
            ctx.keep(table, winner.id)


def _insert_if_absent(connection: Connection, table: Table, row: Mapping[str, Any]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; 1 if the row was inserted.

    RETURNING tells, where rowcount would not (psycopg reports -1 for this statement).
    """
    if connection.dialect.name == "postgresql":
        statement: Any = postgresql.insert(table).values(row).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(table).values(row).on_conflict_do_nothing()
    return len(connection.execute(statement.returning(table.c.id)).all())


def _select(ctx: WriteContext, table: Table, *where: Any) -> list[Row[Any]]:
    return list(ctx.connection.execute(select(table).where(*where)))


def _upsert(
    ctx: WriteContext, table: Table, row: Row[Any] | None, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> str:
    """Insert a new row, or update ``row`` where ``fields`` differ (with a version row)."""
    if row is None:
        row_id = str(uuid.uuid4())
        values = {"id": row_id, **fields, **extra, "created_at": ctx.now, "updated_at": ctx.now, "version": 1}
        ctx.connection.execute(table.insert().values(values))
        ctx.created[table.name] = ctx.created.get(table.name, 0) + 1
        return ctx.keep(table, row_id)
    changes = {
        name: [getattr(row, name), value]
        for name, value in fields.items()
        if value is not None and not _same_value(name, getattr(row, name), value, ctx.tolerance)
    }
    keys = {name: value for name, value in extra.items() if getattr(row, name) != value}
    if not changes:
        if keys:  # bookkeeping only (a match key filled in): not a new version of the record
            ctx.connection.execute(update(table).where(table.c.id == row.id).values(**keys))
        return ctx.keep(table, row.id)
    version = row.version + 1
    values = {name: new for name, (_old, new) in changes.items()}
    ctx.connection.execute(
        update(table)
        .where(table.c.id == row.id)
        .values(**values, **keys, updated_at=ctx.now, version=version)
    )
    ctx.updated[table.name] = ctx.updated.get(table.name, 0) + 1
    ctx.connection.execute(
        hsds.record_version.insert().values(
            table_name=table.name,
            record_id=row.id,
            version=version,
            source_record_id=ctx.source_id,
            job_id=ctx.job_id,
            changed_at=ctx.now,
            changes=changes,
        )
    )
    ctx.versions += 1
    return ctx.keep(table, row.id)


def _same_value(name: str, stored: Any, incoming: Any, tolerance: float) -> bool:
    if name in ("latitude", "longitude") and stored is not None:
        # Within the matching tolerance a coordinate is the same point, not a change.
        return bool(abs(stored - incoming) <= tolerance)
    return bool(stored == incoming)


def record_source(ctx: WriteContext, scraper_id: str | None, content_hash: str | None, *, first: bool) -> int:
    """Insert (``first``: before any version row refers to it) or refresh the provenance row.

    Returns 1 if the insert created it. The refresh merges the ids this delivery produced into
    those of earlier ones, and never moves ``last_seen`` back (a late retry of an older delivery).
    """
    table = hsds.source_record
    connection = ctx.connection
    if first:
        row: dict[str, Any] = {
            "id": ctx.source_id,
            "scraper_id": scraper_id,
            "job_id": ctx.job_id,
            "content_hash": content_hash,
            "first_seen": ctx.now,
            "last_seen": ctx.now,
            "record_ids": {},
        }
        return _insert_if_absent(connection, table, row)
    query = select(table.c.record_ids, table.c.last_seen).where(table.c.id == ctx.source_id).with_for_update()
    stored_ids, last_seen = connection.execute(query).one()
    produced = {name: ids for name, ids in ctx.ids.items() if ids}
    merged = {
        name: sorted({*stored_ids.get(name, []), *produced.get(name, [])})
        for name in sorted({*stored_ids, *produced})
    }
    if merged == stored_ids and last_seen >= ctx.now:
        return 0
    connection.execute(
        update(table)
        .where(table.c.id == ctx.source_id)
        .values(
            job_id=case((table.c.last_seen <= ctx.now, ctx.job_id), else_=table.c.job_id),
            last_seen=func.max(table.c.last_seen, ctx.now)
            if connection.dialect.name == "sqlite"
            else func.greatest(table.c.last_seen, ctx.now),
            record_ids=merged,
        )
    )
    return 0
