"""Write aligned HSDS documents into the HSDS database, idempotently.

Every row id is derived from a natural key (see :mod:`.hsds_tables`) and written
insert-if-absent, all in one transaction, so reconciling a document again, or from several
processes at once, creates nothing new and returns the same ids.

Update semantics come in a later issue. Until then the first version of a row wins: a changed
description leaves the stored row as it was, and a changed natural key (a new phone number, a
renamed service, a moved address) is a new row beside the old one, which stays.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Engine, Table, case, create_engine, event, func, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from pirate_worker.contracts.payloads import JobResult
from pirate_worker.errors import InputError, PirateError, ServiceUnavailable
from pirate_worker.services import hsds_tables as hsds

logger = logging.getLogger(__name__)

# The one place the dialect is chosen. PostgreSQL's insert has the same ``on_conflict_do_nothing``;
# adding it here (and a driver dependency) is all the write path needs.
_INSERTS: Final[dict[str, Callable[[Table], sqlite.Insert]]] = {"sqlite": sqlite.insert}
_MAX_LISTED_VIOLATIONS: Final = 10
_READ_ONLY: Final = "pirate_read_only"
_WAL_RETRY_S: Final = 0.02


class ReconcilerError(PirateError):
    """Base of the reconciler's errors."""


class InvalidRecordError(ReconcilerError, InputError):
    """The aligned document can't be stored; retrying won't help. ``violations`` lists why."""

    def __init__(self, violations: list[str]) -> None:
        listed = "; ".join(violations[:_MAX_LISTED_VIOLATIONS])
        more = len(violations) - _MAX_LISTED_VIOLATIONS
        super().__init__(f"invalid aligned document: {listed}" + (f" (+{more} more)" if more > 0 else ""))
        self.violations = violations


class DatabaseUnavailableError(ReconcilerError, ServiceUnavailable):
    """The database is locked or unreachable; the caller retries the job later."""


@dataclass(frozen=True, kw_only=True)
class SourceInfo:
    """Where an aligned document came from, kept in ``source_record``."""

    job_id: str
    scraper_id: str | None = None
    content_hash: str | None = None

    @classmethod
    def from_job_result(cls, result: JobResult) -> SourceInfo:
        """The provenance of a finished LLM job."""
        return cls(
            job_id=result.job_id, scraper_id=result.job.scraper_id, content_hash=result.job.content_hash
        )


@dataclass(frozen=True)
class ReconcileResult:
    """Ids of every row the document maps to (new or not), in document order, and new-row counts."""

    organization_id: str
    source_record_id: str
    location_ids: list[str] = field(default_factory=list)
    service_ids: list[str] = field(default_factory=list)
    phone_ids: list[str] = field(default_factory=list)
    address_ids: list[str] = field(default_factory=list)
    schedule_ids: list[str] = field(default_factory=list)
    service_at_location_ids: list[str] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)


def open_database(url: str, *, busy_timeout_s: float = 30.0) -> Engine:
    """An engine on ``url`` (a SQLAlchemy URL; SQLite for now) with the HSDS tables created if missing.

    Tables are only created, never altered: schema migrations come in a later issue. On SQLite,
    a writer waits up to ``busy_timeout_s`` for another process's transaction before
    :class:`DatabaseUnavailableError`.
    """
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise ReconcilerError(f"invalid database URL {url!r}: {exc}") from exc
    if backend not in _INSERTS:
        raise ReconcilerError(f"database {backend!r} is not supported yet; use a sqlite:/// URL")
    if backend == "sqlite":
        # pysqlite's timeout is SQLite's busy timeout, set before any pragma below needs a lock.
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
        event.listen(engine, "connect", _sqlite_connection_setup(busy_timeout_s))
        event.listen(engine, "begin", _begin_immediate)
    else:
        engine = create_engine(url)
    try:
        # Inside one (immediate) transaction, so processes starting together don't race to create.
        with engine.begin() as connection:
            hsds.metadata.create_all(connection)
    except OperationalError as exc:
        raise _unavailable(exc) from exc
    return engine


def _sqlite_connection_setup(busy_timeout_s: float) -> Callable[[Any, Any], None]:
    """The ``connect`` hook of a SQLite engine."""

    def configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # pysqlite would otherwise BEGIN lazily (deferred) itself; _begin_immediate takes over.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _enable_wal(cursor, time.monotonic() + busy_timeout_s)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    return configure


def _enable_wal(cursor: sqlite3.Cursor, deadline: float) -> None:
    """Switch the file to WAL, so readers (database_stats, exports) run beside the one writer."""
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            # Switching needs an exclusive lock, and SQLite reports SQLITE_BUSY at once here rather
            # than waiting under busy_timeout: seen with processes opening a new file together.
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(_WAL_RETRY_S)


