"""``crawler export --table T -o FILE``: a whole table or view as JSON lines or CSV, streamed.

Rows are read ``BATCH_ROWS`` at a time and written as they come, so a million rows take the
memory of a thousand. The table name is checked against the database's real tables and views
(and quoted); ``--where`` is a SQL condition that runs in the read-only connection, so it can
filter but never write. The file is written next to its final name and renamed into place when
complete: a failed export leaves no half file, and never replaces the database itself.

Values: numbers stay numbers in JSON lines; columns declared JSON (``fetches.data``,
``bodies.headers``, ``crawls.settings``) are embedded as JSON in JSON lines and kept as their
text in CSV; binary columns (``bodies.body``) are base64 in JSON lines and hex in CSV; NULL is
``null`` in JSON lines and an empty field in CSV.

Must not: write anywhere but the chosen file (or stdout), or hold the rows in memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from textwrap import fill
from typing import IO, Any

from sqlalchemy import JSON, Connection, inspect

from crawler.errors import UsageError
from crawler.store.db import is_sqlite
from crawler.tools import TOOLS
from crawler.tools.query import guard, output_closed_ok, stream, write
from crawler.tools.readonly import connect, sqlite_path

NAME = "export"

EPILOG = """\
examples:
  python -m crawler export --table pages --format jsonl -o pages.jsonl
  python -m crawler export --db crawl.db --table pages -o pages.csv          (format from .csv)
  python -m crawler export --table errors --where "final and kind = 'http_status'" -o -
  python -m crawler export --table links --format csv --dir exports -o links.csv

-o FILE is a path (relative to the current directory); -o - writes to stdout. With --dir DIR
the name given to -o is joined to DIR and must stay inside it: '../x' or an absolute path is
refused. The file appears only when the export is complete. Any table or view may be
exported (pages, urls, fetches, links, errors, crawls, hosts, bodies); see docs/schema.md.
"""

FORMATS = ("jsonl", "csv")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help=TOOLS[NAME],
        description=fill(
            "Write every row of a table or view (optionally filtered) as JSON lines or "
            "CSV with a header, streamed in constant memory.",
            width=90,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--table", required=True, metavar="NAME", help="a table or view, e.g. pages")
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="jsonl or csv [from the -o file's suffix; jsonl for stdout]",
    )
    p.add_argument(
        "--where",
        metavar="CONDITION",
        help='a SQL condition on the rows, e.g. "status_code >= 400"',
    )
    p.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="the file to write; - for stdout [-]"
    )
    p.add_argument(
        "--dir", type=Path, metavar="DIR", help="write -o's name inside DIR, never outside it"
    )
    return p


def run(args: argparse.Namespace, db: str) -> int:
    target = output_path(args.output, args.dir)
    fmt = args.format or _format_from_suffix(target)
    if target is not None:
        _refuse_database(target, db)
    with connect(db) as conn, output_closed_ok():
        guard(conn)
        table = _check_table(conn, args.table)
        quoted = conn.dialect.identifier_preparer.quote(table)
        sql = f"SELECT * FROM {quoted}"
        if args.where and args.where.strip():
            sql += f" WHERE ({args.where})"
        columns, rows = stream(conn, sql)
        convert: dict[str, Callable[[Any], Any]] = {}
        if fmt == "jsonl":
            convert = dict.fromkeys(_json_columns(conn, table), _parse_json)
        with _open(target) as out:
            count = write(fmt, columns, rows, out, convert=convert)
    if target is not None and not args.quiet:
        sys.stderr.write(f"exported {count} rows of {table} to {target}\n")
    return 0


def output_path(name: str, directory: Path | None) -> Path | None:
    """Where ``-o NAME`` (with ``--dir DIRECTORY``) writes; None for stdout.

    With a directory, the name must be relative and, resolved (``..`` and symlinks followed),
    stay inside the directory: a file name from elsewhere cannot escape the chosen place."""
    if name == "-":
        if directory is not None:
            raise UsageError("export: --dir needs a file name for -o, not -")
        return None
    if not name.strip():
        raise UsageError("export: -o needs a file name (or - for stdout)")
    if directory is None:
        path = Path(name).expanduser()
    else:
        if not directory.is_dir():
            raise UsageError(f"export: --dir '{directory}' is not a directory")
        if Path(name).is_absolute():
            raise UsageError(f"export: '{name}' is an absolute path; with --dir give a name")
        root = directory.resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root) or path == root:
            raise UsageError(f"export: '{name}' would be written outside '{directory}'")
    if path.is_dir():
        raise UsageError(f"export: '{path}' is a directory")
    if not path.parent.is_dir():
        raise UsageError(f"export: no such directory '{path.parent}'")
    return path


def _format_from_suffix(target: Path | None) -> str:
    if target is not None and target.suffix.lower() == ".csv":
        return "csv"
    return "jsonl"


def _refuse_database(target: Path, db: str) -> None:
    if not is_sqlite(db):
        return
    database = sqlite_path(db).resolve()
    names = {
        database,
        *(database.with_name(database.name + s) for s in ("-wal", "-shm", "-journal")),
    }
    if target.resolve() in names:
        raise UsageError(f"export: refusing to overwrite the database '{target}'")


def _check_table(conn: Connection, name: str) -> str:
    """``name`` if it is a table or view of this database; a UsageError listing them if not."""
    inspector = inspect(conn)
    tables = set(inspector.get_table_names()) | set(inspector.get_view_names())
    if name in tables:
        return name
    shown = sorted(t for t in tables if not t.startswith(("fetches_fts", "alembic_")))
    raise UsageError(f"export: no table or view '{name}'; choose one of: {', '.join(shown)}")


def _json_columns(conn: Connection, table: str) -> list[str]:
    return [c["name"] for c in inspect(conn).get_columns(table) if isinstance(c["type"], JSON)]


def _parse_json(value: Any) -> Any:
    """A JSON column's stored text as JSON (on SQLite it is text); left as is if not JSON."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@contextlib.contextmanager
def _open(target: Path | None) -> Iterator[IO[str]]:
    """stdout, or a temporary file beside ``target`` renamed onto it when all went well."""
    if target is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would make it, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            yield out
        Path(tmp).replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
