"""The HSDS tables the reconciler writes (SQLAlchemy Core), the model the migrations must match.

The HSDS tables are the part of Open Referral HSDS 3.0 an aligned document carries, with HSDS
column names so exports need no renaming. Ours beside them: ``source_record`` (which scraper and
job delivered which rows, and when) and ``record_version`` (every change to a stored row, with
the source that caused it).

Columns marked ``internal`` are bookkeeping (match keys, timestamps, versions); every other
non-key column is a *stored field* filled from the aligned document, so adding a column here (and
a migration) is how the reconciler learns to keep another field.

``tests/integration/test_db.py`` fails when this module and the migrations disagree.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

ID_LENGTH: Final = 36
INTERNAL: Final = {"internal": True}


def _id() -> Column[str]:
    return Column("id", String(ID_LENGTH), primary_key=True)


def _owner(table: str, *, nullable: bool = True) -> Column[str]:
    return Column(f"{table}_id", String(ID_LENGTH), ForeignKey(f"{table}.id"), nullable=nullable, index=True)


def _key(name: str = "match_key", *, nullable: bool = False) -> Column[str]:
    return Column(name, Text, nullable=nullable, info=INTERNAL)


def _stamps() -> list[Column[Any]]:
    """When a row was created and last changed (UTC), and its version (1, +1 per change)."""
    return [
        Column("created_at", DateTime, nullable=False, info=INTERNAL),
        Column("updated_at", DateTime, nullable=False, info=INTERNAL),
        Column("version", Integer, nullable=False, info=INTERNAL),
    ]


organization = Table(
    "organization",
    metadata,
    _id(),
    Column("name", Text, nullable=False),
    Column("alternate_name", Text),
    Column("description", Text),
    Column("email", Text),
    Column("website", Text),
    _key("name_key"),
    # '' when neither website nor e-mail says; NOT NULL so the unique constraint covers it.
    _key("domain_key"),
    *_stamps(),
    UniqueConstraint("name_key", "domain_key"),
)

location = Table(
    "location",
    metadata,
    _id(),
    _owner("organization", nullable=False),
    Column("location_type", Text),
    Column("name", Text),
    Column("alternate_name", Text),
    Column("description", Text),
    Column("latitude", Float),
    Column("longitude", Float),
    # Coordinates match within a tolerance, so no unique constraint can hold locations apart:
    # writers of one organization serialize on a lock instead (see services.hsds_writer).
    _key("address_key", nullable=True),
    _key(),
    *_stamps(),
)

address = Table(
    "address",
    metadata,
    _id(),
    _owner("location", nullable=False),
    Column("address_1", Text),
    Column("address_2", Text),
    Column("city", Text),
    Column("region", Text),
    Column("state_province", Text),
    Column("postal_code", Text),
    Column("country", Text),
    Column("address_type", Text),
    _key(),
    *_stamps(),
    UniqueConstraint("location_id", "match_key"),
)

service = Table(
    "service",
    metadata,
    _id(),
    _owner("organization", nullable=False),
    Column("name", Text, nullable=False),
    Column("alternate_name", Text),
    Column("description", Text),
    Column("url", Text),
    Column("email", Text),
    Column("status", Text),
    Column("eligibility_description", Text),
    _key("name_key"),
    *_stamps(),
    UniqueConstraint("organization_id", "name_key"),
)

service_at_location = Table(
    "service_at_location",
    metadata,
    _id(),
    _owner("service", nullable=False),
    _owner("location", nullable=False),
    Column("description", Text),
    *_stamps(),
    UniqueConstraint("service_id", "location_id"),
)

# A phone or schedule belongs to exactly one of the owners below; the others stay NULL.
# ``owner_id`` repeats that owner's id so one unique constraint covers all three kinds.
phone = Table(
    "phone",
    metadata,
    _id(),
    _owner("organization"),
    _owner("service"),
    _owner("location"),
    Column("number", Text, nullable=False),
    Column("type", Text),
    Column("description", Text),
    Column("owner_id", String(ID_LENGTH), nullable=False, info=INTERNAL),
    _key(),
    *_stamps(),
    UniqueConstraint("owner_id", "match_key"),
)

schedule = Table(
    "schedule",
    metadata,
    _id(),
    _owner("service"),
    _owner("location"),
    # HSDS dates and times stay text (ISO 8601 as aligned); nothing here computes with them yet.
    Column("valid_from", Text),
    Column("valid_to", Text),
    Column("dtstart", Text),
    Column("freq", Text),
    Column("interval", Integer),
    Column("byday", Text),
    Column("bymonthday", Text),
    Column("opens_at", Text),
    Column("closes_at", Text),
    Column("description", Text),
    Column("owner_id", String(ID_LENGTH), nullable=False, info=INTERNAL),
    _key(),
    *_stamps(),
    UniqueConstraint("owner_id", "match_key"),
)

source_record = Table(
    "source_record",
    metadata,
    _id(),
    Column("scraper_id", Text, index=True),
    Column("job_id", Text, nullable=False, comment="the latest job that delivered this record"),
    Column("content_hash", Text, index=True),
    Column("first_seen", DateTime, nullable=False, comment="UTC"),
    Column("last_seen", DateTime, nullable=False, comment="UTC"),
    Column("record_ids", JSON, nullable=False, comment="{table: [ids]} of every row it produced"),
)

record_version = Table(
    "record_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("table_name", Text, nullable=False),
    Column("record_id", String(ID_LENGTH), nullable=False),
    Column("version", Integer, nullable=False, comment="the row's version after this change"),
    Column("source_record_id", String(ID_LENGTH), ForeignKey("source_record.id"), nullable=False, index=True),
    Column("job_id", Text, nullable=False),
    Column("changed_at", DateTime, nullable=False, comment="UTC"),
    Column("changes", JSON, nullable=False, comment="{field: [old, new]}"),
    UniqueConstraint("table_name", "record_id", "version"),
)
Index(None, record_version.c.table_name, record_version.c.record_id)

#: The HSDS tables, parents before children.
HSDS_TABLES: Final = (organization, location, address, service, service_at_location, phone, schedule)


def stored_fields(table: Table) -> list[Column[Any]]:
    """The columns filled from an aligned document: all but the id, owner keys and bookkeeping."""
    return [
        column
        for column in table.columns
        if not column.primary_key and not column.foreign_keys and not column.info.get("internal")
    ]
