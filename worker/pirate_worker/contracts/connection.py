"""The one Redis connection pool of a process, and the checks and redaction of Redis URLs.

TLS and passwords come from the URL, as redis-py reads it: ``rediss://`` for TLS,
``redis://:PASSWORD@host`` or ``redis://USER:PASSWORD@host`` for AUTH, and redis-py's query
options such as ``?ssl_ca_certs=/etc/redis-ca/ca.crt`` (a private CA) or ``ssl_cert_reqs=none``.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from redis import Redis
from redis.connection import ConnectionPool

#: URL query options that only mean something on a TLS (``rediss://``) connection.
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_ca_path", "ssl_ca_data")
#: Query options redis-py takes a credential from.
_SECRET_OPTIONS = ("password", "username")

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


def check_redis_url(url: str) -> str:
    """Return ``url`` if redis-py can build a connection from it; else raise ``ValueError``.

    Nothing connects. The message never contains the URL (it may hold a password).
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    try:
        pool = ConnectionPool.from_url(url)
    except ValueError as exc:
        raise ValueError(f"not a Redis URL redis-py can read: {exc}") from None
    options = pool.connection_kwargs
    if not url.startswith("rediss://"):
        misplaced = sorted(name for name in _TLS_OPTIONS if name in options)
        if misplaced:
            raise ValueError(f"{misplaced[0]} needs a rediss:// (TLS) URL")
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        path = options.get(name)
        if isinstance(path, str) and not Path(path).is_file():
            raise ValueError(f"{name} file {path} does not exist")
    try:
        pool.connection_class(**options)  # builds the object only; connections are lazy
    except (TypeError, ValueError) as exc:
        raise ValueError(f"unsupported connection option: {exc}") from None
    return url


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or as a query option) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unreadable URL>"
    if "://" not in url:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        user, has_password, _ = credentials.partition(":")
        # A lone "secret@" is read by redis-py as a user name, but people mean a password.
        netloc = f"{user}:***@{host}" if has_password else f"***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(name, "***" if name.lower() in _SECRET_OPTIONS else value) for name, value in pairs],
            safe="/:*",
        )
    # Assembled by hand: urlunsplit would turn unix:///path into unix:/path.
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )
