"""Open a crawl database for reading only, and write results for people or for machines.

SQLite is opened with ``mode=ro`` (the file cannot be changed through this connection, whatever
statement runs: ``DELETE``, ``PRAGMA user_version = 1``, ``ATTACH`` tricks included), and
PostgreSQL in a read-only transaction. Output goes to stdout untruncated; a table is aligned
only for a terminal, and tab-separated when piped, so scripts get every byte.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import make_url

from crawler.errors import DatabaseError
from crawler.store.db import database_url, is_sqlite

SQLITE_MAGIC = b"SQLite format 3\x00"


def sqlite_path(db: str) -> Path:
    return Path(database_url(db).removeprefix("sqlite:///"))


@contextlib.contextmanager
def connect(db: str) -> Iterator[Connection]:
    """A read-only SQLAlchemy connection to ``db`` (a path or a URL)."""
    if is_sqlite(db):
        path = sqlite_path(db)
        if not path.is_file():
            raise DatabaseError(f"no crawl database at '{path}'")
        with path.open("rb") as f:
            if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                raise DatabaseError(f"'{path}' is not a SQLite database")
        uri = f"file:{path}?mode=ro"
        engine = create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)
        )

        @event.listens_for(engine, "connect")
        def _ro(dbapi_conn: sqlite3.Connection, _rec: Any) -> None:
            dbapi_conn.execute("PRAGMA query_only = ON")  # belt and braces over mode=ro
    else:
        engine = create_engine(make_url(database_url(db)), pool_pre_ping=True).execution_options(
            postgresql_readonly=True
        )
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def write_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str] | None = None
) -> None:
    """Rows for people: aligned columns on a terminal, tab-separated (never cut) when piped."""
    out = out or sys.stdout
    if not out.isatty():
        w = csv.writer(out, delimiter="\t", lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])
        return
    materialized = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in materialized:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=False)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=False)).rstrip() + "\n")
    for row in materialized:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)).rstrip() + "\n")


def write_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str]) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(["" if v is None else v for v in row])


def write_jsonl(columns: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str]) -> None:
    """One JSON object per row; numbers stay numbers."""
    for row in rows:
        out.write(
            json.dumps(dict(zip(columns, row, strict=False)), default=str, ensure_ascii=False)
        )
        out.write("\n")
