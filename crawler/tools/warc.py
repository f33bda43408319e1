"""``crawler warc``: the stored responses as a WARC 1.1 file, for replay tools and archives.

Reads the ``bodies`` table (filled by crawls run with ``[store] keep_html = true``) and writes,
with warcio, one ``warcinfo`` record and then one ``response`` record per stored body, in fetch
order: the HTTP status line (code and reason phrase) and headers as received, then the body.

The body is stored *decoded* (gzip/br/deflate already undone, chunked framing gone), so the
headers are fixed to describe the bytes that are written: ``Content-Encoding`` and
``Transfer-Encoding`` are dropped, and ``Content-Length`` is replaced by the decoded length.
``WARC-Target-URI`` is the fetch's ``final_url`` (the URL that answered, after redirects) and
``WARC-Date`` its ``fetched_at``. No ``request`` record is written: the request headers are not
stored, and a record made up afterwards would not be what was sent.

Memory: rows are streamed, and one body is decompressed at a time. The file is written beside
its destination and renamed into place when complete, so a failed export leaves no half file.

Must not: write to the database (it is opened read-only), or hold every body in memory.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Select, func, inspect, select
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

from crawler import __version__
from crawler.errors import UsageError
from crawler.tools import TOOLS
from crawler.tools.readonly import connect
from models import Body, Fetch

NAME = "warc"

DROPPED_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})
"""Response headers that described the bytes on the wire, not the decoded body we write."""

STREAM_ROWS = 16
"""Rows fetched ahead from the database (each holds one compressed body)."""


def register(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        NAME,
        help=TOOLS[NAME],
        description=(
            "Write the responses kept by crawls run with [store] keep_html = true as standard "
            "WARC 1.1 records (warcinfo, then one response record per stored body), readable by "
            "warcio, pywb and other archive tools. Bodies are written decoded, with "
            "Content-Encoding and Transfer-Encoding dropped and a correct Content-Length."
        ),
        epilog=(
            "examples:\n"
            "  python -m crawler warc --db crawl.db -o crawl.warc.gz\n"
            "  python -m crawler warc --db crawl.db --crawl 2 -o run2.warc.gz\n"
            "  warcio index crawl.warc.gz"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-o",
        "--output",
        default="crawl.warc.gz",
        metavar="FILE",
        help="the WARC file; gzipped per record unless it ends in .warc; - for stdout "
        "[crawl.warc.gz]",
    )
    parser.add_argument(
        "--crawl", type=int, metavar="ID", help="only the responses fetched by this run (crawls.id)"
    )
    return parser


def run(args: argparse.Namespace, db: str) -> int:
    output: str = args.output
    if output == "-" and sys.stdout.isatty():
        # Binary records, with bytes from the pages: nothing a terminal should be sent.
        raise UsageError("warc: not writing a WARC file to a terminal: give -o FILE, or pipe it")
    gzipped = not output.endswith(".warc")
    with connect(db) as conn:
        total = _count(conn, args.crawl)
        with _open_output(output) as out:
            written = write_warc(conn, out, crawl_id=args.crawl, gzip=gzipped, filename=output)
    if output != "-" and not args.quiet:
        sys.stderr.write(f"wrote {written} response records of {total} to {output}\n")
    return 0


def _count(conn: Connection, crawl_id: int | None) -> int:
    """How many bodies there are to export; a clear UsageError when there are none."""
    if not inspect(conn).has_table("bodies"):
        raise UsageError(
            "this database has no bodies table (schema older than revision 0004): run "
            "'crawler db upgrade', then crawl with [store] keep_html = true"
        )
    query = select(func.count()).select_from(Body).join(Fetch, Fetch.id == Body.fetch_id)
    if crawl_id is not None:
        query = query.where(Fetch.crawl_id == crawl_id)
    count = int(conn.execute(query).scalar_one())
    if count == 0:
        which = f"crawl {crawl_id}" if crawl_id is not None else "this database"
        raise UsageError(
            f"no stored responses in {which}: bodies are kept only by crawls run with "
            "[store] keep_html = true"
        )
    return count


@contextlib.contextmanager
def _open_output(output: str) -> Iterator[IO[bytes]]:
    """stdout, or a temporary file renamed to ``output`` only when the export succeeded."""
    if output == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    path = Path(output)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            yield f
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _rows(conn: Connection, crawl_id: int | None) -> Select[Any]:
    query = (
        select(
            Body.fetch_id,
            Body.encoding,
            Body.body,
            Body.reason,
            Body.headers,
            Fetch.final_url,
            Fetch.fetched_at,
            Fetch.status_code,
            Fetch.crawl_id,
        )
        .join(Fetch, Fetch.id == Body.fetch_id)
        .order_by(Body.fetch_id)
    )
    if crawl_id is not None:
        query = query.where(Fetch.crawl_id == crawl_id)
    return query


def write_warc(
    conn: Connection,
    out: IO[bytes],
    *,
    crawl_id: int | None = None,
    gzip: bool = True,
    filename: str = "crawl.warc.gz",
) -> int:
    """Write the warcinfo record and one response record per stored body; return the count."""
    writer = WARCWriter(out, gzip=gzip, warc_version="1.1")
    info = {
        "software": f"crawler/{__version__} (warcio)",
        "format": "WARC File Format 1.1",
        "conformsTo": "https://iipc.github.io/warc-specifications/specifications/"
        "warc-format/warc-1.1/",
        "description": "responses stored by crawler ([store] keep_html); bodies decoded, "
        "Content-Encoding and Transfer-Encoding removed, Content-Length recomputed",
        "crawl": str(crawl_id) if crawl_id is not None else "all",
    }
    name = "-" if filename == "-" else Path(filename).name
    writer.write_record(writer.create_warcinfo_record(name, info))
    written = 0
    result = conn.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(
        _rows(conn, crawl_id)
    )
    for row in result:
        body = _decompress(row.encoding, row.body, row.fetch_id)
        status = StatusAndHeaders(
            _status_line(row.status_code, row.reason),
            _fixed_headers(row.headers, len(body)),
            protocol="HTTP/1.1",
        )
        record = writer.create_warc_record(
            row.final_url,
            "response",
            payload=io.BytesIO(body),
            length=len(body),
            http_headers=status,
            warc_headers_dict={"WARC-Date": _warc_date(row.fetched_at)},
        )
        writer.write_record(record)
        written += 1
    return written


def _decompress(encoding: str, data: bytes, fetch_id: int) -> bytes:
    if encoding == "zlib":
        return zlib.decompress(data)
    if encoding in ("", "identity", "none"):
        return bytes(data)
    raise UsageError(
        f"the body of fetch {fetch_id} is stored with encoding '{encoding}', which this version "
        "cannot read"
    )


def _status_line(code: int, reason: str | None) -> str:
    if not reason:
        try:
            reason = HTTPStatus(code).phrase
        except ValueError:
            reason = ""
    return f"{code} {reason}".rstrip()


def _fixed_headers(stored: list[Any] | None, length: int) -> list[tuple[str, str]]:
    """The stored headers without the wire framing ones, plus the decoded Content-Length."""
    headers = [
        (str(name), str(value))
        for name, value in (stored or [])
        if str(name).lower() not in DROPPED_HEADERS
    ]
    headers.append(("Content-Length", str(length)))
    return headers


def _warc_date(when: datetime) -> str:
    """WARC 1.1 date: UTC, with microseconds when there are any."""
    naive = when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when
    return str(datetime_to_iso_date(naive, use_micros=True))
