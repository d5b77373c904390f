"""Errors of the database layer."""

from __future__ import annotations

from pirate_worker.errors import ConfigError, PirateError, ServiceUnavailable


class DatabaseError(PirateError):
    """Base of the database layer's errors."""


class DatabaseURLError(DatabaseError, ConfigError):
    """``DATABASE_URL`` is malformed or names a database we don't support."""


class DatabaseUnavailableError(DatabaseError, ServiceUnavailable):
    """The database is locked, unreachable, or aborted the transaction; retrying may help."""


class SchemaOutdatedError(DatabaseError):
    """The database's schema is behind this release and automatic migration is off."""
