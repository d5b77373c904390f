"""Write aligned HSDS documents into the HSDS database: matched, idempotent, versioned.

:func:`reconcile` validates a document, geocodes its locations that lack coordinates (outside
any transaction), then matches and writes it in one transaction (:mod:`.hsds_writer` has the
rules). Reconciling the same document again writes no HSDS row; several processes reconciling at
once create each row once. Transient database trouble rolls the whole transaction back and
raises :class:`DatabaseUnavailableError`, so the job is retried and nothing is half-written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError

from pirate_worker.contracts.payloads import JobResult
from pirate_worker.db.engine import READ_ONLY, create_database_engine, is_transient, unavailable
from pirate_worker.db.errors import DatabaseError, DatabaseUnavailableError, DatabaseURLError
from pirate_worker.db.migrate import ensure_schema
from pirate_worker.errors import InputError, PirateError
from pirate_worker.services import hsds_tables as hsds
from pirate_worker.services.geocoding import Geocoder, GeocodingError, NoGeocoder
from pirate_worker.services.hsds_plan import DocumentPlan, plan_document, plan_rows
from pirate_worker.services.hsds_validation import find_violations
from pirate_worker.services.hsds_writer import WriteContext, lock_organization, record_source, write_document

__all__ = [
    "DEFAULT_TOLERANCE",
    "DatabaseURLError",
    "DatabaseUnavailableError",
    "InvalidRecordError",
    "ReconcileResult",
    "ReconcilerError",
    "SourceInfo",
    "database_stats",
    "find_violations",
    "open_database",
    "plan_rows",
    "reconcile",
]

logger = logging.getLogger(__name__)

_MAX_LISTED_VIOLATIONS: Final = 10
#: Two locations of one organization whose coordinates differ by at most this (degrees, each
#: axis) are one location: about 11 m of latitude.
DEFAULT_TOLERANCE: Final = 0.0001


class ReconcilerError(PirateError):
    """Base of the reconciler's own errors."""


class InvalidRecordError(ReconcilerError, InputError):
    """The aligned document can't be stored; retrying won't help. ``violations`` lists why."""

    def __init__(self, violations: list[str]) -> None:
        listed = "; ".join(violations[:_MAX_LISTED_VIOLATIONS])
        more = len(violations) - _MAX_LISTED_VIOLATIONS
        super().__init__(f"invalid aligned document: {listed}" + (f" (+{more} more)" if more > 0 else ""))
        self.violations = violations


@dataclass(frozen=True, kw_only=True)
class SourceInfo:
    """Where an aligned document came from, kept in ``source_record`` and ``record_version``."""

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
    """Ids of every row the document maps to (new or not), in document order; what was written.

    ``created``/``updated`` count rows per table (``source_record`` included in ``created``);
    ``versions`` counts ``record_version`` rows written; ``geocoding`` reports per location
    that needed coordinates whether it got them (``geocoded``, ``not_found``, ``failed: reason``).
    """

    organization_id: str
    source_record_id: str
    location_ids: list[str] = field(default_factory=list)
    service_ids: list[str] = field(default_factory=list)
    phone_ids: list[str] = field(default_factory=list)
    address_ids: list[str] = field(default_factory=list)
    schedule_ids: list[str] = field(default_factory=list)
    service_at_location_ids: list[str] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    versions: int = 0
    geocoding: dict[str, str] = field(default_factory=dict)

    @property
    def wrote_hsds(self) -> bool:
        """Whether any HSDS row was created or changed."""
        return any(n for t, n in self.created.items() if t != "source_record") or any(self.updated.values())


def open_database(url: str, *, busy_timeout_s: float = 30.0, auto_migrate: bool = True) -> Engine:
    """An engine on ``url`` with the schema at the latest migration (upgraded on first open unless
    ``auto_migrate`` is off, then :class:`~pirate_worker.db.errors.SchemaOutdatedError`).

    Raises :class:`DatabaseURLError` for a bad URL, :class:`DatabaseUnavailableError` if the
    database can't be reached (retry later).
    """
    engine = create_database_engine(url, busy_timeout_s=busy_timeout_s)
    ensure_schema(engine, auto_migrate=auto_migrate)
    return engine


