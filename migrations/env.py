"""Alembic's environment, configured in code by ``crawler.store.db.upgrade``.

The caller passes an open ``Connection`` in ``config.attributes["connection"]``; on PostgreSQL
an advisory lock serializes migrations, so many workers starting at once migrate exactly once.
SQLite uses batch mode, the only way to alter its tables.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from crawler.store.db import include_name
from models import metadata

# An arbitrary constant: the key of the advisory lock held while migrating on PostgreSQL.
MIGRATION_LOCK_KEY = 0x63726177  # "craw"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run migrations through crawler.store.db.upgrade, which passes a connection"
        )
    _run(connection)


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
