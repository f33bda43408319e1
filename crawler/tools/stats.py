"""``crawler stats``: the crawl at a glance, one headed table per question.

URLs by state, pages by status code, by host, by content type, errors by kind, the depth
histogram, the slowest and the largest pages, and the runs. "Pages" are the rows of the
``pages`` view: each URL's latest fetch. Portable SQL (SQLite and PostgreSQL).

Must not: compute in Python what one query can answer, or print anything but the report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from textwrap import fill
from typing import Any

from crawler.tools import TOOLS
from crawler.tools.query import (
    guard,
    output_closed_ok,
    positive_int,
    section,
    stream,
)
from crawler.tools.readonly import connect

NAME = "stats"

EPILOG = """\
examples:
  python -m crawler stats
  python -m crawler stats --db crawl.db --top 20
  python -m crawler stats | less -S

Each section starts with a '# heading' line; when piped, its rows are tab-separated and never
cut. Pages are the pages view: the latest fetch of each URL. Errors by kind counts attempts
(every retry) and, separately, URLs that failed for good.
"""

BAR_WIDTH = 40

SECTIONS: tuple[tuple[str, str], ...] = (
    (
        "URLs by state",
        "SELECT state, count(*) AS urls FROM urls GROUP BY state ORDER BY count(*) DESC, state",
    ),
    (
        "pages by status code",
        "SELECT status_code, count(*) AS pages FROM pages"
        " GROUP BY status_code ORDER BY status_code",
    ),
    (
        "pages by host",
        "SELECT host, count(*) AS pages,"
        " sum(CASE WHEN status_code < 400 THEN 1 ELSE 0 END) AS ok,"
        " sum(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END) AS failed,"
        " CAST(avg(elapsed_ms) AS INTEGER) AS avg_ms,"
        " sum(coalesce(content_length, 0)) AS bytes"
        " FROM pages GROUP BY host ORDER BY count(*) DESC, host",
    ),
    (
        "pages by content type",
        "SELECT coalesce(content_type, '(none)') AS content_type, count(*) AS pages"
        " FROM pages GROUP BY coalesce(content_type, '(none)') ORDER BY count(*) DESC, 1",
    ),
    (
        "errors by kind",
        "SELECT kind, count(*) AS attempts,"
        " count(DISTINCT CASE WHEN final THEN url_id END) AS failed_urls"
        " FROM errors GROUP BY kind ORDER BY count(*) DESC, kind",
    ),
)

SLOWEST = "SELECT url, status_code, elapsed_ms FROM pages ORDER BY elapsed_ms DESC, url LIMIT :top"
LARGEST = (
    "SELECT url, content_type, content_length FROM pages WHERE content_length IS NOT NULL"
    " ORDER BY content_length DESC, url LIMIT :top"
)
DEPTHS = "SELECT depth, count(*) AS pages FROM pages GROUP BY depth ORDER BY depth"
RUNS = (
    "SELECT id, command, status, started_at, finished_at, pages_fetched AS pages, errors"
    " FROM crawls ORDER BY id"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help=TOOLS[NAME],
        description=fill(
            "Summarize a crawl database: URLs by state, pages by status code, host and "
            "content type, errors by kind, the depth histogram, the slowest and largest pages, "
            "and the crawl runs.",
            width=90,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--top", type=positive_int, default=10, metavar="N", help="slowest/largest: N [10]"
    )
    return p


def run(args: argparse.Namespace, db: str) -> int:
    out = sys.stdout
    with connect(db) as conn, output_closed_ok():
        guard(conn)
        for title, sql in SECTIONS:
            section(title, *stream(conn, sql), out)
        columns, rows = stream(conn, DEPTHS)
        section("depth histogram", [*columns, "histogram"], _bars(list(rows)), out)
        top = {"top": args.top}
        section(f"slowest pages (top {args.top})", *stream(conn, SLOWEST, top), out)
        section(f"largest pages (top {args.top})", *stream(conn, LARGEST, top), out)
        section("crawl runs", *stream(conn, RUNS), out)
    return 0


def _bars(rows: list[Sequence[Any]]) -> list[list[Any]]:
    """Each (depth, count) row with a bar of '#' scaled to the largest count."""
    most = max((int(r[1]) for r in rows), default=0)
    return [[*r, "#" * max(1, round(BAR_WIDTH * int(r[1]) / most))] for r in rows]