def _begin_immediate(connection: Connection) -> None:
    # A deferred transaction that reads before it writes fails at once with SQLITE_BUSY when
    # another process committed meanwhile; IMMEDIATE takes the write lock up front, and waits
    # for it under busy_timeout instead. Read-only work needs no write lock.
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def reconcile(
    engine: Engine, document: Mapping[str, Any], source: SourceInfo, *, now: datetime | None = None
) -> ReconcileResult:
    """Store an aligned document; return the ids it maps to and how many rows were new per table.

    Raises :class:`InvalidRecordError` before writing anything if the document's structure is
    unusable, :class:`DatabaseUnavailableError` if the database is locked or unreachable (the
    transaction is rolled back, so a retry is safe). ``now`` (UTC) stamps ``source_record``.
    """
    violations = find_violations(document)
    if violations:
        raise InvalidRecordError(violations)
    rows = plan_rows(document)
    seen_at = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    record_ids = {table: list(table_rows) for table, table_rows in rows.items() if table_rows}
    source_id = hsds.source_record_id(source.job_id, source.scraper_id, source.content_hash)
    created = dict.fromkeys(hsds.metadata.tables, 0)
    try:
        with engine.begin() as connection:
            for table in hsds.metadata.sorted_tables:
                for row in rows.get(table.name, {}).values():
                    created[table.name] += _insert_if_absent(connection, table, row)
            created["source_record"] = _record_source(connection, source_id, source, record_ids, seen_at)
    except OperationalError as exc:
        raise _unavailable(exc) from exc
    new_rows = {table: count for table, count in created.items() if count}
    if new_rows:
        logger.info("reconciled job %s: new rows %s", source.job_id, new_rows)

    def ids(table: Table) -> list[str]:
        return list(rows.get(table.name, {}))

    return ReconcileResult(
        organization_id=ids(hsds.organization)[0],
        source_record_id=source_id,
        location_ids=ids(hsds.location),
        service_ids=ids(hsds.service),
        phone_ids=ids(hsds.phone),
        address_ids=ids(hsds.address),
        schedule_ids=ids(hsds.schedule),
        service_at_location_ids=ids(hsds.service_at_location),
        created=created,
    )


def database_stats(engine: Engine) -> dict[str, int]:
    """Rows per table."""
    try:
        with engine.connect().execution_options(**{_READ_ONLY: True}) as connection:
            return {
                table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
                for table in hsds.metadata.tables.values()
            }
    except OperationalError as exc:
        raise _unavailable(exc) from exc


def _insert_if_absent(connection: Connection, table: Table, row: Mapping[str, Any]) -> int:
    """Insert ``row`` unless its id exists; 1 if it was inserted, else 0."""
    statement = _INSERTS[connection.dialect.name](table).values(row).on_conflict_do_nothing()
    return int(connection.execute(statement).rowcount)


def _record_source(
    connection: Connection,
    source_id: str,
    source: SourceInfo,
    record_ids: dict[str, list[str]],
    seen_at: datetime,
) -> int:
    """Insert or refresh the provenance row; 1 if it is new. Ids accumulate across deliveries."""
    row = {
        "id": source_id,
        "scraper_id": source.scraper_id,
        "job_id": source.job_id,
        "content_hash": source.content_hash,
        "first_seen": seen_at,
        "last_seen": seen_at,
        "record_ids": {table: sorted(ids) for table, ids in record_ids.items()},
    }
    if _insert_if_absent(connection, hsds.source_record, row):
        return 1
    table = hsds.source_record
    # FOR UPDATE is a no-op on SQLite (the immediate transaction already serializes writers).
    query = select(table.c.record_ids).where(table.c.id == source_id).with_for_update()
    stored: dict[str, list[str]] = connection.execute(query).scalar_one()
    merged = {
        name: sorted({*stored.get(name, []), *record_ids.get(name, [])})
        for name in sorted({*stored, *record_ids})
    }
    connection.execute(
        update(table)
        .where(table.c.id == source_id)
        .values(
            job_id=source.job_id,
            # A late retry of an older delivery must not move last_seen back.
            last_seen=case((table.c.last_seen < seen_at, seen_at), else_=table.c.last_seen),
            record_ids=merged,
        )
    )
    return 0


def _unavailable(exc: OperationalError) -> DatabaseUnavailableError:
    # The driver's own message ("database is locked") without the SQL and parameters.
    return DatabaseUnavailableError(f"database unavailable: {exc.orig}")


# Planning: the document as rows, before any I/O ---------------------------------------------------

Rows = dict[str, dict[str, dict[str, Any]]]
"""Rows to write per table name, keyed by id; a repeated natural key in one document is one row."""


def plan_rows(document: Mapping[str, Any]) -> Rows:
    """The rows a (valid) aligned document maps to, with their deterministic ids."""
    rows: Rows = {table: {} for table in hsds.metadata.tables if table != "source_record"}

    def add(table: Table, row_id: str, source: Mapping[str, Any], **keys: str) -> str:
        fields = {column.name: source.get(column.name) for column in hsds.stored_fields(table)}
        rows[table.name].setdefault(row_id, {"id": row_id, **keys, **fields})
        return row_id

    def add_children(owner_key: str, owner_id: str, source: Mapping[str, Any]) -> None:
        for phone in source.get("phones") or []:
            add(hsds.phone, hsds.phone_id(owner_id, phone["number"]), phone, **{owner_key: owner_id})
        for schedule in source.get("schedules") or []:
            add(hsds.schedule, hsds.schedule_id(owner_id, schedule), schedule, **{owner_key: owner_id})

    organization = document["organization"]
    org_id = add(hsds.organization, hsds.organization_id(organization["name"]), organization)
    add_children("organization_id", org_id, organization)
    location_ids = []
    for location in document.get("locations") or []:
        addresses = location.get("addresses") or []
        loc_id = hsds.location_id(org_id, location, addresses)
        location_ids.append(add(hsds.location, loc_id, location, organization_id=org_id))
        for address in addresses:
            add(hsds.address, hsds.address_id(loc_id, address), address, location_id=loc_id)
        add_children("location_id", loc_id, location)
    for service in document.get("services") or []:
        svc_id = add(hsds.service, hsds.service_id(org_id, service["name"]), service, organization_id=org_id)
        add_children("service_id", svc_id, service)
        # Aligned documents don't say which service runs where, so each runs at every location.
        for loc_id in location_ids:
            link_id = hsds.service_at_location_id(svc_id, loc_id)
            add(hsds.service_at_location, link_id, {}, service_id=svc_id, location_id=loc_id)
    return rows


# Validation: only what the write path relies on; the caller validates against the full schema ---


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
