"""Open a crawl database for reading only, and write results for people or for machines.

SQLite is opened with ``mode=ro`` (the file cannot be changed through this connection, whatever
statement runs: ``DELETE``, ``PRAGMA user_version = 1``, ``ATTACH`` tricks included), and
PostgreSQL in a read-only transaction. Output goes to stdout untruncated; a table is aligned
only for a terminal, and tab-separated when piped, so scripts get every byte.

Reading creates nothing beside a database that no crawl is writing, and needs no write access
(another user, a root-owned directory, a read-only mount). SQLite's WAL mode needs the -shm
index, which a reader creates when it is missing; so, from the file's header and what lies
beside it (https://www.sqlite.org/wal.html#readonly):

- rollback-journal header (what a finished crawl leaves): ``mode=ro``, SQLite's own locking;
- WAL header and a ``-wal`` file beside it (a crawl has it open, or died with it open):
  ``mode=ro``, read through the WAL as usual, so the newest commits are seen;
- WAL header and no ``-wal`` file (a database left by an older version, or a copy): no
  connection has it open, and all its data is in the file: ``immutable=1``, no -shm needed.
  (A crawl that starts on it during the read is not seen by that read, which, should the crawl
  checkpoint meanwhile, may fail; running it again reads through the crawl's -wal.)

The path goes into the ``file:`` URI percent-escaped, so ``#``, ``%``, ``?``, spaces and
non-ASCII names open exactly the file named. The database must be a crawl database (its
tables): anything else is refused the same way by every tool (:class:`DatabaseError`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import sys
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from crawler.errors import DatabaseError
from crawler.store.db import engine_url, is_sqlite, masked, sqlite_file, unreachable, unusable

SQLITE_MAGIC = b"SQLite format 3\x00"
CRAWL_TABLES = ("crawls", "urls", "fetches", "links", "errors", "pages")
"""Every crawl database has these (tables and the view); tools check for them first."""


def sqlite_path(db: str) -> Path:
    path = sqlite_file(db)
    if path is None:
        raise DatabaseError(f"cannot read '{masked(db)}': not a SQLite database file")
    return path


@contextlib.contextmanager
def connect(db: str) -> Iterator[Connection]:
    """A read-only SQLAlchemy connection to ``db`` (a path or a URL), a crawl database."""
    engine = _sqlite_engine(db) if is_sqlite(db) else _server_engine(db)
    try:
        try:
            conn = engine.connect()
        except (DBAPIError, sqlite3.Error) as exc:
            raise unreachable(db, exc) from None
        with conn:
            require_crawl_tables(conn, db)
            yield conn
    finally:
        engine.dispose()


def _sqlite_engine(db: str) -> Engine:
    path = sqlite_path(db)
    if not path.is_file():
        raise DatabaseError(f"no crawl database at '{path}'")
    try:
        with path.open("rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise DatabaseError(f"cannot read database '{path}': {exc.strerror}") from None
    if header[: len(SQLITE_MAGIC)] != SQLITE_MAGIC:
        raise DatabaseError(f"'{path}' is not a SQLite database")
    uri = sqlite_uri(path, header)
    engine = create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)
    )

    @event.listens_for(engine, "connect")
    def _ro(dbapi_conn: sqlite3.Connection, _rec: Any) -> None:
        dbapi_conn.execute("PRAGMA query_only = ON")  # belt and braces over mode=ro

    return engine


def sqlite_uri(path: Path, header: bytes) -> str:
    """The ``file:`` URI that reads ``path`` without writing beside it (module docstring)."""
    wal = len(header) >= 20 and 2 in (header[18], header[19])
    quoted = urllib.parse.quote(os.fsencode(path), safe="/")
    if wal and not Path(f"{path}-wal").exists():
        return f"file:{quoted}?mode=ro&immutable=1"
    return f"file:{quoted}?mode=ro"


def _server_engine(db: str) -> Engine:
    try:
        return create_engine(engine_url(db), pool_pre_ping=True).execution_options(
            postgresql_readonly=True
        )
    except (ArgumentError, NoSuchModuleError, ModuleNotFoundError) as exc:
        raise unusable(db, exc) from None


def require_crawl_tables(conn: Connection, db: str, *names: str) -> None:
    """A :class:`DatabaseError` unless ``db`` has the crawler's tables (and ``names`` too):
    one message for a foreign database, whichever tool opened it."""
    inspector = inspect(conn)
    present = set(inspector.get_table_names()) | set(inspector.get_view_names())
    for name in (*CRAWL_TABLES, *names):
        if name not in present:
            raise DatabaseError(
                f"'{masked(db)}' is not a crawl database, or an old one (no '{name}')"
            )


def _escapes(keep: str) -> dict[int, str]:
    """``str.translate`` table: C0 and C1 controls and DEL as ``\\xNN``; bidi overrides and
    line separators as ``\\uNNNN``; except the characters in ``keep``."""
    codes = [*range(0x20), 0x7F, *range(0x80, 0xA0)]
    table = {c: f"\\x{c:02x}" for c in codes if chr(c) not in keep}
    for c in (0x200E, 0x200F, *range(0x2028, 0x202F), *range(0x2066, 0x206A)):
        table[c] = f"\\u{c:04x}"
    return table


CELL_ESCAPES = _escapes("")
"""For a table cell on a terminal: a tab or newline in the data would break the alignment."""
STREAM_ESCAPES = _escapes("\n")
"""For CSV and JSON lines on a terminal: their own newlines stay."""


def for_terminal(text: str) -> str:
    """``text`` as a terminal shows it harmlessly: a page's ``ESC ]0;...BEL`` (set the window
    title), ``ESC ]52;...`` (write the clipboard) or 8-bit CSI is printed as ``\\x1b]0;...``,
    never sent to the terminal to obey."""
    return text.translate(CELL_ESCAPES)


class TextSink(Protocol):
    def write(self, text: str, /) -> int: ...


class TerminalSafe:
    """A terminal's stdout for CSV or JSON lines: what is written goes through
    :data:`STREAM_ESCAPES`. Only used when stdout is a terminal: piped output is data, in the
    format's own escaping, byte for byte."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write(self, text: str, /) -> int:
        return self._out.write(text.translate(STREAM_ESCAPES))


def safe_sink(out: IO[str]) -> TextSink:
    """``out`` itself when piped; wrapped in :class:`TerminalSafe` when it is a terminal."""
    return TerminalSafe(out) if out.isatty() else out


def write_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str] | None = None
) -> None:
    """Rows for people: aligned columns on a terminal (control characters from the data shown
    escaped, see :func:`for_terminal`), tab-separated (never cut) when piped."""
    out = out or sys.stdout
    if not out.isatty():
        w = csv.writer(out, delimiter="\t", lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])
        return
    materialized = [["" if v is None else for_terminal(str(v)) for v in row] for row in rows]
    columns = [for_terminal(c) for c in columns]
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
