"""What every pool's loop shares: settings, API clients, Redis clients, metrics, the clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis import Redis

from pirate_operator.kube import KubeApi
from pirate_operator.metrics import OperatorMetrics
from pirate_operator.sources import open_redis
from pirate_operator.sources.redis_client import MAX_CONCURRENT_READS

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RedisClients:
    """Redis clients shared by the pools that name the same URL, reused across cycles.

    Many pools usually point at one Redis; one small connection pool per URL (instead of per
    pool) keeps the operator's connections and memory flat as pools are added. A pool whose URL
    changes, or that is deleted, lets go of its client; the last user closes it.
    """

    opener: Callable[[str], Redis] = open_redis
    _by_url: dict[str, Redis] = field(default_factory=dict)
    _url_of: dict[tuple[str, str], str] = field(default_factory=dict)

    def get(self, namespace: str, pool: str, url: str) -> Redis:
        """The client for ``url``, recording that this pool uses it."""
        key = (namespace, pool)
        if self._url_of.get(key) not in (None, url):
            self.discard(namespace, pool)
        self._url_of[key] = url
        client = self._by_url.get(url)
        if client is None:
            client = self._by_url[url] = self.opener(url)
        return client

    def discard(self, namespace: str, pool: str) -> None:
        """Forget the pool's client (pool deleted, or its connection is suspect); close it if unused.

        A suspect connection closes the shared client: the other pools on that URL would fail
        the same way, and the next cycle opens a fresh one.
        """
        url = self._url_of.pop((namespace, pool), None)
        if url is None:
            return
        client = self._by_url.pop(url, None)
        if client is not None:
            _close(client)

    def close_all(self) -> None:
        for client in self._by_url.values():
            _close(client)
        self._by_url.clear()
        self._url_of.clear()

    def __len__(self) -> int:
        return len(self._by_url)


def _close(client: Redis) -> None:
    try:
        client.close()
    except Exception:  # closing a broken connection must not fail the cycle
        logger.debug("error closing a Redis client", exc_info=True)


@dataclass
class OperatorContext:
    """Long-lived clients of the operator process (kept in kopf's ``memo``)."""

    kube: KubeApi
    metrics: OperatorMetrics
    redis: RedisClients = field(default_factory=RedisClients)
    clock: Callable[[], datetime] = utc_now
    #: Limits concurrent blocking Redis reads so a dead Redis cannot occupy every worker thread.
    redis_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_READS))

    def close(self) -> None:
        self.redis.close_all()
        self.kube.close()
