"""``crawler query "SELECT ..."``: run one read-only SQL statement and print its rows.

Also the helpers every reading tool shares: :func:`guard` (refuse statements that would open
other files), :func:`stream` (rows as they come, never all at once, with SQL errors turned into
one-line :class:`UsageError` messages) and the three output formats (table, CSV, JSON lines)
with one rule for values that are not text or numbers: bytes are hex in text and CSV, base64 in
JSON; timestamps from PostgreSQL are ISO 8601.

Why nothing can change the database: :func:`crawler.tools.readonly.connect` opens SQLite with
``mode=ro`` and ``query_only`` (PostgreSQL in a read-only transaction), so ``DELETE``,
``UPDATE``, ``WITH ... DELETE``, ``PRAGMA user_version = 1``, ``VACUUM`` fail inside SQLite
itself; the DBAPI runs one statement per call (``select 1; delete ...`` is refused before
anything runs); and :func:`guard` denies ``ATTACH`` and ``VACUUM INTO``, which a read-only
connection would otherwise allow and which create files elsewhere.

Must not: write anything but the output it was asked for, or hold a result set in memory
(except to align a table for a terminal, which needs every width first).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import datetime as dt
import decimal
import json
import math
import os
import re
import sqlite3
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from textwrap import fill
from typing import IO, Any

from sqlalchemy import Connection, CursorResult, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from crawler.errors import UsageError
from crawler.tools import TOOLS
from crawler.tools.readonly import TextSink, connect, safe_sink, write_table

NAME = "query"
BATCH_ROWS = 1000
"""Rows fetched from the database at a time while streaming."""

EPILOG = """\
examples:
  python -m crawler query "select status_code, count(*) from pages group by 1"
  python -m crawler query --db crawl.db --format csv "select url, title from pages" > pages.csv
  python -m crawler query --format jsonl "select * from errors where final" | jq .message
  echo "select count(*) from urls" | python -m crawler query -

The database is opened read-only: a statement that would change it (DELETE, UPDATE, INSERT,
PRAGMA x = y, VACUUM, ATTACH, ...) or more than one statement is refused with exit status 2.
Numbers stay numbers in JSON lines; JSON columns (fetches.data) are printed as stored (text);
NULL is an empty field in table and CSV output, null in JSON lines; binary values are hex
(table, CSV) or base64 (JSON lines). On a terminal, control characters from the data (a
page title's ESC ]0;...) are shown escaped (\\x1b); piped, the output is the data as stored.
Tables and worked queries: docs/queries.md.
"""

READ_ONLY = "the database is opened read-only"
ONE_STATEMENT = "one statement at a time"
OTHER_FILES = "ATTACH and VACUUM INTO are not allowed (they open other database files)"

Row = Sequence[Any]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help=TOOLS[NAME],
        description=fill(
            "Run one SQL statement against the crawl database, opened read-only, and "
            "print the rows: aligned on a terminal, tab-separated when piped (never cut).",
            width=90,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "sql",
        metavar="SQL",
        help='one statement, e.g. "select * from pages"; - reads it from stdin',
    )
    p.add_argument(
        "--format",
        choices=("table", "csv", "jsonl"),
        default="table",
        help="table (default), csv (with a header) or jsonl (one JSON object a line)",
    )
    return p


def run(args: argparse.Namespace, db: str) -> int:
    sql = sys.stdin.read() if args.sql == "-" else args.sql
    if not sql.strip():
        raise UsageError("query: empty SQL statement")
    with connect(db) as conn, output_closed_ok():
        guard(conn)
        columns, rows = stream(conn, sql)
        write(args.format, columns, rows, sys.stdout)
    return 0


# --------------------------------------------------------------------------- running SQL


def guard(conn: Connection) -> list[str]:
    """Refuse, on SQLite, the statements a read-only connection would still run and that create
    files (``ATTACH 'x.db'``, ``VACUUM INTO 'x.db'``). Returns the list a refusal's reason is
    appended to, which :func:`explain` reads."""
    reasons: list[str] = []
    if conn.dialect.name != "sqlite":
        return reasons
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)

    def authorize(action: int, arg1: str | None, *_: str | None) -> int:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            reasons.append(OTHER_FILES if arg1 else READ_ONLY)  # plain VACUUM attaches ''
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    raw.set_authorizer(authorize)
    conn.info["refusals"] = reasons
    return reasons


def explain(exc: BaseException, conn: Connection | None = None) -> str:
    """One line for a failed statement: refused (and why), or the database's own message."""
    refusals: list[str] = conn.info.get("refusals", []) if conn is not None else []
    if refusals:
        return f"query refused: {refusals[-1]}"
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(orig).strip().splitlines()
    message = lines[0] if lines else type(orig).__name__
    lowered = message.lower()
    code = getattr(orig, "sqlite_errorname", "") or ""
    sqlstate = getattr(getattr(orig, "diag", None), "sqlstate", None)
    if code.startswith("SQLITE_READONLY") or "read-only transaction" in lowered:
        return f"query refused: {READ_ONLY}"
    if sqlstate == "25006" or "data-modifying" in lowered:  # PostgreSQL: read-only transaction
        return f"query refused: {READ_ONLY}"
    if "one statement at a time" in lowered or "multiple commands" in lowered:
        return f"query refused: {ONE_STATEMENT}"
    return f"query failed: {message}"


def stream(
    conn: Connection, sql: str, params: dict[str, Any] | None = None
) -> tuple[list[str], Iterator[Row]]:
    """Run ``sql`` and return its column names and an iterator over its rows, fetched
    ``BATCH_ROWS`` at a time. ``params`` given: ``sql`` uses ``:name`` placeholders; not given:
    it runs exactly as written (``%`` and ``:`` are literal). A failure, now or while
    iterating, is a :class:`UsageError` (exit status 2).

    SQLite's cursor already steps through the result as it is read, so it is used directly
    (plain tuples: a third of the time per row of SQLAlchemy's rows); elsewhere a server-side
    cursor (``stream_results``) keeps the result on the server."""
    if conn.dialect.name == "sqlite":
        return _sqlite_stream(conn, sql, params)  # sqlite3 itself refuses a second statement
    if params is None and more_than_one_statement(sql):
        raise UsageError(f"query refused: {ONE_STATEMENT}")  # psycopg would run them all
    # A server-side cursor (DECLARE ... CURSOR FOR) takes only queries.
    streaming = {"stream_results": True, "max_row_buffer": BATCH_ROWS} if _QUERY.match(sql) else {}
    try:
        try:
            result = _execute(conn, sql, params, streaming)
        except DBAPIError as exc:
            if not streaming or getattr(getattr(exc.orig, "diag", None), "sqlstate", "") != "42601":
                raise
            # Not "WITH ... DELETE" either: run it plainly, and let the read-only transaction
            # give the true answer.
            conn.rollback()
            result = _execute(conn, sql, params, {})
    except SQLAlchemyError as exc:
        raise UsageError(explain(exc, conn)) from None
    if not result.returns_rows:
        result.close()
        return [], iter(())

    def rows() -> Iterator[Row]:
        try:
            for batch in result.partitions(BATCH_ROWS):
                yield from batch
        except SQLAlchemyError as exc:
            raise UsageError(explain(exc, conn)) from None
        finally:
            with contextlib.suppress(SQLAlchemyError):  # closed already (reader went away)
                result.close()

    return list(result.keys()), rows()


_TOKEN = re.compile(
    r"""'(?:[^']|'')*'?"""  # a string literal
    r'|"(?:[^"]|"")*"?'  # a quoted identifier
    r"|(\$[A-Za-z_0-9]*\$).*?(?:\1|\Z)"  # a dollar-quoted string (PostgreSQL)
    r"|--[^\n]*"  # a line comment
    r"|/\*.*?(?:\*/|\Z)"  # a block comment
    r"|(;)"  # the end of a statement
    r"|\s+"
    r"|[^'\"$;\s/-]+|.",
    re.S,
)


def more_than_one_statement(sql: str) -> bool:
    """True when anything but blanks and comments follows a ``;`` outside quotes."""
    ended = False
    for match in _TOKEN.finditer(sql):
        token = match.group(0)
        if match.group(2):
            ended = True
        elif ended and not (token.isspace() or token.startswith(("--", "/*"))):
            return True
    return False


def _execute(
    conn: Connection, sql: str, params: dict[str, Any] | None, options: dict[str, Any]
) -> CursorResult[Any]:
    if params is None:
        return conn.exec_driver_sql(sql, execution_options={**options, "no_parameters": True})
    return conn.execute(text(sql), params, execution_options=options)


def _sqlite_stream(
    conn: Connection, sql: str, params: dict[str, Any] | None
) -> tuple[list[str], Iterator[Row]]:
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    cursor = raw.cursor()
    try:
        cursor.execute(sql) if params is None else cursor.execute(sql, params)
    except sqlite3.Error as exc:
        cursor.close()
        raise UsageError(explain(exc, conn)) from None
    if cursor.description is None:
        cursor.close()
        return [], iter(())

    def rows() -> Iterator[Row]:
        try:
            while batch := cursor.fetchmany(BATCH_ROWS):
                yield from batch
        except sqlite3.Error as exc:
            raise UsageError(explain(exc, conn)) from None
        finally:
            with contextlib.suppress(sqlite3.Error):  # closed already (reader went away)
                cursor.close()

    return [d[0] for d in cursor.description], rows()


def positive_int(value: str) -> int:
    """argparse type: a whole number above zero."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {value!r}")
    return n


# --------------------------------------------------------------------------- output

_QUERY = re.compile(
    r"\A(?:\s+|--[^\n]*\n?|/\*.*?\*/|\()*(?:select|with|values|table)\b", re.I | re.S
)
"""Statements that return rows and may run in a server-side cursor."""

_PLAIN = frozenset({str, int, float, type(None)})


def text_value(value: Any) -> Any:
    """A value for a table or CSV field: bytes as hex, timestamps as ISO 8601."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def json_value(value: Any) -> Any:
    """A value for JSON: numbers stay numbers, bytes are base64, NaN and infinities null."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def write(
    fmt: str,
    columns: Sequence[str],
    rows: Iterable[Row],
    out: IO[str],
    *,
    convert: dict[str, Callable[[Any], Any]] | None = None,
) -> int:
    """Write ``rows`` as ``fmt`` (table, csv or jsonl); return how many rows were written.
    ``convert`` maps column names to a function applied to that column's values first."""
    rows = _converted(columns, rows, convert or {})
    if fmt == "jsonl":
        return write_jsonl(columns, rows, safe_sink(out))
    n = 0
    if fmt == "csv":
        w = csv.writer(safe_sink(out), lineterminator="\n")  # writes None as an empty field
        w.writerow(columns)
        for n, row in enumerate(rows, 1):  # noqa: B007 - n is the count
            w.writerow([v if type(v) in _PLAIN else text_value(v) for v in row])
        return n

    def counted() -> Iterator[list[Any]]:
        nonlocal n
        for n, row in enumerate(rows, 1):  # noqa: B007 - n is the count
            yield [v if type(v) in _PLAIN else text_value(v) for v in row]

    write_table(columns, counted(), out)
    return n


def write_jsonl(columns: Sequence[str], rows: Iterable[Row], out: TextSink) -> int:
    """One JSON object per row, keys in column order; returns how many."""
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_json_default).encode
    n = 0
    for n, row in enumerate(rows, 1):  # noqa: B007 - n is the count
        try:
            line = encode(dict(zip(columns, row, strict=True)))
        except ValueError:  # an infinite float (SQLite stores 1e999): null, as JSON has none
            line = encode({c: json_value(v) for c, v in zip(columns, row, strict=True)})
        out.write(line)
        out.write("\n")
    return n


def _json_default(value: Any) -> Any:
    converted = json_value(value)
    return str(value) if converted is value else converted  # intervals, ranges...: as text


def _converted(
    columns: Sequence[str], rows: Iterable[Row], convert: dict[str, Callable[[Any], Any]]
) -> Iterable[Row]:
    if not convert:
        return rows
    funcs = [convert.get(c) for c in columns]
    return ([v if f is None else f(v) for f, v in zip(funcs, row, strict=True)] for row in rows)


@contextlib.contextmanager
def output_closed_ok() -> Iterator[None]:
    """``crawler query ... | head``: when the reader goes away, stop quietly (exit status 0),
    like other command-line tools, instead of a BrokenPipeError."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that flush is silent.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def section(title: str, columns: Sequence[str], rows: Iterable[Row], out: IO[str]) -> None:
    """A heading line (``# title``), the rows as a table, and a blank line."""
    out.write(f"# {title}\n")
    write("table", columns, rows, out)
    out.write("\n")
