"""The writer's pre-compiled statements store exactly what the Core statements stored.

``crawler.store.results`` runs its hot statements as SQL strings compiled once, with values
converted by ``crawler.store.rawsql`` instead of SQLAlchemy's type processors. Each test here
runs the same work through that code and through ``tests/store/sql_core_reference.py`` (the Core
implementation it replaced) on two fresh databases, and compares every table: on SQLite value and
storage type of every column (what ``sqlite3`` users read), on PostgreSQL every value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, bindparam, create_engine, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from crawler.errors import ErrorKind
from crawler.records import (
    ErrorRecord,
    FetchResult,
    FetchTask,
    NewLink,
    PageResult,
    ParsedPage,
    Plan,
    RobotsRecord,
    URLState,
)
from crawler.store import claims, discovered, rawsql, results
from crawler.store.common import hosts_t, urls_t
from crawler.store.db import open_database
from crawler.store.hosts import HostCache
from crawler.store.results import _INSERT_ERRORS
from crawler.store.runs import start_crawl
from crawler.urls import host_key
from models.base import UTCDateTime
from tests.store import sql_core_reference as core
from tests.store.test_db import PG_URL

pytestmark = pytest.mark.timeout(60)

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
PLUS2 = dt.timezone(dt.timedelta(hours=2))
RAW = ModuleType("raw")
"""The statements under test, gathered from the ``crawler.store`` modules that define them."""
RAW.__dict__.update(
    add_seeds=discovered.add_seeds,
    insert_urls=discovered.insert_urls,
    url_ids=discovered.url_ids,
    claim=claims.claim,
    store_results=results.store_results,
)
TABLES = ("crawls", "hosts", "urls", "fetches", "links", "errors", "bodies")
URL_IDS = {
    "urls": {"id", "discovered_from"},
    "fetches": {"url_id"},
    "links": {"src_url_id", "dst_url_id"},
    "errors": {"url_id"},
}
"""The columns of each table that hold a ``urls.id``."""


# --------------------------------------------------------------------------- databases


@contextlib.contextmanager
def _pg_schemas(n: int) -> Iterator[list[str]]:
    """``n`` fresh PostgreSQL schemas, dropped afterwards; skipped when the server is down."""
    try:
        admin = create_engine(PG_URL, poolclass=NullPool, connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except (OperationalError, ModuleNotFoundError) as exc:
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {str(exc).splitlines()[0]}")
    schemas = [f"t_{uuid.uuid4().hex[:16]}" for _ in range(n)]
    with admin.begin() as conn:
        for schema in schemas:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield [f"{PG_URL}?options=-csearch_path%3D{s}" for s in schemas]
    finally:
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two migrated, empty databases of one backend: the Core path's, and the raw path's."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            dbs = [str(tmp_path / "core.db"), str(tmp_path / "raw.db")]
        else:
            dbs = stack.enter_context(_pg_schemas(2))
        core_engine, raw_engine = (open_database(db) for db in dbs)
        yield core_engine, raw_engine
        core_engine.dispose()
        raw_engine.dispose()


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in storage order; on SQLite with each value's storage type
    (an INTEGER 1 and a REAL 1.0 or a TEXT '1' differ), as a ``sqlite3`` user reads them.

    On PostgreSQL a URL id stands as its URL: an ``INSERT ... ON CONFLICT DO NOTHING`` takes
    a value from the sequence even when the row exists, and the Core path tried to insert
    every link target while the raw path inserts only unknown ones, so its ids have fewer
    gaps. On SQLite (no sequence) the ids are the same."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    if engine.dialect.name == "sqlite":
        assert engine.url.database is not None
        con = sqlite3.connect(engine.url.database)
        try:
            for table in (*TABLES, "fetches_fts"):
                rows = con.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid").fetchall()
                out[table] = [tuple((type(v).__name__, v) for v in row) for row in rows]
        finally:
            con.close()
        return out
    with engine.connect() as conn:
        url_of: dict[Any, Any] = dict(conn.execute(text("SELECT id, url FROM urls")).all())
        for table in TABLES:
            result = conn.execute(text(f"SELECT * FROM {table}"))
            columns = list(result.keys())
            named = [c in URL_IDS.get(table, ()) for c in columns]
            rows = [
                tuple(url_of.get(v) if by_url else v for v, by_url in zip(row, named, strict=True))
                for row in result
            ]
            out[table] = sorted(rows, key=repr)
    return out


Job = Callable[[Connection, ModuleType, Any], Any]


def run_both(engines: tuple[Engine, Engine], *jobs: Job) -> list[tuple[Any, Any]]:
    """Run each job on both databases (Core reference, then raw), each in its own
    transaction, with its implementation module and host cache; the two answers of each."""
    caches = (core.HostCache(), HostCache())
    answers: list[tuple[Any, Any]] = []
    for job in jobs:
        pair = []
        for engine, impl, hosts in zip(engines, (core, RAW), caches, strict=True):
            with engine.begin() as conn:
                pair.append(job(conn, impl, hosts))
        answers.append((pair[0], pair[1]))
    return answers


# --------------------------------------------------------------------------- results


def fetch(
    task: FetchTask,
    *,
    at: dt.datetime = T0,
    status: int = 200,
    not_modified: bool = False,
    body: bytes | None = b"<p>hi</p>",
) -> FetchResult:
    return FetchResult(
        url=task.url,
        final_url="http://user:pw@a.test/" + task.url.rsplit("/", 1)[1],
        status_code=status,
        fetched_at=at,
        elapsed_ms=12,
        redirects=1,
        content_type="text/html",
        content_length=len(body) if body is not None else 4321,
        body=body,
        etag='"v1"',
        last_modified="Thu, 01 Jan 2026 00:00:00 GMT",
        not_modified=not_modified,
        reason="OK",
        headers=(("Content-Type", "text/html"),),
    )


def parsed(*, data: dict[str, Any] | None = None, text_: str | None = None) -> ParsedPage:
    return ParsedPage(
        title="Tïtle",
        links=(),
        canonical_url="http://a.test/canonical",
        noindex=True,
        content_hash="ab" * 32,
        text=text_,
        data=data,
    )


def link(url: str, *, follow: bool = True, nofollow: bool = False) -> NewLink:
    return NewLink(url=url, host=host_key(url), nofollow=nofollow, follow=follow)


def first_batch(tasks: dict[str, FetchTask], *, keep_text: bool) -> list[PageResult]:
    """A page with links (followed, excluded, nofollow, repeated), a robots.txt and a
    redirect; a 404 that is gone; a URL given back (robots.txt unreachable)."""
    a, b, c = tasks["http://a.test/"], tasks["http://b.test/"], tasks["http://a.test/c"]
    plan = Plan(next_fetch_at=T0 + dt.timedelta(days=1, microseconds=7), interval=86400.0,
                failures=0, not_found=0)  # fmt: skip
    data = {"price": [1, 2.5, "é"], "none": None}
    page_a = PageResult(
        a,
        URLState.DONE,
        fetch=fetch(a, at=dt.datetime(2026, 1, 1, 14, 0, 1, tzinfo=PLUS2)),
        parsed=parsed(data=data, text_="hello world" if keep_text else None),
        links=(
            link("http://a.test/1"),
            link("http://a.test/2", nofollow=True),
            link("http://x.test/out", follow=False),
            link("http://a.test/1"),
            link("http://b.test/"),
        ),
        changed=True,
        plan=plan,
        robots=RobotsRecord(
            host_id=a.host_id,
            body="User-agent: *\nDisallow: /private",
            fetched_at=T0,
            crawl_delay=1.5,
            sitemaps=("http://a.test/sitemap.xml",),
        ),
    )  # fmt: skip
    gone = Plan(next_fetch_at=None, interval=3600.0, failures=1, not_found=3, gone=True)
    page_b = PageResult(
        b,
        URLState.FAILED,
        fetch=fetch(b, status=404, body=None),
        errors=(ErrorRecord(ErrorKind.HTTP_STATUS, "404 Not Found", 1, True, T0, 404),),
        plan=gone,
    )
    redirected = PageResult(
        c,
        URLState.DONE,
        fetch=fetch(c),
        parsed=parsed(),
        links=(link("http://x.test/out", follow=False),),
        changed=False,
        final_url="http://a.test/final",
    )
    given_back = PageResult(
        tasks["http://c.test/"],
        URLState.QUEUED,
        errors=(ErrorRecord(ErrorKind.ROBOTS, "robots.txt unreachable", 1, False, T0),),
        retry_after_s=60.0,
    )
    return [page_a, page_b, redirected, given_back]


def second_batch(tasks: dict[str, FetchTask], page_a: FetchTask) -> list[PageResult]:
    """An excluded URL found followable; a link seen again; a 304 of a page with links."""
    one = tasks["http://a.test/1"]
    later = T0 + dt.timedelta(hours=1)
    return [
        PageResult(
            one,
            URLState.DONE,
            fetch=fetch(one, at=later),
            parsed=parsed(),
            links=(link("http://x.test/out"), link("http://a.test/2", nofollow=False)),
            changed=True,
        ),
        PageResult(
            page_a,
            URLState.DONE,
            fetch=fetch(page_a, at=later, status=304, not_modified=True, body=None),
            changed=False,
        ),
    ]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("keep", ["nothing", "html_and_text"])
def test_store_results_stores_what_the_core_statements_stored(
    engines: tuple[Engine, Engine], keep: str
) -> None:
    keep_html = keep_text = keep == "html_and_text"
    seeds = [
        ("http://a.test/", "http://a.test:80", "page"),
        ("http://b.test/", "http://b.test:80", "page"),
        ("http://a.test/c", "http://a.test:80", "page"),
        ("http://c.test/", "http://c.test:80", "page"),
        ("http://a.test/sitemap.xml", "http://a.test:80", "sitemap"),
    ]
    lease = T0 + dt.timedelta(minutes=5)

    def start(conn: Connection, impl: ModuleType, hosts: Any) -> int:
        impl.add_seeds(conn, seeds, T0, hosts)
        return start_crawl(conn, seed_file="seeds.txt", settings={"a": [1]}, now=T0)

    def claim(conn: Connection, impl: ModuleType, hosts: Any) -> list[FetchTask]:
        tasks: list[FetchTask] = impl.claim(conn, 50, (), lease, per_host=8)
        return tasks

    def store(batch: list[PageResult], now: dt.datetime) -> Job:
        def job(conn: Connection, impl: ModuleType, hosts: Any) -> None:
            impl.store_results(conn, crawl_id, batch, now, hosts, keep_html=keep_html)

        return job

    [(crawl_id, raw_crawl_id), (claimed, raw_claimed)] = run_both(engines, start, claim)
    assert (crawl_id, claimed) == (raw_crawl_id, raw_claimed)
    tasks = {t.url: t for t in claimed}
    run_both(engines, store(first_batch(tasks, keep_text=keep_text), T0))
    [(claimed2, raw_claimed2)] = run_both(engines, claim)
    assert claimed2 == raw_claimed2
    assert "http://a.test/1" in {t.url for t in claimed2}
    tasks2 = {t.url: t for t in claimed2}
    run_both(engines, store(second_batch(tasks2, tasks["http://a.test/"]), T0 + dt.timedelta(1)))

    reference, raw = (dump(e) for e in engines)
    assert reference == raw
    assert len(raw["links"]) == 7
    assert len(raw["errors"]) == 2
    assert len(raw["bodies"]) == (3 if keep_html else 0)


def test_claims_hand_out_what_the_core_claim_handed_out(
    engines: tuple[Engine, Engine],
) -> None:
    """Hand-out order, the per-host cap, the limit and excluded hosts; the leases stored."""
    urls = [
        (f"http://h{h}.test/{i}", depth, priority)
        for h in range(4)
        for i, (depth, priority) in enumerate([(2, 0), (0, 0), (1, 3), (0, 0), (5, 1), (0, 0)])
    ]

    def seed(conn: Connection, impl: ModuleType, hosts: Any) -> None:
        ids = hosts.ids(conn, {host_key(u) for u, _, _ in urls})
        impl.insert_urls(
            conn,
            [
                {
                    "url": u,
                    "host_id": ids[host_key(u)],
                    "depth": d,
                    "discovered_from": None,
                    "state": "queued",
                    "first_seen_at": T0,
                }
                for u, d, _ in urls
            ],
        )
        for u, _, p in urls:
            conn.execute(update(urls_t).where(urls_t.c.url == u).values(priority=p))

    def claim(limit: int, exclude: tuple[int, ...], per_host: int) -> Job:
        lease = dt.datetime(2026, 1, 1, 13, 0, tzinfo=PLUS2) + dt.timedelta(minutes=limit)

        def job(conn: Connection, impl: ModuleType, hosts: Any) -> list[FetchTask]:
            tasks: list[FetchTask] = impl.claim(conn, limit, exclude, lease, per_host=per_host)
            return tasks

        return job

    answers = run_both(
        engines,
        seed,
        claim(3, (), 2),
        claim(5, (1,), 2),
        claim(4, (1, 3), 1),
        claim(100, (), 8),
        claim(100, (), 8),
    )
    for reference, raw in answers:
        assert reference == raw
    handed_out = [len(raw) for _, raw in answers[1:]]
    assert handed_out == [3, 5, 2, 14, 0]
    assert dump(engines[0]) == dump(engines[1])


def test_seeds_and_url_ids_match_the_core_path(engines: tuple[Engine, Engine]) -> None:
    seeds = [(f"http://s{i % 3}.test/{i}", f"http://s{i % 3}.test:80", "page") for i in range(7)]

    def job(conn: Connection, impl: ModuleType, hosts: Any) -> dict[str, int]:
        impl.add_seeds(conn, seeds, T0, hosts)
        impl.add_seeds(conn, seeds[:2], T0 + dt.timedelta(1), hosts)  # known: left alone
        ids: dict[str, int] = impl.url_ids(conn, [u for u, _, _ in seeds] + ["http://no.test/"])
        return ids

    [(reference, raw)] = run_both(engines, job)
    assert reference == raw
    assert len(raw) == 7
    assert dump(engines[0]) == dump(engines[1])


# --------------------------------------------------------------------------- conversions

STAMPS = [
    T0,
    dt.datetime(2026, 3, 29, 1, 30, tzinfo=PLUS2),  # the day before in UTC
    dt.datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
    None,
]


@pytest.mark.parametrize("value", STAMPS)
def test_sqlite_timestamps_are_the_text_sqlalchemy_writes(value: dt.datetime | None) -> None:
    dialect = sqlite.dialect()
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    assert rawsql.sqlite_timestamp(value) == process(value)


@pytest.mark.parametrize("value", STAMPS)
def test_postgresql_timestamps_are_what_sqlalchemy_binds(value: dt.datetime | None) -> None:
    dialect = PGDialect_psycopg()  # type: ignore[no-untyped-call]
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    expected = process(value)
    assert rawsql.utc_timestamp(value) == expected
    if value is not None:
        assert rawsql.utc_timestamp(value).tzinfo is dt.UTC  # type: ignore[union-attr]


@pytest.mark.parametrize("convert", [rawsql.sqlite_timestamp, rawsql.utc_timestamp])
def test_naive_timestamps_are_refused(convert: Callable[[dt.datetime], Any]) -> None:
    with pytest.raises(ValueError, match="naive"):
        convert(dt.datetime(2026, 6, 1, 14, 30))


# --------------------------------------------------------------------------- Statement


def test_a_field_the_statement_does_not_use_is_an_error() -> None:
    stmt = rawsql.Statement(lambda _d: hosts_t.insert(), ["host", "hots"])
    with pytest.raises(ValueError, match="hots"):
        stmt.sql(sqlite.dialect())


def test_a_bind_without_a_value_must_be_a_field() -> None:
    stmt = rawsql.Statement(lambda _d: update(hosts_t).values(crawl_delay=bindparam("b_delay")), [])
    with pytest.raises(ValueError, match="b_delay"):
        stmt.sql(sqlite.dialect())


def test_in_lists_are_expanded_and_never_empty(tmp_path: Path) -> None:
    engine = open_database(str(tmp_path / "in.db"))
    stmt = rawsql.Statement(
        lambda _d: select(hosts_t.c.host).where(
            hosts_t.c.id.in_(bindparam("b_ids", expanding=True))
        ),
        ["b_ids"],
    )
    try:
        with engine.begin() as conn:
            HostCache().ids(conn, ["http://a.test:80", "http://b.test:80"])
            assert stmt.execute(conn, ([1, 2, 99],)).scalars().all() == [
                "http://a.test:80",
                "http://b.test:80",
            ]
            with pytest.raises(ValueError, match="empty IN list"):
                stmt.execute(conn, ([],))
            with pytest.raises(TypeError):
                stmt.executemany(conn, [([1],)])
    finally:
        engine.dispose()


def test_driver_errors_are_sqlalchemy_errors(tmp_path: Path) -> None:
    """The raw path raises what the Core path raised: the writer reports ``exc.orig``."""
    engine = open_database(str(tmp_path / "err.db"))
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _INSERT_ERRORS.executemany(
                conn, [(999, 999, "2026-01-01 00:00:00.000000", 1, "dns", None, "x", True)]
            )
    finally:
        engine.dispose()
