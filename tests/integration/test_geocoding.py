"""The Nominatim-compatible geocoder against a real local HTTP server and a real Redis: shared
cache, shared 1 request/s limit, and failures that leave records stored without coordinates."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis import Redis

from pirate_worker.services.geocoding import NominatimGeocoder, address_query, build_geocoder
from pirate_worker.services.reconciler import SourceInfo, database_stats, open_database, reconcile
from tests.support.geocoder import FakeGeocoder

pytestmark = pytest.mark.integration

HARBOR = {"address_1": "12 Harbor Rd", "city": "New Haven", "state_province": "CT", "postal_code": "06510"}
HARBOR_QUERY = "12 Harbor Rd, New Haven, CT, 06510"


@pytest.fixture
def fake() -> Iterator[FakeGeocoder]:
    server = FakeGeocoder(places={HARBOR_QUERY: (41.3, -72.92)}).start()
    yield server
    server.stop()


def geocoder(fake: FakeGeocoder, redis: Redis, interval: float = 1.0) -> NominatimGeocoder:
    built = build_geocoder(
        "nominatim", redis, base_url=fake.url, user_agent="pirate-tests/1", min_interval_s=interval,
        cache_ttl_s=3600, timeout_s=5,
    )  # fmt: skip
    assert isinstance(built, NominatimGeocoder)
    return built


def document(address: dict[str, Any] = HARBOR) -> dict[str, Any]:
    return {
        "organization": {"name": "Harbor Pantry"},
        "locations": [{"location_type": "physical", "addresses": [address]}],
    }


def test_the_query_and_user_agent(fake: FakeGeocoder, redis: Redis) -> None:
    assert address_query(HARBOR) == HARBOR_QUERY
    assert geocoder(fake, redis).geocode(HARBOR) == (41.3, -72.92)
    [request] = fake.requests
    assert (request.query, request.user_agent) == (HARBOR_QUERY, "pirate-tests/1")


def test_a_cache_hit_avoids_a_second_request_across_workers(fake: FakeGeocoder, redis: Redis) -> None:
    first, second = geocoder(fake, redis), geocoder(fake, redis)  # two workers, one Redis

    assert first.geocode(HARBOR) == (41.3, -72.92)
    assert second.geocode(HARBOR) == (41.3, -72.92)
    assert first.geocode({"address_1": "1 Nowhere Ln"}) is None  # not found is cached too
    assert second.geocode({"address_1": "1 Nowhere Ln"}) is None

    assert [r.query for r in fake.requests] == [HARBOR_QUERY, "1 Nowhere Ln"]


def test_one_request_per_second_is_shared_by_every_worker(fake: FakeGeocoder, redis: Redis) -> None:
    workers = [geocoder(fake, redis) for _ in range(3)]
    addresses = [{"address_1": f"{n} Main St", "city": "Springfield"} for n in range(5)]

    threads = [
        threading.Thread(target=workers[i % 3].geocode, args=(address,))
        for i, address in enumerate(addresses)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    times = sorted(r.at for r in fake.requests)
    assert len(times) == 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.95, gaps  # server-side arrival times; 50 ms for scheduling jitter
    assert times[-1] - times[0] < 4 + 1.0  # and not much slower than the limit


def test_a_server_error_leaves_the_record_stored_without_coordinates(
    fake: FakeGeocoder, redis: Redis, database_url: str
) -> None:
    fake.status = 500
    engine = open_database(database_url)

    result = reconcile(engine, document(), SourceInfo(job_id="j1"), geocoder=geocoder(fake, redis, 0))

    assert result.geocoding == {"locations[0]": "failed: geocoder answered HTTP 500"}
    assert database_stats(engine)["location"] == 1
    with engine.connect() as connection:
        [(latitude, longitude)] = connection.exec_driver_sql("SELECT latitude, longitude FROM location").all()
    assert (latitude, longitude) == (None, None)
    assert redis.keys("pirate:geocode:cache:*") == []  # a failure is not cached as "not found"

    # Once the geocoder is back, the next delivery fills the coordinates in (an update, a version).
    fake.status = 200
    again = reconcile(engine, document(), SourceInfo(job_id="j2"), geocoder=geocoder(fake, redis, 0))
    assert again.geocoding == {"locations[0]": "geocoded"}
    assert (again.updated, again.versions, again.location_ids) == ({"location": 1}, 1, result.location_ids)


def test_an_unreachable_geocoder_is_a_failure_not_a_lost_record(redis: Redis, database_url: str) -> None:
    unreachable = NominatimGeocoder(
        httpx.Client(timeout=2), redis, base_url="http://127.0.0.1:9", min_interval_s=0
    )
    engine = open_database(database_url)

    result = reconcile(engine, document(), SourceInfo(job_id="j1"), geocoder=unreachable)

    assert result.geocoding["locations[0]"].startswith("failed: geocoder request failed")
    assert database_stats(engine)["location"] == 1


def test_records_with_coordinates_are_not_geocoded(fake: FakeGeocoder, redis: Redis, tmp_path: Any) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'hsds.db'}")
    located = document()
    located["locations"][0].update(latitude=41.0, longitude=-72.0)

    result = reconcile(engine, located, SourceInfo(job_id="j1"), geocoder=geocoder(fake, redis, 0))

    assert (result.geocoding, fake.requests) == ({}, [])
