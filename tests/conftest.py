"""Shared fixtures: a real redis-server per session (DESIGN §8), flushed for every test.

In CI (``CI=true``) a missing service fails the run; elsewhere it skips the tests that need it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from redis import Redis

from pirate_worker.errors import ServiceUnavailable
from pirate_worker.runtime.embedded_redis import EmbeddedRedis
from tests.support.postgres import PostgresServer

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_service(reason: str) -> None:
    """Fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)  # only outside CI, on a developer's machine


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(appendonly=False)
    try:
        server.start()
    except ServiceUnavailable as exc:
        missing_service(str(exc))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    client = Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster for the session (Debian's server binaries, never its service)."""
    try:
        server = PostgresServer().start()
    except (RuntimeError, OSError) as exc:
        missing_service(f"PostgreSQL: {exc}")
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A new, empty HSDS database on each backend: the same test runs against both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'hsds.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()
