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

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RedisClients:
    """One Redis client per pool, reused across cycles, replaced when the pool's URL changes."""

    opener: Callable[[str], Redis] = open_redis
    _clients: dict[tuple[str, str], tuple[str, Redis]] = field(default_factory=dict)

    def get(self, namespace: str, pool: str, url: str) -> Redis:
        """The pool's client for ``url`` (a new one if the URL changed since the last call)."""
        key = (namespace, pool)
        cached = self._clients.get(key)
        if cached is not None and cached[0] == url:
            return cached[1]
        if cached is not None:
            _close(cached[1])
        client = self.opener(url)
        self._clients[key] = (url, client)
        return client

    def discard(self, namespace: str, pool: str) -> None:
        """Close and forget the pool's client (pool deleted, or its connection is suspect)."""
        cached = self._clients.pop((namespace, pool), None)
        if cached is not None:
            _close(cached[1])

    def close_all(self) -> None:
        for namespace, pool in list(self._clients):
            self.discard(namespace, pool)

    def __len__(self) -> int:
        return len(self._clients)


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
    redis_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(16))

    def close(self) -> None:
        self.redis.close_all()
        self.kube.close()
