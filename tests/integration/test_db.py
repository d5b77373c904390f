"""The HSDS database layer on SQLite and a real PostgreSQL: migrations match the tables, upgrade
is idempotent and safe to run concurrently, and ``pirate-workers db upgrade|stats``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from pirate_worker.db.engine import create_database_engine, is_transient, normalize_url, unavailable
from pirate_worker.db.errors import DatabaseUnavailableError, DatabaseURLError, SchemaOutdatedError
from pirate_worker.db.migrate import current_revision, head_revision, upgrade
from pirate_worker.db.tables import metadata
from pirate_worker.services.hsds_writer import lock_key
from pirate_worker.services.reconciler import SourceInfo, database_stats, open_database, reconcile
from tests.support.postgres import PostgresServer
from tests.support.processes import ROOT

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pirate_worker", *args],
        env=full_env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_migrations_build_exactly_the_tables(database_url: str) -> None:
    engine = create_database_engine(database_url)

    assert upgrade(engine) == (None, head_revision())
    assert upgrade(engine) == (head_revision(), head_revision())
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []


def test_concurrent_upgrades_migrate_once(database_url: str) -> None:
    engines = [create_database_engine(database_url) for _ in range(4)]

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(upgrade, engines))

    assert sorted(before or "" for before, _ in outcomes) == ["", *[head_revision()] * 3]
    assert current_revision(engines[0]) == head_revision()


def test_without_auto_migration_an_empty_database_is_refused_in_one_line(database_url: str) -> None:
    with pytest.raises(SchemaOutdatedError, match=r"^database schema is at nothing, .*db upgrade"):
        open_database(database_url, auto_migrate=False)
    open_database(database_url)
    open_database(database_url, auto_migrate=False)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("postgresql://u:p@h:5433/hsds", "postgresql+psycopg://u:p@h:5433/hsds"),
        ("postgresql+psycopg://u@h/hsds", "postgresql+psycopg://u@h/hsds"),
        ("sqlite:///hsds.db", "sqlite:///hsds.db"),
    ],
)
def test_database_urls_are_normalized_to_psycopg(raw: str, normalized: str) -> None:
    assert normalize_url(raw).render_as_string(hide_password=False) == normalized


def test_postgresql_urls_need_a_database() -> None:
    with pytest.raises(DatabaseURLError, match="needs a database name"):
        normalize_url("postgresql://u@h")


def test_db_upgrade_and_stats_commands(database_url: str) -> None:
    env = {"DATABASE_URL": database_url.replace("postgresql+psycopg://", "postgresql://")}

    refused = cli("db", "stats", env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: database schema is at nothing, expected {head_revision()}: run `pirate-workers db upgrade`"
    ]

    first = cli("db", "upgrade", env=env)
    assert first.returncode == 0, first.stderr
    assert f"schema upgraded from empty to revision {head_revision()}" in first.stdout
    again = cli("db", "upgrade", env=env)
    assert f"schema already at revision {head_revision()}" in again.stdout

    engine = open_database(database_url)
    document = {"organization": {"name": "Harbor Pantry", "phones": [{"number": "555-0100"}]}}
    reconcile(engine, document, SourceInfo(job_id="j1", scraper_id="metro", content_hash="h1"))
    document["organization"]["phones"] = [{"number": "555-0199"}]
    reconcile(engine, document, SourceInfo(job_id="j2", scraper_id="church", content_hash="h2"))

    stats = cli("db", "stats", "--json", env=env)
    assert stats.returncode == 0, stats.stderr
    report = json.loads(stats.stdout)
    assert report["revision"] == head_revision()
    assert report["tables"] == {
        "organization": 1, "location": 0, "address": 0, "service": 0, "service_at_location": 0,
        "phone": 1, "schedule": 0, "source_record": 2, "record_version": 1,
    }  # fmt: skip
    assert report["sources"]["metro"]["organization"] == report["sources"]["church"]["organization"] == 1
    assert (report["sources"]["metro"]["record_version"], report["sources"]["church"]["record_version"]) == (
        0,
        1,
    )
    table = cli("db", "stats", env=env)
    assert table.returncode == 0 and "record_version" in table.stdout and "church" in table.stdout


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://db/hsds", "unsupported DATABASE_URL scheme 'mysql'"),
        ("hsds.db", "must be a URL"),
        ("postgresql://user:hunter2@db", "needs a database name"),
    ],
)
@pytest.mark.parametrize("command", [("db", "upgrade"), ("db", "stats"), ("worker", "--role", "reconciler")])
def test_a_bad_database_url_is_one_line_and_exit_2(
    url: str, reason: str, command: tuple[str, ...], tmp_path: Path
) -> None:
    result = cli(*command, env={"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:1/0"})

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: invalid environment variable DATABASE_URL: ") and reason in line
    assert "hunter2" not in result.stderr


def test_an_unreachable_postgresql_is_one_line_and_exit_1() -> None:
    from pirate_worker.runtime.embedded_redis import free_port

    result = cli(
        "db", "upgrade", env={"DATABASE_URL": f"postgresql://u:hunter2@127.0.0.1:{free_port()}/hsds"}
    )

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: database unavailable: ") and "refused" in line.casefold()
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("sqlstate", "transient"),
    [
        ("40001", True),  # serialization_failure
        ("40P01", True),  # deadlock_detected
        ("55P03", True),  # lock_not_available
        ("57P01", True),  # admin_shutdown (server restarting)
        ("23505", True),  # unique_violation: a race the locks did not cover; the retry finds the row
        ("23502", False),  # not_null_violation: a bug, retrying can't help
        ("22P02", False),  # invalid_text_representation
    ],
)
def test_which_postgresql_errors_are_transient(
    postgres_server: PostgresServer, sqlstate: str, transient: bool
) -> None:
    engine = create_database_engine(postgres_server.create_database())
    raise_it = f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END $$"

    with pytest.raises(DBAPIError) as caught, engine.begin() as connection:
        connection.exec_driver_sql(raise_it)

    assert is_transient(caught.value) is transient
    if transient:
        assert str(unavailable(caught.value)) == "database unavailable: injected"


def test_a_writer_waiting_on_the_organization_lock_times_out_transiently(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database()
    engine = open_database(url)
    impatient = create_engine(normalize_url(url), connect_args={"options": "-c lock_timeout=300"})
    document = {"organization": {"name": "Harbor Pantry"}}
    holder = create_engine(normalize_url(url)).connect()
    holder.begin()
    holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("organization|harbor pantry")})
    try:
        with pytest.raises(DatabaseUnavailableError, match="lock timeout"):
            reconcile(impatient, document, SourceInfo(job_id="j1"))
    finally:
        holder.rollback()
        holder.close()

    assert database_stats(engine)["organization"] == database_stats(engine)["source_record"] == 0
    assert reconcile(impatient, document, SourceInfo(job_id="j1")).created["organization"] == 1
