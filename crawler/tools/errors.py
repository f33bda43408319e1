"""``crawler errors``: what failed, and which pages link to each broken URL.

One row per failed URL (its latest final error: kind, status, attempts, message) and then, for
each, the pages that link to it, from ``links``: the question a site owner asks first. A URL
that failed in one run and was fetched successfully by a later run (a recrawl) is not broken
any more and is left out. ``--all`` also shows URLs whose latest error was retried (``final``
false), and does not leave out later successes: the history of trouble, not just the damage.

Must not: change the meaning of ``errors`` rows (docs/schema.md is the reference).
"""

from __future__ import annotations

import argparse
import sys
from textwrap import fill
from typing import Any

from sqlalchemy import Connection

from crawler.errors import UsageError
from crawler.tools import TOOLS
from crawler.tools.query import guard, output_closed_ok, section, stream
from crawler.tools.readonly import connect
from models.tables import ERROR_KINDS

NAME = "errors"

EPILOG = """\
examples:
  python -m crawler errors
  python -m crawler errors --kind http_status --host example.com
  python -m crawler errors --db crawl.db --all | grep timeout

Two sections: '# failures', one row per URL that failed for good (its last error), and
'# pages linking to them', one row per (broken URL, page with a link to it). --host takes a
host name (example.com), host:port, or an origin as stored in hosts (https://example.com:443).
"""

# The latest error per URL (the latest *final* one, unless --all), as a reusable CTE.
FAILURES = """
WITH failure AS (
    SELECT e.url_id, e.crawl_id, e.kind, e.status_code, e.attempt, e.message, e.final, e.at
    FROM errors AS e
    WHERE e.id = (SELECT max(e2.id) FROM errors AS e2
                  WHERE e2.url_id = e.url_id {final_only})
      {still_broken}
      {kind}
)
"""
FINAL_ONLY = "AND e2.final"
STILL_BROKEN = """AND NOT EXISTS (SELECT 1 FROM fetches AS f
                      WHERE f.url_id = e.url_id AND f.crawl_id > e.crawl_id
                        AND f.status_code < 400)"""

LIST = """
SELECT u.url, f.kind, f.status_code AS status, f.attempt AS attempts, f.message,
       (SELECT count(*) FROM links AS l WHERE l.dst_url_id = u.id) AS referrers{final_column}
FROM failure AS f JOIN urls AS u ON u.id = f.url_id
{host}
ORDER BY u.url
"""
REFERRERS = """
SELECT u.url AS broken_url, src.url AS linked_from, l.nofollow
FROM failure AS f
JOIN urls AS u ON u.id = f.url_id
JOIN links AS l ON l.dst_url_id = u.id
JOIN urls AS src ON src.id = l.src_url_id
{host}
ORDER BY u.url, src.url
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help=TOOLS[NAME],
        description=fill(
            "List the URLs that failed (one row each: kind, status, attempts, the "
            "final message) and the pages that link to every one of them.",
            width=90,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--kind",
        choices=ERROR_KINDS,
        metavar="KIND",
        help="only this error kind: " + ", ".join(ERROR_KINDS),
    )
    p.add_argument("--host", metavar="HOST", help="only URLs on this host")
    p.add_argument(
        "--all",
        action="store_true",
        help="also URLs whose errors were retried, and failures fixed by a later run",
    )
    return p


def run(args: argparse.Namespace, db: str) -> int:
    params: dict[str, Any] = {}
    with connect(db) as conn, output_closed_ok():
        guard(conn)
        cte = FAILURES.format(
            final_only="" if args.all else FINAL_ONLY,
            still_broken="" if args.all else STILL_BROKEN,
            kind="AND e.kind = :kind" if args.kind else "",
        )
        if args.kind:
            params["kind"] = args.kind
        host = ""
        if args.host:
            ids = ", ".join(str(i) for i in host_ids(conn, args.host))  # ints, from hosts
            host = f"WHERE u.host_id IN ({ids})"
        final_column = ", f.final" if args.all else ""
        failures = cte + LIST.format(host=host, final_column=final_column)
        columns, rows = stream(conn, failures, params)
        listed = list(rows)
        if not listed:
            print("no failures" + _filters(args))
            return 0
        out = sys.stdout
        noun = "URL" if len(listed) == 1 else "URLs"
        section(f"failures: {len(listed)} {noun}{_filters(args)}", columns, listed, out)
        referrers = cte + REFERRERS.format(host=host)
        section("pages linking to them", *stream(conn, referrers, params), out)
    return 0


def host_ids(conn: Connection, wanted: str) -> list[int]:
    """The ids of hosts matching ``wanted``: an origin as stored, a host name, or host:port."""
    want = wanted.strip().lower().rstrip("/")
    found = []
    for host_id, origin in stream(conn, "SELECT id, host FROM hosts")[1]:
        hostport = str(origin).split("://", 1)[-1].lower()
        name = hostport.rsplit(":", 1)[0] if not hostport.endswith("]") else hostport
        if want in (str(origin).lower(), hostport, name):
            found.append(int(host_id))
    if not found:
        raise UsageError(f"errors: no host '{wanted}' in this database")
    return found


def _filters(args: argparse.Namespace) -> str:
    parts = [f"kind {args.kind}" if args.kind else "", f"host {args.host}" if args.host else ""]
    shown = ", ".join(p for p in parts if p)
    return f" ({shown})" if shown else ""
