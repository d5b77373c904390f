"""The HSDS tables the reconciler writes, and the deterministic ids of their rows.

The tables are the part of Open Referral HSDS 3.0 an aligned document carries, with HSDS column
names so exports need no renaming, plus ``source_record`` (ours): which scraped record produced
which rows. The stored fields of each HSDS table are exactly its non-key columns, so adding a
column here is how the reconciler learns to keep another field.

Every id is a uuid5 over a normalized natural key, so the same listing reconciled twice, or by
two processes at once, lands on the same row. Normalized parts can't contain ``|`` (it is
punctuation), so joining them with it is unambiguous.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import JSON, Column, DateTime, Float, ForeignKey, Integer, MetaData, String, Table, Text

metadata = MetaData()

_ID_LENGTH: Final = 36


def _id() -> Column[str]:
    return Column("id", String(_ID_LENGTH), primary_key=True)


def _owner(table: str, *, nullable: bool = True) -> Column[str]:
    return Column(f"{table}_id", String(_ID_LENGTH), ForeignKey(f"{table}.id"), nullable=nullable, index=True)


organization = Table(
    "organization",
    metadata,
    _id(),
    Column("name", Text, nullable=False),
    Column("alternate_name", Text),
    Column("description", Text),
    Column("email", Text),
    Column("website", Text),
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
)

service_at_location = Table(
    "service_at_location",
    metadata,
    _id(),
    _owner("service", nullable=False),
    _owner("location", nullable=False),
    Column("description", Text),
)

# A phone or schedule belongs to exactly one of the owners below; the others stay NULL.
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
)

source_record = Table(
    "source_record",
    metadata,
    _id(),
    Column("scraper_id", Text),
    Column("job_id", Text, nullable=False, comment="the latest job that delivered this record"),
    Column("content_hash", Text, index=True),
    Column("first_seen", DateTime, nullable=False, comment="UTC"),
    Column("last_seen", DateTime, nullable=False, comment="UTC"),
    Column("record_ids", JSON, nullable=False, comment="{table: [ids]} of every row it produced"),
)


def stored_fields(table: Table) -> list[Column[Any]]:
    """The columns filled from an aligned document: all but the id and the owner keys."""
    return [column for column in table.columns if not column.primary_key and not column.foreign_keys]


# Natural keys ------------------------------------------------------------------------------------

_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://pirateradio.dev/hsds")
# Dropped rather than spaced so "St. Mary's" and "St Marys" agree.
_APOSTROPHES: Final = str.maketrans("", "", "'\u2019`")
_TIME: Final = re.compile(r"(\d{1,2}):(\d{2})(?::\d{2}(?:\.\d+)?)?")


def normalize_text(value: object) -> str:
    """Casefold, drop apostrophes, turn other punctuation and symbols into spaces, collapse whitespace."""
    if not isinstance(value, str):
        return ""
    text = unicodedata.normalize("NFKC", value).casefold().translate(_APOSTROPHES)
    text = "".join(" " if unicodedata.category(char)[0] in "PS" else char for char in text)
    return " ".join(text.split())


def _row_id(table: str, *parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join((table, *parts))))


def organization_id(name: str) -> str:
    """An organization is its normalized name."""
    return _row_id("organization", normalize_text(name))


def service_id(organization: str, name: str) -> str:
    """A service is its organization plus its normalized name."""
    return _row_id("service", organization, normalize_text(name))


def location_id(organization: str, fields: Mapping[str, Any], addresses: list[Mapping[str, Any]]) -> str:
    """A location is its organization plus the first that is known of: its street address
    (``address_1``, ``city``, ``postal_code`` of the physical address, else the first), its
    coordinates rounded to 4 decimals (about 11 m), its name, its ``location_type``.
    """
    chosen = next((a for a in addresses if normalize_text(a.get("address_type")) == "physical"), None)
    if chosen is None and addresses:
        chosen = addresses[0]
    if chosen is not None:
        street = [normalize_text(chosen.get(name)) for name in ("address_1", "city", "postal_code")]
        if any(street):
            return _row_id("location", organization, "address", *street)
    latitude, longitude = fields.get("latitude"), fields.get("longitude")
    if latitude is not None and longitude is not None:
        # "+ 0.0" turns a rounded -0.0 into 0.0 so both sides of the equator/meridian agree.
        return _row_id(
            "location",
            organization,
            "at",
            f"{round(latitude, 4) + 0.0:.4f}",
            f"{round(longitude, 4) + 0.0:.4f}",
        )
    if name := normalize_text(fields.get("name")):
        return _row_id("location", organization, "name", name)
    return _row_id("location", organization, "type", normalize_text(fields.get("location_type")))


def address_id(location: str, fields: Mapping[str, Any]) -> str:
    """An address is its location plus every normalized address field, its type included."""
    names = ("address_1", "address_2", "city", "region", "state_province", "postal_code", "country")
    return _row_id(
        "address", location, *(normalize_text(fields.get(name)) for name in (*names, "address_type"))
    )


def phone_digits(number: str) -> str:
    """The decimal digits of a phone number, the part of it that identifies a line."""
    return "".join(char for char in unicodedata.normalize("NFKC", number) if char.isdecimal())


def phone_id(owner: str, number: str) -> str:
    """A phone is its owner (organization, service or location id) plus the digits of its number."""
    return _row_id("phone", owner, phone_digits(number))


def schedule_id(owner: str, fields: Mapping[str, Any]) -> str:
    """A schedule is its owner plus its frequency, days, hours and normalized description."""
    days = sorted(day.upper() for day in re.findall(r"[A-Za-z]+", fields.get("byday") or ""))
    return _row_id(
        "schedule",
        owner,
        normalize_text(fields.get("freq")),
        ",".join(days),
        _normalize_time(fields.get("opens_at")),
        _normalize_time(fields.get("closes_at")),
        normalize_text(fields.get("description")),
    )


def _normalize_time(value: object) -> str:
    """``8:00``, ``08:00`` and ``08:00:00`` are the same opening time."""
    if isinstance(value, str) and (match := _TIME.fullmatch(value.strip())):
        return f"{int(match[1]):02d}:{match[2]}"
    return normalize_text(value)


def service_at_location_id(service: str, location: str) -> str:
    """A service-at-location link is its two ends."""
    return _row_id("service_at_location", service, location)


def source_record_id(job_id: str, scraper_id: str | None, content_hash: str | None) -> str:
    """A scraped record is its scraper plus content hash, so a re-scrape of unchanged content
    (a new job) finds the same provenance row; without a hash, each job is its own record.
    """
    if content_hash:
        return _row_id("source_record", "content", scraper_id or "", content_hash)
    return _row_id("source_record", "job", job_id)