def reconcile(
    engine: Engine,
    document: Mapping[str, Any],
    source: SourceInfo,
    *,
    now: datetime | None = None,
    geocoder: Geocoder | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ReconcileResult:
    """Store an aligned document; return the ids it maps to and what was written.

    Raises :class:`InvalidRecordError` before writing anything if the document's structure is
    unusable, :class:`DatabaseUnavailableError` if the database is locked, unreachable or aborted
    the transaction (rolled back, so a retry is safe). ``now`` (UTC) stamps the rows.
    """
    violations = find_violations(document)
    if violations:
        raise InvalidRecordError(violations)
    plan = plan_document(document)
    geocoding = _geocode(plan, geocoder or NoGeocoder())
    seen_at = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    source_id = hsds.source_record_id(source.job_id, source.scraper_id, source.content_hash)
    try:
        with engine.begin() as connection:
            ctx = WriteContext(connection, source_id, source.job_id, seen_at, tolerance)
            lock_organization(ctx, plan)
            new_source = record_source(ctx, source.scraper_id, source.content_hash, first=True)
            organization_id = write_document(ctx, plan)
            record_source(ctx, source.scraper_id, source.content_hash, first=False)
    except DBAPIError as exc:
        if is_transient(exc):
            raise unavailable(exc) from exc
        raise DatabaseError(f"database error: {str(exc.orig).strip().splitlines()[0]}") from exc
    created = {table.name: ctx.created.get(table.name, 0) for table in hsds.HSDS_TABLES}
    created["source_record"] = new_source
    updated = {table: count for table, count in ctx.updated.items() if count}
    result = ReconcileResult(
        organization_id=organization_id,
        source_record_id=source_id,
        location_ids=ctx.ids["location"],
        service_ids=ctx.ids["service"],
        phone_ids=ctx.ids["phone"],
        address_ids=ctx.ids["address"],
        schedule_ids=ctx.ids["schedule"],
        service_at_location_ids=ctx.ids["service_at_location"],
        created=created,
        updated=updated,
        versions=ctx.versions,
        geocoding=geocoding,
    )
    if result.wrote_hsds:
        new_rows = {table: count for table, count in created.items() if count}
        logger.info("reconciled job %s: new rows %s, updated %s", source.job_id, new_rows, updated)
    return result


def _geocode(plan: DocumentPlan, geocoder: Geocoder) -> dict[str, str]:
    """Fill in coordinates of locations that have an address but none; never fails the record."""
    outcome: dict[str, str] = {}
    for index, location in enumerate(plan.locations):
        if location.has_coordinates or not location.addresses or not geocoder.enabled:
            continue
        where = f"locations[{index}]"
        try:
            found = geocoder.geocode(location.addresses[0].fields)
        except GeocodingError as exc:
            outcome[where] = f"failed: {exc}"
            logger.warning("geocoding %s failed, stored without coordinates: %s", where, exc)
            continue
        if found is None:
            outcome[where] = "not_found"
            continue
        location.item.fields["latitude"], location.item.fields["longitude"] = found
        outcome[where] = "geocoded"
    return outcome


def database_stats(engine: Engine) -> dict[str, int]:
    """Rows per table (HSDS, provenance and versions)."""
    try:
        with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            return {
                table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (*hsds.HSDS_TABLES, hsds.source_record, hsds.record_version)
            }
    except DBAPIError as exc:
        raise unavailable(exc) from exc


def source_stats(engine: Engine) -> dict[str, dict[str, int]]:
    """Per scraper (``-`` when unknown): source records, versions caused, and distinct rows per
    HSDS table its records produced."""
    table, versions = hsds.source_record, hsds.record_version
    try:
        with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            records = connection.execute(select(table.c.id, table.c.scraper_id, table.c.record_ids)).all()
            caused: dict[str | None, int] = dict(
                connection.execute(
                    select(table.c.scraper_id, func.count())
                    .select_from(versions.join(table, versions.c.source_record_id == table.c.id))
                    .group_by(table.c.scraper_id)
                ).all()
            )
    except DBAPIError as exc:
        raise unavailable(exc) from exc
    rows: dict[str, dict[str, set[str]]] = {}
    counts: dict[str, dict[str, int]] = {}
    for _id, scraper, record_ids in records:
        name = scraper or "-"
        entry = counts.setdefault(name, {"source_record": 0, "record_version": caused.get(scraper, 0)})
        entry["source_record"] += 1
        for table_name, ids in record_ids.items():
            rows.setdefault(name, {}).setdefault(table_name, set()).update(ids)
    for name, tables in rows.items():
        for t in hsds.HSDS_TABLES:
            counts[name][t.name] = len(tables.get(t.name, ()))
    return dict(sorted(counts.items()))
