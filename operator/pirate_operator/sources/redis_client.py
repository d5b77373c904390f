"""Redis clients of the operator: short timeouts, no retries, one connection pool per Redis URL.

The operator reads a few keys every polling interval; a Redis that does not answer within a
couple of seconds is reported as unreachable (the decision holds replicas) instead of stalling
the cycle. Retrying is the next cycle's job.
"""

from __future__ import annotations

from typing import Final

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

CONNECT_TIMEOUT_S: Final = 2.0
SOCKET_TIMEOUT_S: Final = 3.0
#: Concurrent Redis reads the operator allows at once (every pool on one URL shares a client, so
#: its pool must hold as many connections as reads can run together; redis-py fails, not waits).
MAX_CONCURRENT_READS: Final = 16
MAX_CONNECTIONS: Final = MAX_CONCURRENT_READS


def open_redis(url: str) -> Redis:
    """A client for ``url`` that connects lazily; responses stay bytes, as rq stores them."""
    return Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        max_connections=MAX_CONNECTIONS,
    )
