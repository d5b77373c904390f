"""Alembic migrations shipped in the package (``pirate_worker/db/migrations``), run in-process.

Who migrates: ``pirate-workers db upgrade`` explicitly, and by default the reconciler itself on
first open (``DATABASE_AUTO_MIGRATE``), so SQLite and a fresh PostgreSQL need no setup step.
Concurrent workers opening one PostgreSQL serialize on a transaction-scoped advisory lock; the
first upgrades (PostgreSQL DDL is transactional, so a crash leaves nothing half-done), the others
find the schema at head. With auto-migration off a worker refuses an outdated schema in one line.
"""

from __future__ import annotations

import logging
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pirate_worker.db.engine import is_transient, unavailable
from pirate_worker.db.errors import DatabaseError, SchemaOutdatedError

logger = logging.getLogger(__name__)

SCRIPT_LOCATION: Final = "pirate_worker.db:migrations"
#: pg_advisory_xact_lock key of schema migrations ("pirate" + "mig" in ASCII, any fixed bigint).
MIGRATION_LOCK: Final = 0x7069726174656D69


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config on the packaged scripts; ``connection`` is what env.py migrates."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision stamped in the database, None for an empty database."""
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except DBAPIError as exc:
        raise _translate(exc) from exc


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to head; returns (revision before, revision after). Safe to run concurrently."""
    head = head_revision()
    # Alembic announces its plugins and context at INFO on every run; our one line says what changed.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _signed(MIGRATION_LOCK)}
                )
            # On SQLite the engine's BEGIN IMMEDIATE already made this the only writer.
            before = MigrationContext.configure(connection).get_current_revision()
            if before != head:
                command.upgrade(alembic_config(connection), "head")
                logger.info("database schema upgraded from %s to %s", before or "empty", head)
    except DBAPIError as exc:
        raise _translate(exc) from exc
    return before, head


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Make sure the schema is at head before the reconciler writes: upgrade it, or refuse."""
    current = current_revision(engine)
    if current == head_revision():
        return
    if not auto_migrate:
        raise SchemaOutdatedError(
            f"database schema is at {current or 'nothing'}, this release needs {head_revision()}: "
            "run `pirate-workers db upgrade` (or set DATABASE_AUTO_MIGRATE=true)"
        )
    upgrade(engine)


def _signed(key: int) -> int:
    return key - (1 << 64) if key >= 1 << 63 else key


def _translate(exc: DBAPIError) -> DatabaseError:
    if is_transient(exc):
        return unavailable(exc)
    return DatabaseError(f"database error: {str(exc.orig).strip().splitlines()[0]}")
