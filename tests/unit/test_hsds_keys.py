"""Pure parts of the reconciler: domain keys, geocoder queries, advisory-lock keys, URL mapping."""

from __future__ import annotations

from typing import Any

import pytest

from pirate_worker.db.engine import normalize_url
from pirate_worker.db.errors import DatabaseURLError
from pirate_worker.services.geocoding import address_query
from pirate_worker.services.hsds_tables import domain_key
from pirate_worker.services.hsds_writer import lock_key
from pirate_worker.settings import load_settings


@pytest.mark.parametrize(
    ("fields", "domain"),
    [
        ({"website": "https://www.StMarys.example/food?x=1"}, "stmarys.example"),
        ({"website": "stmarys.example"}, "stmarys.example"),
        ({"website": "http://pantry.example:8080"}, "pantry.example"),
        ({"website": "  ", "email": "Info@StMarys.Example"}, "stmarys.example"),
        ({"website": None, "email": "no-at-sign"}, ""),
        ({}, ""),
    ],
)
def test_domain_key(fields: dict[str, Any], domain: str) -> None:
    assert domain_key(fields) == domain


def test_address_query_is_postal_order_without_blanks() -> None:
    address = {
        "country": "US",
        "city": "New Haven",
        "address_1": " 12 Harbor Rd ",
        "address_2": "",
        "postal_code": "06510",
    }
    assert address_query(address) == "12 Harbor Rd, New Haven, 06510, US"
    assert address_query({}) == ""


def test_lock_keys_are_signed_64_bit_and_stable() -> None:
    keys = {lock_key(f"organization|pantry {n}") for n in range(1000)}
    assert len(keys) == 1000
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert lock_key("organization|x") == lock_key("organization|x")


@pytest.mark.parametrize(
    ("raw", "drivername"),
    [("postgresql://u@h/db", "postgresql+psycopg"), ("sqlite:///x.db", "sqlite"), ("sqlite://", "sqlite")],
)
def test_database_urls(raw: str, drivername: str) -> None:
    assert normalize_url(raw).drivername == drivername


@pytest.mark.parametrize("raw", ["mysql://h/db", "postgresql+asyncpg://h/db", "::", "postgresql://h"])
def test_unsupported_database_urls(raw: str) -> None:
    with pytest.raises(DatabaseURLError):
        normalize_url(raw)


def test_settings_map_postgresql_to_psycopg() -> None:
    settings = load_settings(DATABASE_URL="postgresql://u:pw@db:5432/hsds")
    assert settings.DATABASE_URL == "postgresql+psycopg://u:pw@db:5432/hsds"
