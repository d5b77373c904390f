"""The HSDS database: its tables, engines on SQLite or PostgreSQL, and the Alembic migrations."""
