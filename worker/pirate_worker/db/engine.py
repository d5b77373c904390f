"""Engines on the HSDS database: SQLite (zero setup, the default) or PostgreSQL through psycopg 3.

``DATABASE_URL`` accepts ``sqlite:///path``, ``postgresql+psycopg://...`` and plain
``postgresql://...`` (mapped to psycopg, the driver we ship). Anything else is a
:class:`DatabaseURLError`, a configuration error the CLI reports in one line with exit code 2.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, InterfaceError, OperationalError

from pirate_worker.db.errors import DatabaseUnavailableError, DatabaseURLError

READ_ONLY: Final = "pirate_read_only"
_WAL_RETRY_S: Final = 0.02
_UNIQUE_VIOLATION: Final = "23505"
_POSTGRES_DRIVERS: Final = {"postgresql", "postgresql+psycopg"}


def normalize_url(raw: str) -> URL:
    """The SQLAlchemy URL of ``raw``: SQLite as given, PostgreSQL always on psycopg 3."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise DatabaseURLError(f"invalid DATABASE_URL: {exc}") from None
    if url.drivername == "sqlite":
        return url
    if url.drivername in _POSTGRES_DRIVERS:
        if not url.database:
            raise DatabaseURLError("invalid DATABASE_URL: a postgresql URL needs a database name")
        return url.set(drivername="postgresql+psycopg")
    raise DatabaseURLError(
        f"unsupported DATABASE_URL scheme {url.drivername!r}: use sqlite:///FILE or postgresql://USER@HOST/DB"
    )


def create_database_engine(raw_url: str, *, busy_timeout_s: float = 30.0) -> Engine:
    """An engine on ``raw_url``; connects lazily (nothing is reached until first use).

    On SQLite, a writer waits up to ``busy_timeout_s`` for another process's transaction before
    :class:`DatabaseUnavailableError`; files use WAL so readers run beside the one writer.
    """
    url = normalize_url(raw_url)
    if url.drivername == "sqlite":
        # pysqlite's timeout is SQLite's busy timeout, set before any pragma below needs a lock.
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
        event.listen(engine, "connect", _sqlite_connection_setup(busy_timeout_s))
        event.listen(engine, "begin", _begin_immediate)
        return engine
    # pre_ping: a connection the server dropped (restart, failover) is replaced instead of failing
    # the next job; connect_timeout keeps an unreachable server from hanging a job for minutes.
    return create_engine(
        url, pool_pre_ping=True, pool_size=2, max_overflow=4, connect_args={"connect_timeout": 10}
    )


def _sqlite_connection_setup(busy_timeout_s: float) -> Callable[[Any, Any], None]:
    """The ``connect`` hook of a SQLite engine."""

    def configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # pysqlite would otherwise BEGIN lazily (deferred) itself; _begin_immediate takes over.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _enable_wal(cursor, time.monotonic() + busy_timeout_s)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    return configure


def _enable_wal(cursor: sqlite3.Cursor, deadline: float) -> None:
    """Switch the file to WAL, so readers (stats, exports) run beside the one writer."""
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            # Switching needs an exclusive lock, and SQLite reports SQLITE_BUSY at once here rather
            # than waiting under busy_timeout: seen with processes opening a new file together.
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(_WAL_RETRY_S)


def _begin_immediate(connection: Connection) -> None:
    # A deferred transaction that reads before it writes fails at once with SQLITE_BUSY when
    # another process committed meanwhile; IMMEDIATE takes the write lock up front, and waits
    # for it under busy_timeout instead. Read-only work needs no write lock.
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the whole transaction may succeed: the server is down or restarting,
    the connection broke, a lock timed out, or PostgreSQL aborted us (serialization failure,
    deadlock). A unique violation counts too: it only happens when a concurrent writer won a
    race the locks did not cover, and the retry finds that writer's row.
    """
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, IntegrityError):
        orig = exc.orig
        return getattr(orig, "sqlstate", None) == _UNIQUE_VIOLATION or "UNIQUE constraint" in str(orig)
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def unavailable(exc: DBAPIError) -> DatabaseUnavailableError:
    """The driver's own message (first line: "connection refused", "database is locked") without SQL."""
    message = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    return DatabaseUnavailableError(f"database unavailable: {message}")
