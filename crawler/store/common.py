"""What every statement module of :mod:`crawler.store` shares: the tables and small helpers.

A leaf of the package: it imports the models and :mod:`crawler.store.rawsql`, nothing else of
``crawler.store``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from crawler.records import (
    URLState,
)
from crawler.store import rawsql
from models import Body, Crawl, Error, Fetch, Host, Link, Url

CHUNK = 500
"""Values per ``IN (...)`` list: well under SQLite's variable limit."""

urls_t: Table = Url.__table__  # type: ignore[assignment]
hosts_t: Table = Host.__table__  # type: ignore[assignment]
fetches_t: Table = Fetch.__table__  # type: ignore[assignment]
links_t: Table = Link.__table__  # type: ignore[assignment]
errors_t: Table = Error.__table__  # type: ignore[assignment]
crawls_t: Table = Crawl.__table__  # type: ignore[assignment]
bodies_t: Table = Body.__table__  # type: ignore[assignment]

QUEUED = URLState.QUEUED.value
EXCLUDED = URLState.EXCLUDED.value


def insert_for(dialect: Dialect, table: Table) -> Any:
    if dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # ~25 ms to import; SQLite runs need none

        return postgresql.insert(table)
    return sqlite.insert(table)


def insert(conn: Connection, table: Table) -> Any:
    return insert_for(conn.dialect, table)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def stored_values(conn: Connection) -> rawsql.Converters:
    """How this connection's driver stores timestamps and JSON (``fetches.data``)."""
    return rawsql.converters(conn.dialect, fetches_t.c.data)


def in_list(column: Any, name: str) -> Any:
    """``column IN (...)`` over a list given at execution (the field ``name``)."""
    return column.in_(bindparam(name, expanding=True))


def any_dialect(build: Callable[[], ClauseElement]) -> Callable[[Dialect], ClauseElement]:
    """A statement that compiles the same on every dialect."""
    return lambda _dialect: build()
