"""The one Redis connection pool of a process."""

from __future__ import annotations

import socket

from redis import Redis
from redis.connection import ConnectionPool

#: Generous enough for RQ's blocking dequeue (RQ raises it further when it needs to).
SOCKET_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0


def _keepalive_options() -> dict[int, int]:
    options: dict[int, int] = {}
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            options[getattr(socket, name)] = value
    return options


def connect(url: str, pool_size: int = 50) -> Redis:
    """Build a client on a bounded pool with timeouts and TCP keepalive; connects lazily.

    RQ stores raw bytes and decodes itself, so responses are not decoded here.
    """
    pool = ConnectionPool.from_url(
        url,
        max_connections=pool_size,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_keepalive=not url.startswith("unix://"),
        socket_keepalive_options=None if url.startswith("unix://") else _keepalive_options(),
        health_check_interval=30,
        retry_on_timeout=False,
    )
    return Redis(connection_pool=pool)


def as_text(value: bytes | str) -> str:
    """Redis answers bytes (responses are not decoded, for RQ's sake); keys and counters are UTF-8."""
    return value.decode() if isinstance(value, bytes) else value
