"""Geocoders: ``none`` (keep the coordinates a record has) and a Nominatim-compatible HTTP one.

The HTTP geocoder shares two things with every reconciler through Redis: a cache of answers
(positive and negative, ``GEOCODER_CACHE_TTL_SECONDS``) and a rate limit: a Lua script hands out
request slots ``min_interval_s`` apart on Redis's own clock, so N workers together stay at 1
request/s (Nominatim's usage policy) without trusting their clocks to agree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Final, Protocol

import httpx
from redis import Redis
from redis.exceptions import RedisError

from pirate_worker.contracts import keys
from pirate_worker.errors import PirateError

logger = logging.getLogger(__name__)

Coordinates = tuple[float, float]

_QUERY_FIELDS: Final = (
    "address_1",
    "address_2",
    "city",
    "state_province",
    "region",
    "postal_code",
    "country",
)

# KEYS[1] slot key; ARGV[1] interval ms. Returns the ms to wait before the reserved slot.
_RESERVE_SLOT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local next_slot = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, next_slot)
local interval = tonumber(ARGV[1])
redis.call('SET', KEYS[1], slot + interval, 'PX', interval + 60000)
return slot - now
"""


class GeocodingError(PirateError):
    """The geocoder could not answer (HTTP error, timeout, garbage); the record keeps no coordinates."""


class Geocoder(Protocol):
    enabled: bool

    def geocode(self, address: Mapping[str, Any]) -> Coordinates | None:
        """Coordinates of ``address`` (HSDS address fields), None if the geocoder knows none."""
        ...


class NoGeocoder:
    """``GEOCODER=none``: records keep the coordinates they came with."""

    enabled = False

    def geocode(self, address: Mapping[str, Any]) -> Coordinates | None:
        return None


def address_query(address: Mapping[str, Any]) -> str:
    """The free-form query of an address: its fields, comma-separated, in postal order."""
    parts = [str(address[name]).strip() for name in _QUERY_FIELDS if address.get(name)]
    return ", ".join(part for part in parts if part)


class NominatimGeocoder:
    """``GET {base_url}/search?q=...&format=jsonv2&limit=1`` with a User-Agent, cached and rate-limited."""

    enabled = True

    def __init__(
        self,
        client: httpx.Client,
        redis: Redis,
        *,
        base_url: str,
        min_interval_s: float = 1.0,
        cache_ttl_s: int = 30 * 86_400,
    ) -> None:
        self.client = client
        self.redis = redis
        self.base_url = base_url.rstrip("/")
        self.min_interval_ms = max(0, round(min_interval_s * 1000))
        self.cache_ttl_s = cache_ttl_s
        self._reserve = redis.register_script(_RESERVE_SLOT)

    def geocode(self, address: Mapping[str, Any]) -> Coordinates | None:
        query = address_query(address)
        if not query:
            return None
        cache_key = keys.geocode_cache_key(hashlib.sha256(query.casefold().encode()).hexdigest())
        try:
            cached = self.redis.get(cache_key)
        except RedisError as exc:
            raise GeocodingError(f"geocoder cache unavailable: {exc}") from exc
        if cached is not None:
            entry = json.loads(cached)
            return (entry["lat"], entry["lon"]) if entry["found"] else None
        found = self._request(query)
        entry = {
            "found": found is not None,
            "lat": found[0] if found else None,
            "lon": found[1] if found else None,
        }
        try:
            self.redis.set(cache_key, json.dumps(entry), ex=self.cache_ttl_s)
        except RedisError:
            logger.warning("geocoder cache write failed; the answer is still used", exc_info=True)
        return found

    def _wait_for_slot(self) -> None:
        try:
            wait_ms = int(self._reserve(keys=[keys.geocode_slot_key()], args=[self.min_interval_ms]))
        except RedisError as exc:
            raise GeocodingError(f"geocoder rate limit unavailable: {exc}") from exc
        if wait_ms > 0:
            time.sleep(wait_ms / 1000)

    def _request(self, query: str) -> Coordinates | None:
        self._wait_for_slot()
        try:
            response = self.client.get(
                f"{self.base_url}/search", params={"q": query, "format": "jsonv2", "limit": 1}
            )
        except httpx.HTTPError as exc:
            raise GeocodingError(f"geocoder request failed: {exc}") from exc
        if response.status_code != 200:
            raise GeocodingError(f"geocoder answered HTTP {response.status_code}")
        try:
            places = response.json()
            if not places:
                return None
            return float(places[0]["lat"]), float(places[0]["lon"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise GeocodingError(f"geocoder answer unreadable: {exc}") from exc


def build_geocoder(
    kind: str, redis: Redis, *, base_url: str, user_agent: str, min_interval_s: float, cache_ttl_s: int,
    timeout_s: float,
) -> Geocoder:  # fmt: skip
    """The geocoder ``kind`` names (``none`` or ``nominatim``)."""
    if kind == "none":
        return NoGeocoder()
    client = httpx.Client(headers={"User-Agent": user_agent}, timeout=timeout_s)
    return NominatimGeocoder(
        client, redis, base_url=base_url, min_interval_s=min_interval_s, cache_ttl_s=cache_ttl_s
    )
