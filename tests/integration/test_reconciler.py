"""The reconciler against a real SQLite file and a real PostgreSQL server (the same cases, through
the parametrized ``database_url`` fixture): rows written, matching, idempotency, updates with
versions, natural keys, validation, errors, and several processes writing one database at once."""

from __future__ import annotations

import copy
import json
import multiprocessing
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from pirate_worker.contracts.payloads import JobResult, JobStatus, LLMJob
from pirate_worker.db.errors import DatabaseURLError
from pirate_worker.runtime.embedded_redis import free_port
from pirate_worker.services import hsds_tables as hsds
from pirate_worker.services.reconciler import (
    DatabaseUnavailableError,
    InvalidRecordError,
    SourceInfo,
    database_stats,
    open_database,
    plan_rows,
    reconcile,
    source_stats,
)

pytestmark = pytest.mark.integration

TABLES = (
    "organization",
    "location",
    "address",
    "service",
    "service_at_location",
    "phone",
    "schedule",
    "source_record",
)
ALL_TABLES = (*TABLES, "record_version")
NOON = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def pantry_document(street: str = "12 Harbor Rd", phone: str = "(555) 010-2000") -> dict[str, Any]:
    """An organization with a phone, a service (phone, schedule), a location (address, phone, schedule)."""
    return {
        "organization": {
            "name": "St. Mary's Food Pantry",
            "description": "Church pantry",
            "email": None,
            "website": "https://stmarys.example",
            "phones": [{"number": phone, "type": "voice"}],
        },
        "services": [
            {
                "name": "Food Pantry",
                "status": "active",
                "description": "Groceries",
                "eligibility_description": None,
                "phones": [{"number": "555-010-3000"}],
                "schedules": [
                    {"freq": "WEEKLY", "byday": "MO,TU", "opens_at": "09:00", "closes_at": "12:00"}
                ],
            }
        ],
        "locations": [
            {
                "location_type": "physical",
                "name": "Parish hall",
                "latitude": 41.30001,
                "longitude": -72.92,
                "addresses": [
                    {
                        "address_1": street,
                        "city": "New Haven",
                        "state_province": "CT",
                        "postal_code": "06510",
                        "country": "US",
                        "address_type": "physical",
                    }
                ],
                "phones": [{"number": "555 010 4000"}],
                "schedules": [{"description": "Closed on holidays"}],
            }
        ],
    }


def source(job_id: str = "job-1", content_hash: str | None = "hash-1") -> SourceInfo:
    return SourceInfo(job_id=job_id, scraper_id="church_pages", content_hash=content_hash)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_database(database_url)
    yield engine
    engine.dispose()  # the session's PostgreSQL has a connection limit


def stored_ids(engine: Engine, table: str) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(select(hsds.metadata.tables[table].c.id)).scalars())


def stored_rows(engine: Engine, table: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(select(hsds.metadata.tables[table])).mappings()]


def test_one_document_fills_every_table_and_returns_the_ids(engine: Engine) -> None:
    result = reconcile(engine, pantry_document(), source(), now=NOON)

    expected = {
        "organization": 1,
        "location": 1,
        "address": 1,
        "service": 1,
        "service_at_location": 1,
        "phone": 3,
        "schedule": 2,
        "source_record": 1,
    }
    assert database_stats(engine) == {**expected, "record_version": 0}
    assert result.created == expected
    assert (result.updated, result.versions, result.geocoding) == ({}, 0, {})
    assert stored_ids(engine, "organization") == {result.organization_id}
    for table, ids in [
        ("location", result.location_ids),
        ("address", result.address_ids),
        ("service", result.service_ids),
        ("service_at_location", result.service_at_location_ids),
        ("phone", result.phone_ids),
        ("schedule", result.schedule_ids),
    ]:
        assert stored_ids(engine, table) == set(ids), table
        assert len(ids) == len(set(ids)), table

    [organization] = stored_rows(engine, "organization")
    assert organization["name"] == "St. Mary's Food Pantry"
    assert organization["website"] == "https://stmarys.example"
    [location] = stored_rows(engine, "location")
    assert (location["organization_id"], location["latitude"]) == (result.organization_id, 41.30001)
    [link] = stored_rows(engine, "service_at_location")
    assert (link["service_id"], link["location_id"]) == (result.service_ids[0], result.location_ids[0])
    owners = {
        (row["number"], row["organization_id"], row["service_id"], row["location_id"])
        for row in stored_rows(engine, "phone")
    }
    assert owners == {
        ("(555) 010-2000", result.organization_id, None, None),
        ("555-010-3000", None, result.service_ids[0], None),
        ("555 010 4000", None, None, result.location_ids[0]),
    }
    [provenance] = stored_rows(engine, "source_record")
    assert provenance["id"] == result.source_record_id
    assert (provenance["scraper_id"], provenance["job_id"], provenance["content_hash"]) == (
        "church_pages",
        "job-1",
        "hash-1",
    )
    assert provenance["record_ids"]["phone"] == sorted(result.phone_ids)
    assert provenance["record_ids"]["organization"] == [result.organization_id]


def snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every HSDS and version row, in a stable order: equal snapshots mean nothing was written."""
    with engine.connect() as connection:
        return {
            name: [
                dict(row)
                for row in connection.execute(
                    select(hsds.metadata.tables[name]).order_by(hsds.metadata.tables[name].c.id)
                ).mappings()
            ]
            for name in (*TABLES[:-1], "record_version")
        }


def test_the_same_document_twice_writes_nothing_and_returns_the_same_ids(engine: Engine) -> None:
    first = reconcile(engine, pantry_document(), source("job-1"), now=NOON)
    before = snapshot(engine)
    later = NOON + timedelta(hours=5)
    second = reconcile(engine, pantry_document(), source("job-2"), now=later)

    assert second.created == dict.fromkeys(TABLES, 0)
    assert (second.updated, second.versions, second.wrote_hsds) == ({}, 0, False)
    # No HSDS row changed at all: same values, same updated_at, same version; no version rows.
    assert snapshot(engine) == before
    assert {row["version"] for row in before["organization"] + before["phone"]} == {1}
    assert (second.organization_id, second.location_ids, second.service_ids, second.phone_ids) == (
        first.organization_id,
        first.location_ids,
        first.service_ids,
        first.phone_ids,
    )
    assert (second.address_ids, second.schedule_ids, second.service_at_location_ids) == (
        first.address_ids,
        first.schedule_ids,
        first.service_at_location_ids,
    )
    assert sum(database_stats(engine).values()) == sum(first.created.values())
    # The same content delivered by a later job refreshes its provenance row.
    [provenance] = stored_rows(engine, "source_record")
    assert (provenance["job_id"], provenance["first_seen"], provenance["last_seen"]) == (
        "job-2",
        NOON.replace(tzinfo=None),
        later.replace(tzinfo=None),
    )

    # A late retry of the older delivery does not move last_seen back.
    reconcile(engine, pantry_document(), source("job-1"), now=NOON)
    [provenance] = stored_rows(engine, "source_record")
    assert provenance["last_seen"] == later.replace(tzinfo=None)
    assert snapshot(engine) == before


def test_one_organization_at_two_addresses_is_one_organization_with_two_locations(engine: Engine) -> None:
    first = reconcile(engine, pantry_document("12 Harbor Rd"), source("job-1", "hash-1"))
    other = pantry_document("40 Chapel St")
    other["organization"]["name"] = "ST MARYS   food pantry"  # the same name, written differently
    # The same coordinates too (a geocoder's street centroid): different known streets still win.
    second = reconcile(engine, other, source("job-2", "hash-2"))

    assert second.organization_id == first.organization_id
    assert second.service_ids == first.service_ids
    assert second.location_ids != first.location_ids
    stats = database_stats(engine)
    assert (stats["organization"], stats["location"], stats["address"], stats["service"]) == (1, 2, 2, 1)
    # The service runs at both locations; each scraped record keeps its own provenance.
    assert (stats["service_at_location"], stats["source_record"]) == (2, 2)
    assert second.created["organization"] == 0
    assert second.created["location"] == 1


def test_a_changed_phone_number_is_one_update_and_one_version_row(engine: Engine) -> None:
    first = reconcile(engine, pantry_document(phone="(555) 010-2000"), source("job-1", "hash-1"), now=NOON)
    before = snapshot(engine)
    later = NOON + timedelta(days=1)
    second = reconcile(engine, pantry_document(phone="(555) 010-2999"), source("job-2", "hash-2"), now=later)

    assert second.created == {**dict.fromkeys(TABLES, 0), "source_record": 1}
    assert (second.updated, second.versions) == ({"phone": 1}, 1)
    assert second.phone_ids == first.phone_ids  # the same phone row, with its new number
    after = snapshot(engine)
    [changed] = [row for row in after["phone"] if row["organization_id"] == first.organization_id]
    assert (changed["number"], changed["version"], changed["updated_at"]) == (
        "(555) 010-2999",
        2,
        later.replace(tzinfo=None),
    )
    [version] = after["record_version"]
    assert (version["table_name"], version["record_id"], version["version"], version["job_id"]) == (
        "phone",
        changed["id"],
        2,
        "job-2",
    )
    assert version["source_record_id"] == second.source_record_id
    assert version["changes"] == {"number": ["(555) 010-2000", "(555) 010-2999"]}
    # Nothing else moved.
    for table in ("organization", "location", "address", "service", "service_at_location", "schedule"):
        assert after[table] == before[table], table
    assert len(after["phone"]) == len(before["phone"])

    # The changed record again: nothing more.
    third = reconcile(engine, pantry_document(phone="(555) 010-2999"), source("job-3", "hash-2"), now=later)
    assert (third.updated, third.versions) == ({}, 0)
    assert snapshot(engine) == after


def test_a_changed_description_updates_the_row_and_a_missing_one_erases_nothing(engine: Engine) -> None:
    reconcile(engine, pantry_document(), source("job-1", "hash-1"), now=NOON)
    changed = pantry_document()
    changed["organization"]["description"] = "Now also a soup kitchen"
    result = reconcile(engine, changed, source("job-2", "hash-2"), now=NOON + timedelta(hours=1))

    assert result.created["organization"] == 0
    assert (result.updated, result.versions) == ({"organization": 1}, 1)
    [organization] = stored_rows(engine, "organization")
    assert (organization["description"], organization["version"]) == ("Now also a soup kitchen", 2)

    silent = pantry_document()
    silent["organization"]["description"] = None
    assert reconcile(engine, silent, source("job-3", "hash-3")).updated == {}
    assert stored_rows(engine, "organization")[0]["description"] == "Now also a soup kitchen"
    assert database_stats(engine)["record_version"] == 1


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ({"website": "https://www.stmarys.example/food"}, {"website": "stmarys.example"}, True),
        ({"website": "https://stmarys.example"}, {"email": "info@stmarys.example"}, True),
        ({"website": "https://stmarys.example"}, {"website": "https://other.example"}, False),
        ({"email": "a@stmarys.example"}, {"email": "b@other.example"}, False),
        ({}, {"website": "https://other.example"}, True),  # fills the domain in
        ({"website": "https://stmarys.example"}, {}, True),
    ],
)
def test_organizations_match_by_name_and_domain_when_both_have_one(
    engine: Engine, first: dict[str, Any], second: dict[str, Any], same: bool
) -> None:
    def document(extra: dict[str, Any]) -> dict[str, Any]:
        return {"organization": {"name": "St. Mary's Food Pantry", "website": None, "email": None, **extra}}

    one = reconcile(engine, document(first), source("job-1", "hash-1"))
    two = reconcile(engine, document(second), source("job-2", "hash-2"))

    assert (one.organization_id == two.organization_id) is same
    assert database_stats(engine)["organization"] == (1 if same else 2)


@pytest.mark.parametrize(
    ("tolerance", "shift", "same"),
    [(0.0001, 0.00009, True), (0.0001, 0.00015, False), (0.001, 0.0009, True), (0.00001, 0.00005, False)],
)
def test_locations_without_an_address_match_by_coordinates_within_the_tolerance(
    engine: Engine, tolerance: float, shift: float, same: bool
) -> None:
    # 41.30004 and 41.30004 + 0.00009 round to different 4-decimal keys: only the tolerance joins them.
    one = reconcile(
        engine,
        _location_only(latitude=41.30004, longitude=-72.92),
        source("job-1", "h1"),
        tolerance=tolerance,
    )
    two = reconcile(
        engine,
        _location_only(latitude=41.30004 + shift, longitude=-72.92 - shift),
        source("job-2", "h2"),
        tolerance=tolerance,
    )

    assert (one.location_ids == two.location_ids) is same
    assert database_stats(engine)["location"] == (1 if same else 2)
    if same:  # a point within the tolerance is the same point, not a change
        assert (two.updated, two.versions) == ({}, 0)


def test_services_match_by_organization_and_name(engine: Engine) -> None:
    one = reconcile(engine, pantry_document(), source("job-1", "hash-1"))
    renamed = pantry_document()
    renamed["services"][0]["name"] = "FOOD-PANTRY"
    other_org = pantry_document()
    other_org["organization"]["name"] = "Harbor Food Bank"

    assert reconcile(engine, renamed, source("job-2", "hash-2")).service_ids == one.service_ids
    assert reconcile(engine, other_org, source("job-3", "hash-3")).service_ids != one.service_ids
    assert database_stats(engine)["service"] == 2


def test_stats_per_source(engine: Engine) -> None:
    reconcile(engine, pantry_document(), source("job-1", "hash-1"))
    reconcile(engine, pantry_document(phone="555-010-2999"), SourceInfo(job_id="job-2", scraper_id="metro"))

    stats = source_stats(engine)

    assert set(stats) == {"church_pages", "metro"}
    assert stats["church_pages"]["source_record"] == stats["metro"]["source_record"] == 1
    assert (stats["church_pages"]["organization"], stats["church_pages"]["phone"]) == (1, 3)
    assert (stats["metro"]["record_version"], stats["church_pages"]["record_version"]) == (1, 0)


def test_unknown_fields_are_ignored_and_nulls_accepted(engine: Engine) -> None:
    document = pantry_document()
    document["meta"] = {"model": "rules-v1"}
    document["organization"]["tax_status"] = "501c3"
    document["organization"]["alternate_name"] = None
    document["services"][0]["languages"] = ["en", "es"]
    document["locations"][0]["addresses"][0]["attention"] = "Office"
    document["locations"][0]["latitude"] = None
    document["locations"][0]["longitude"] = None

    result = reconcile(engine, document, source())

    assert result.created["organization"] == 1
    assert "tax_status" not in stored_rows(engine, "organization")[0]


def test_a_document_without_locations_or_services_stores_the_organization(engine: Engine) -> None:
    result = reconcile(engine, {"organization": {"name": "Pop-up Pantry"}, "services": []}, source())

    assert (result.location_ids, result.service_ids, result.service_at_location_ids) == ([], [], [])
    assert database_stats(engine)["organization"] == 1


def _variant(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(pantry_document())
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


ORG = ("organization",)
SERVICE = ("services", 0)
LOCATION = ("locations", 0)
ADDRESS = ("locations", 0, "addresses", 0)


@pytest.mark.parametrize(
    ("table", "path", "value", "same"),
    [
        ("organization", (*ORG, "name"), "st marys food-pantry", True),
        ("organization", (*ORG, "name"), "  ST. MARY\u2019S   FOOD PANTRY ", True),
        ("organization", (*ORG, "name"), "St. Mary's Food Bank", False),
        ("service", (*SERVICE, "name"), "FOOD  PANTRY!", True),
        ("service", (*SERVICE, "name"), "Hot Meals", False),
        ("phone", (*ORG, "phones", 0, "number"), "555.010.2000", True),
        ("phone", (*ORG, "phones", 0, "number"), "555.010.2001", False),
        ("schedule", (*SERVICE, "schedules", 0, "opens_at"), "9:00", True),
        ("schedule", (*SERVICE, "schedules", 0, "opens_at"), "09:00:00", True),
        ("schedule", (*SERVICE, "schedules", 0, "byday"), "TU,MO", True),
        ("schedule", (*SERVICE, "schedules", 0, "closes_at"), "13:00", False),
        ("schedule", (*LOCATION, "schedules", 0, "description"), "closed on holidays.", True),
        ("location", (*ADDRESS, "address_1"), "12 HARBOR RD.", True),
        ("location", (*ADDRESS, "city"), "West Haven", False),
        ("location", (*LOCATION, "name"), "Church basement", True),  # the address decides
        ("address", (*ADDRESS, "address_2"), "Suite 4", False),
        ("address", (*ADDRESS, "address_type"), "postal", False),
    ],
)
def test_natural_keys(table: str, path: tuple[str | int, ...], value: str, same: bool) -> None:
    original = set(plan_rows(pantry_document())[table])
    changed = set(plan_rows(_variant(path, value))[table])

    assert (changed == original) is same


def _location_only(**fields: Any) -> dict[str, Any]:
    return {"organization": {"name": "Mobile Pantry"}, "locations": [{"location_type": "physical", **fields}]}


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ({"latitude": 41.30001, "longitude": -72.92}, {"latitude": 41.29998, "longitude": -72.920001}, True),
        ({"latitude": 41.3, "longitude": -72.92}, {"latitude": 41.3001, "longitude": -72.92}, False),
        (
            {"latitude": 41.3, "longitude": -72.92, "name": "Lot A"},
            {"latitude": 41.3, "longitude": -72.92},
            True,
        ),
        ({"latitude": -0.00001, "longitude": 0.00001}, {"latitude": 0.0, "longitude": 0.0}, True),
        ({"name": "Lot A"}, {"name": "lot a."}, True),
        ({"name": "Lot A"}, {"name": "Lot B"}, False),
        ({"location_type": "virtual"}, {"location_type": "virtual", "description": "online"}, True),
    ],
)
def test_locations_without_an_address_are_keyed_by_coordinates_then_name(
    first: dict[str, Any], second: dict[str, Any], same: bool
) -> None:
    first_ids = set(plan_rows(_location_only(**first))["location"])
    second_ids = set(plan_rows(_location_only(**second))["location"])

    assert (first_ids == second_ids) is same


@pytest.mark.parametrize(
    ("document", "violations"),
    [
        ([], ["document: expected an object, got array"]),
        ({}, ["organization: expected an object, got null"]),
        ({"organization": {"description": "x"}}, ["organization.name: required"]),
        ({"organization": {"name": "   "}}, ["organization.name: has no letters or digits"]),
        (
            {"organization": {"name": "P"}, "services": [{"name": "--"}]},
            ["services[0].name: has no letters or digits"],
        ),
        ({"organization": {"name": 7}}, ["organization.name: expected a string, got integer"]),
        (
            {"organization": {"name": "P"}, "services": {"name": "Food"}, "locations": "here"},
            ["services: expected a list, got object", "locations: expected a list, got string"],
        ),
        (
            {"organization": {"name": "P"}, "services": ["Food", {"status": "active"}]},
            ["services[0]: expected an object, got string", "services[1].name: required"],
        ),
        (
            {
                "organization": {"name": "P", "phones": [{"number": "call us"}, {}]},
                "locations": [{"latitude": "41.3", "longitude": True, "addresses": [{"city": ["x"]}]}],
            },
            [
                "organization.phones[0].number: has no digits",
                "organization.phones[1].number: required",
                "locations[0].latitude: expected a number, got string",
                "locations[0].longitude: expected a number, got boolean",
                "locations[0].addresses[0].city: expected a string, got array",
            ],
        ),
        (
            {
                "organization": {"name": "P"},
                "services": [{"name": "F", "schedules": [{"interval": "weekly"}]}],
            },
            ["services[0].schedules[0].interval: expected an integer, got string"],
        ),
    ],
)
def test_invalid_documents_are_refused_with_every_reason_and_nothing_written(
    engine: Engine, document: Any, violations: list[str]
) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        reconcile(engine, document, source())

    assert caught.value.violations == violations
    message = str(caught.value)
    assert message == "invalid aligned document: " + "; ".join(violations)
    assert "\n" not in message
    assert json.loads(json.dumps({"error": message, "violations": caught.value.violations}))
    assert database_stats(engine) == dict.fromkeys(ALL_TABLES, 0)


def test_a_long_list_of_violations_is_cut_short() -> None:
    document = {"organization": {"name": "P"}, "services": [{"name": n} for n in range(15)]}

    with pytest.raises(InvalidRecordError, match=r"\(\+5 more\)$") as caught:
        reconcile(open_database("sqlite://"), document, source())
    assert len(caught.value.violations) == 15


def test_database_files_use_wal(tmp_path: Path) -> None:
    open_database(f"sqlite:///{tmp_path / 'hsds.db'}")

    with sqlite3.connect(tmp_path / "hsds.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_locked_database_is_unavailable_and_nothing_is_half_written(tmp_path: Path) -> None:
    path = tmp_path / "hsds.db"
    engine = open_database(f"sqlite:///{path}", busy_timeout_s=0.2)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseUnavailableError, match="database is locked"):
            reconcile(engine, pantry_document(), source())
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert database_stats(engine) == dict.fromkeys(ALL_TABLES, 0)
    assert reconcile(engine, pantry_document(), source()).created["organization"] == 1


def test_an_unreachable_database_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailableError, match="unable to open database file"):
        open_database(f"sqlite:///{tmp_path / 'missing-folder' / 'hsds.db'}")
    with pytest.raises(DatabaseUnavailableError, match=r"^database unavailable: .*refused"):
        open_database(f"postgresql://postgres@127.0.0.1:{free_port()}/hsds")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://db/hsds", "unsupported DATABASE_URL scheme 'mysql'"),
        ("postgresql://db", "needs a database name"),
        ("not a url", "invalid DATABASE_URL"),
    ],
)
def test_unsupported_database_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(DatabaseURLError, match=reason):
        open_database(url)


def test_source_info_from_a_job_result() -> None:
    job = LLMJob(id="job-9", prompt="x", metadata={"scraper_id": "metro", "content_hash": "abc"})
    result = JobResult(job_id="job-9", job=job, status=JobStatus.COMPLETED)

    assert SourceInfo.from_job_result(result) == SourceInfo(
        job_id="job-9", scraper_id="metro", content_hash="abc"
    )


# Several processes, one file ---------------------------------------------------------------------

ORGANIZATIONS = 10
DOCUMENTS = 30
PROCESSES = 4


def concurrent_documents() -> list[dict[str, Any]]:
    """30 records of 10 organizations; record i is at its own address, with a shared and an own service."""
    documents = []
    for i in range(DOCUMENTS):
        hours = [{"freq": "WEEKLY", "byday": "WE", "opens_at": "10:00", "closes_at": "14:00"}]
        documents.append(
            {
                "organization": {
                    "name": f"Pantry {i % ORGANIZATIONS}",
                    "phones": [{"number": f"555-000-{i % 10:04}"}],
                },
                "services": [
                    {"name": "Food Pantry", "status": "active", "schedules": hours},
                    {"name": f"Extra {i // ORGANIZATIONS}", "status": "active", "schedules": hours},
                ],
                "locations": [
                    {
                        "location_type": "physical",
                        "addresses": [
                            {"address_1": f"{i} Main St", "city": "Springfield", "postal_code": "01101"}
                        ],
                        "phones": [{"number": f"555-100-{i:04}"}],
                        "schedules": [{"description": f"Door {i}"}],
                    }
                ],
            }
        )
    return documents


def reconcile_all(url: str, index: int, start: Any, results: Any) -> None:
    """Child process: open the file with the others, then reconcile every document in its own order."""
    try:
        start.wait(timeout=60)
        engine = open_database(url)
        created = dict.fromkeys(TABLES, 0)
        documents = list(enumerate(concurrent_documents()))
        shift = index * DOCUMENTS // PROCESSES
        for number, document in documents[shift:] + documents[:shift]:
            info = SourceInfo(
                job_id=f"job-{number}-p{index}", scraper_id="metro", content_hash=f"hash-{number}"
            )
            for table, count in reconcile(engine, document, info).created.items():
                created[table] += count
        results.put(("ok", created))
    except Exception as exc:
        results.put(("error", repr(exc)))


@pytest.mark.slow
def test_four_processes_reconciling_the_same_documents_create_each_row_once(database_url: str) -> None:
    url = database_url
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(PROCESSES), context.Queue()
    workers = [context.Process(target=reconcile_all, args=(url, i, start, results)) for i in range(PROCESSES)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)

    assert [status for status, _ in outcomes] == ["ok"] * PROCESSES, outcomes
    services_per_organization = 1 + DOCUMENTS // ORGANIZATIONS  # "Food Pantry" + one "Extra" per record
    expected = {
        "organization": ORGANIZATIONS,
        "location": DOCUMENTS,
        "address": DOCUMENTS,
        "service": ORGANIZATIONS * services_per_organization,
        "service_at_location": DOCUMENTS * 2,
        "phone": ORGANIZATIONS + DOCUMENTS,
        "schedule": ORGANIZATIONS * services_per_organization + DOCUMENTS,
        "source_record": DOCUMENTS,
    }
    assert database_stats(open_database(url)) == {**expected, "record_version": 0}
    # Every row was created by exactly one process, and each process counted it right.
    assert {table: sum(created[table] for _, created in outcomes) for table in TABLES} == expected


def test_two_locations_of_one_record_that_are_one_place_merge_their_children(engine: Engine) -> None:
    document = pantry_document()
    twin = copy.deepcopy(document["locations"][0])
    twin["phones"] = [{"number": "555 010 4999"}, {"number": "555 010 4000"}]
    document["locations"].append(twin)

    result = reconcile(engine, document, source())
    again = reconcile(engine, document, source("job-2"))

    assert len(set(result.location_ids)) == 1
    location_phones = [row for row in stored_rows(engine, "phone") if row["location_id"] is not None]
    assert sorted(row["number"] for row in location_phones) == ["555 010 4000", "555 010 4999"]
    assert (again.updated, again.versions, again.created["phone"]) == ({}, 0, 0)
