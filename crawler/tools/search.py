"""``crawler search "query"``: full-text search over the text of the pages, best match first.

On SQLite it asks the FTS5 index ``fetches_fts`` (title and text of every fetch, rowid =
``fetches.id``; filled by the writer when the crawl ran with ``[store] keep_text = true``),
ranks by ``bm25`` and prints each matching URL once (its latest fetch that has text) with its
title and a snippet, the matched words in [brackets]. The query is FTS5 syntax: words (all must
match), "a phrase", OR, NOT, prefix*, NEAR(a b). On PostgreSQL, which has no FTS5 index here,
it falls back to a case-insensitive substring match (ILIKE) over ``fetches.text``, unranked
(newest first), with the snippet cut around the first match.

Must not: build or change the index (the writer keeps it), or read every row into memory.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from textwrap import fill
from typing import Any

from sqlalchemy import Connection

from crawler.errors import UsageError
from crawler.store.db import masked
from crawler.tools import TOOLS
from crawler.tools.query import (
    guard,
    output_closed_ok,
    positive_int,
    stream,
    write,
)
from crawler.tools.readonly import connect

NAME = "search"

EPILOG = """\
examples:
  python -m crawler search lantern
  python -m crawler search --db crawl.db '"opening hours" OR timetable' --limit 50
  python -m crawler search 'price* NOT archive' | cut -f1

The query is SQLite FTS5 syntax: all words must match; "a phrase"; OR, AND, NOT (upper case);
prefix*; NEAR(word1 word2). Quote words with punctuation: '"e-mail"'. Needs a crawl run with
[store] keep_text = true. On PostgreSQL: a plain substring match (ILIKE), newest first.
"""

SQLITE_SEARCH = """
SELECT u.url, f.title,
       snippet(fetches_fts, 1, '[', ']', '…', 12) AS snippet
FROM fetches_fts
JOIN fetches AS f ON f.id = fetches_fts.rowid
JOIN urls AS u ON u.id = f.url_id
WHERE fetches_fts MATCH :query
  AND f.id = (SELECT max(f2.id) FROM fetches AS f2
              WHERE f2.url_id = f.url_id AND f2.text IS NOT NULL)
ORDER BY bm25(fetches_fts), u.url
LIMIT :limit
"""

# PostgreSQL: no FTS5; the latest fetch with text per URL, whose text or title contains it.
ILIKE_SEARCH = """
SELECT u.url, f.title, f.text
FROM fetches AS f
JOIN urls AS u ON u.id = f.url_id
WHERE f.id = (SELECT max(f2.id) FROM fetches AS f2
              WHERE f2.url_id = f.url_id AND f2.text IS NOT NULL)
  AND (f.text ILIKE :pattern ESCAPE '\\' OR f.title ILIKE :pattern ESCAPE '\\')
ORDER BY f.id DESC
LIMIT :limit
"""

SNIPPET_CHARS = 80
NO_TEXT = (
    "no page text in '{db}' to search: crawl with [store] keep_text = true "
    "(in settings.toml, or CRAWLER_STORE_KEEP_TEXT=true)"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help=TOOLS[NAME],
        description=fill(
            "Search the text of the crawled pages (SQLite FTS5) and print the matching "
            "URLs with their titles and a snippet, best match first, one row per URL.",
            width=90,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("query", metavar="QUERY", help='words, "a phrase", OR, NOT, prefix*')
    p.add_argument(
        "--limit", type=positive_int, default=20, metavar="N", help="at most N URLs [20]"
    )
    return p


def run(args: argparse.Namespace, db: str) -> int:
    if not args.query.strip():
        raise UsageError("search: empty query")
    with connect(db) as conn, output_closed_ok():
        guard(conn)
        if conn.dialect.name == "sqlite":
            columns, rows = _fts(conn, db, args.query, args.limit)
        else:
            columns, rows = _ilike(conn, db, args.query, args.limit)
        first = next(rows, None)
        if first is None:
            sys.stderr.write(f"no pages match {args.query!r}\n")
            return 0
        write("table", columns, _chain(first, rows), sys.stdout)
    return 0


def _fts(conn: Connection, db: str, query: str, limit: int) -> tuple[list[str], Iterator[Any]]:
    if not _has_text(conn, fts=True):
        raise UsageError(NO_TEXT.format(db=masked(db)))
    try:
        columns, rows = stream(conn, SQLITE_SEARCH, {"query": query, "limit": limit})
        first = next(rows, None)
    except UsageError as exc:
        raise UsageError(_bad_query(str(exc), query)) from None
    one_line = (_flat(r) for r in _chain(first, rows)) if first is not None else iter(())
    return columns, one_line


def _ilike(conn: Connection, db: str, query: str, limit: int) -> tuple[list[str], Iterator[Any]]:
    if not _has_text(conn, fts=False):
        raise UsageError(NO_TEXT.format(db=masked(db)))
    escaped = re.sub(r"([\\%_])", r"\\\1", query.strip())
    _, rows = stream(conn, ILIKE_SEARCH, {"pattern": f"%{escaped}%", "limit": limit})
    found = ((url, title, snippet_around(text or "", query.strip())) for url, title, text in rows)
    return ["url", "title", "snippet"], found


def _has_text(conn: Connection, *, fts: bool) -> bool:
    if fts:
        _, tables = stream(
            conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'fetches_fts'"
        )
        if next(tables, None) is None:
            return False
    _, rows = stream(conn, "SELECT 1 FROM fetches WHERE text IS NOT NULL LIMIT 1")
    return next(rows, None) is not None


def _bad_query(message: str, query: str) -> str:
    reason = message.removeprefix("query failed: ")
    if any(w in reason for w in ("fts5", "syntax", "no such column", "unterminated", "unknown")):
        return (
            f"search: not a valid FTS5 query {query!r} ({reason}); quote words with "
            "punctuation, e.g. '\"e-mail\"', and write OR, AND, NOT in capitals"
        )
    return f"search: {reason}"


def snippet_around(text: str, needle: str, width: int = SNIPPET_CHARS) -> str:
    """About ``width`` characters of ``text`` around the first case-insensitive ``needle``,
    which is put in [brackets], with '…' where the text was cut."""
    at = text.lower().find(needle.lower())
    if at < 0:
        return text[:width] + ("…" if len(text) > width else "")
    start = max(0, at - width // 2)
    end = min(len(text), at + len(needle) + width // 2)
    middle = f"{text[start:at]}[{text[at : at + len(needle)]}]{text[at + len(needle) : end]}"
    return ("…" if start else "") + middle + ("…" if end < len(text) else "")


def _flat(row: Sequence[Any]) -> list[Any]:
    """One line per result: whitespace runs in title and snippet become one space."""
    return [" ".join(v.split()) if isinstance(v, str) else v for v in row]


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
