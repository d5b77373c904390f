"""Alembic environment: migrates the connection handed over by ``pirate_worker.db.migrate``.

There is no alembic.ini; ``pirate-workers db upgrade`` is the command line. A new revision is a
new file in ``versions/`` (``down_revision`` = the previous one) written to match the change in
``pirate_worker.db.tables``; ``tests/integration/test_db.py`` fails while the two disagree.
"""

from __future__ import annotations

from alembic import context

from pirate_worker.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `pirate-workers db upgrade`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
