"""The natural keys the reconciler matches HSDS rows by, and the tables (from :mod:`pirate_worker.db`).

A key is a normalized string, stored in the row's ``*_key`` column: re-delivering a listing, or
the same listing written differently, lands on the same key. Normalized parts can't contain
``|`` (it is punctuation), so joining them with it is unambiguous.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from pirate_worker.db.tables import (
    HSDS_TABLES,
    address,
    location,
    metadata,
    organization,
    phone,
    record_version,
    schedule,
    service,
    service_at_location,
    source_record,
    stored_fields,
)

__all__ = [
    "HSDS_TABLES",
    "address",
    "address_key",
    "domain_key",
    "location",
    "location_keys",
    "metadata",
    "normalize_text",
    "organization",
    "phone",
    "phone_digits",
    "record_version",
    "schedule",
    "schedule_key",
    "service",
    "service_at_location",
    "source_record",
    "source_record_id",
    "stored_fields",
]

# Dropped rather than spaced so "St. Mary's" and "St Marys" agree.
_APOSTROPHES: Final = str.maketrans("", "", "'\u2019`")
_TIME: Final = re.compile(r"(\d{1,2}):(\d{2})(?::\d{2}(?:\.\d+)?)?")
_ADDRESS_FIELDS: Final = (
    "address_1",
    "address_2",
    "city",
    "region",
    "state_province",
    "postal_code",
    "country",
)


def normalize_text(value: object) -> str:
    """Casefold, drop apostrophes, turn other punctuation and symbols into spaces, collapse whitespace."""
    if not isinstance(value, str):
        return ""
    text = unicodedata.normalize("NFKC", value).casefold().translate(_APOSTROPHES)
    text = "".join(" " if unicodedata.category(char)[0] in "PS" else char for char in text)
    return " ".join(text.split())


def _join(*parts: str) -> str:
    return "|".join(parts)


def domain_key(fields: Mapping[str, Any]) -> str:
    """The organization's web domain (``www.`` dropped), else its e-mail domain, else ''."""
    website = fields.get("website")
    if isinstance(website, str) and website.strip():
        text = website.strip()
        host = urlsplit(text if "://" in text else f"http://{text}").hostname or ""
        host = host.casefold().removeprefix("www.")
        if host:
            return host
    email = fields.get("email")
    if isinstance(email, str) and "@" in email:
        return email.rpartition("@")[2].strip().casefold().rstrip(".")
    return ""


def location_keys(fields: Mapping[str, Any], addresses: list[Mapping[str, Any]]) -> tuple[str | None, str]:
    """``(address_key, match_key)`` of a location.

    The address key is the street (``address_1``, ``city``, ``postal_code``) of its physical
    address, else of its first, None without one. The match key is the first known of: that
    street, the coordinates rounded to 4 decimals (about 11 m), the name, the ``location_type``;
    it matches locations that have neither address nor coordinates to compare.
    """
    chosen = next((a for a in addresses if normalize_text(a.get("address_type")) == "physical"), None)
    if chosen is None and addresses:
        chosen = addresses[0]
    street_key = None
    if chosen is not None:
        street = [normalize_text(chosen.get(name)) for name in ("address_1", "city", "postal_code")]
        if any(street):
            street_key = _join(*street)
    if street_key is not None:
        return street_key, _join("address", street_key)
    latitude, longitude = fields.get("latitude"), fields.get("longitude")
    if latitude is not None and longitude is not None:
        # "+ 0.0" turns a rounded -0.0 into 0.0 so both sides of the equator/meridian agree.
        return None, _join("at", f"{round(latitude, 4) + 0.0:.4f}", f"{round(longitude, 4) + 0.0:.4f}")
    if name := normalize_text(fields.get("name")):
        return None, _join("name", name)
    return None, _join("type", normalize_text(fields.get("location_type")))


def address_key(fields: Mapping[str, Any]) -> str:
    """An address is every normalized address field, its type included."""
    return _join(*(normalize_text(fields.get(name)) for name in (*_ADDRESS_FIELDS, "address_type")))


def phone_digits(number: str) -> str:
    """The decimal digits of a phone number, the part of it that identifies a line."""
    return "".join(char for char in unicodedata.normalize("NFKC", number) if char.isdecimal())


def schedule_key(fields: Mapping[str, Any]) -> str:
    """A schedule is its frequency, days, hours and normalized description."""
    days = sorted(day.upper() for day in re.findall(r"[A-Za-z]+", fields.get("byday") or ""))
    return _join(
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


_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://pirateradio.dev/hsds")


def source_record_id(job_id: str, scraper_id: str | None, content_hash: str | None) -> str:
    """A scraped record is its scraper plus content hash, so a re-scrape of unchanged content
    (a new job) finds the same provenance row; without a hash, each job is its own record.
    """
    if content_hash:
        return str(uuid.uuid5(_NAMESPACE, _join("source_record", "content", scraper_id or "", content_hash)))
    return str(uuid.uuid5(_NAMESPACE, _join("source_record", "job", job_id)))
