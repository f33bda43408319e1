"""The statements that change the database, as functions of a ``Connection``.

Only the writer thread runs these (DESIGN §2.5: one writer, batched): the frontier and the
engine hand them to :meth:`crawler.writer.Writer.call`. They are Core statements executed with
``executemany`` — no ORM object per row on the hot path — and they work unchanged on SQLite and
PostgreSQL (``ON CONFLICT`` on both; ``FOR UPDATE SKIP LOCKED`` compiles to nothing on SQLite,
where the single writer already serializes claims). The statements run for every batch and
every claim are :class:`crawler.rawsql.Statement` objects: the Core statement compiled once
per dialect, given tuples of values already in stored form, because SQLAlchemy's per-row work
cost more CPU than the database's.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, case, func, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from crawler import rawsql
from crawler.rawsql import Row, Statement
from crawler.records import (
    Claimed,
    CrawlStatus,
    FetchResult,
    FetchTask,
    PageResult,
    RobotsRecord,
    SitemapChunk,
    URLState,
)
from crawler.urls import host_key, without_userinfo
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

_QUEUED = URLState.QUEUED.value
_EXCLUDED = URLState.EXCLUDED.value


def _insert_for(dialect: Dialect, table: Table) -> Any:
    if dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # ~25 ms to import; SQLite runs need none

        return postgresql.insert(table)
    return sqlite.insert(table)


def _insert(conn: Connection, table: Table) -> Any:
    return _insert_for(conn.dialect, table)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _values(conn: Connection) -> rawsql.Converters:
    """How this connection's driver stores timestamps and JSON (``fetches.data``)."""
    return rawsql.converters(conn.dialect, fetches_t.c.data)


def _in(column: Any, name: str) -> Any:
    """``column IN (...)`` over a list given at execution (the field ``name``)."""
    return column.in_(bindparam(name, expanding=True))


def _any_dialect(build: Callable[[], ClauseElement]) -> Callable[[Dialect], ClauseElement]:
    """A statement that compiles the same on every dialect."""
    return lambda _dialect: build()


_INSERT_HOSTS = Statement(
    lambda d: _insert_for(d, hosts_t).on_conflict_do_nothing(index_elements=["host"]), ["host"]
)
_HOST_IDS = Statement(
    _any_dialect(lambda: select(hosts_t.c.host, hosts_t.c.id).where(_in(hosts_t.c.host, "hosts"))),
    ["hosts"],
)
_HOST_NAMES = Statement(
    _any_dialect(lambda: select(hosts_t.c.id, hosts_t.c.host).where(_in(hosts_t.c.id, "ids"))),
    ["ids"],
)


class HostCache:
    """host key → hosts.id, bounded: hosts seen as link targets can be many."""

    def __init__(self, limit: int = 100_000) -> None:
        self._ids: dict[str, int] = {}
        self._limit = limit

    def ids(self, conn: Connection, hosts: Iterable[str]) -> dict[str, int]:
        wanted = set(hosts)
        # Sorted: concurrent writers (workers sharing PostgreSQL) then insert new keys in the
        # same order, so one waits for the other instead of the two deadlocking.
        missing = sorted(h for h in wanted if h not in self._ids)
        if missing:
            if len(self._ids) + len(missing) > self._limit:
                self._ids.clear()
            _INSERT_HOSTS.executemany(conn, [(h,) for h in missing])
            for chunk in _chunks(missing):
                self._ids.update(_HOST_IDS.execute(conn, (chunk,)).all())
        return {h: self._ids[h] for h in wanted}


URL_FIELDS = ("url", "host_id", "depth", "discovered_from", "state", "first_seen_at", "kind")
"""A new ``urls`` row, as :func:`_store_urls` takes it (``first_seen_at`` in stored form)."""


def _promote_excluded(dialect: Dialect) -> ClauseElement:
    ins = _insert_for(dialect, urls_t)
    stmt: ClauseElement = ins.on_conflict_do_update(
        index_elements=["url"],
        set_={
            "state": ins.excluded.state,
            "depth": ins.excluded.depth,
            "discovered_from": ins.excluded.discovered_from,
        },
        where=and_(urls_t.c.state == URLState.EXCLUDED, ins.excluded.state == URLState.QUEUED),
    )
    return stmt


_INSERT_URLS = Statement(
    lambda d: _insert_for(d, urls_t).on_conflict_do_nothing(index_elements=["url"]), URL_FIELDS
)
_PROMOTE_URLS = Statement(_promote_excluded, URL_FIELDS)
_URL_STATES = Statement(
    _any_dialect(
        lambda: select(urls_t.c.url, urls_t.c.id, urls_t.c.state).where(_in(urls_t.c.url, "urls"))
    ),
    ["urls"],
)


def insert_urls(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert URLs given as ``urls`` columns (``kind`` defaults to ``page``), as
    :func:`_store_urls` does."""
    stamp = _values(conn).timestamp
    _store_urls(
        conn,
        [
            (
                r["url"],
                r["host_id"],
                r["depth"],
                r["discovered_from"],
                r["state"],
                stamp(r["first_seen_at"]),
                r.get("kind", "page"),
            )
            for r in rows
        ],
    )


def _store_urls(conn: Connection, rows: list[Row]) -> dict[str, int]:
    """Insert URLs (:data:`URL_FIELDS` tuples), ignoring known ones — except that a URL known
    only as ``excluded`` (seen out of scope or too deep) becomes ``queued`` when it is now found
    followable. Returns every given URL's id.

    Most link targets are known already, and looking a URL up costs SQLite a fraction of
    trying to insert it, so known URLs are looked up first and only the others inserted, with
    ``DO NOTHING`` for those another worker inserts meanwhile (PostgreSQL). Known URLs are not
    locked: ``ON CONFLICT DO UPDATE`` locks every row it meets, even where its ``WHERE`` is
    false, and a link target another worker is storing as fetched would then make two workers'
    batches wait for each other (a deadlock on PostgreSQL). So new rows are inserted in URL
    order (concurrent inserts of the same new URLs queue up in one order), and only the rows
    still ``excluded`` are upserted again (an upsert keeps the id)."""
    if not rows:
        return {}
    found = _url_states(conn, [r[0] for r in rows])
    new = [r for r in rows if r[0] not in found]
    if new:
        if conn.dialect.name == "postgresql":  # one order for every worker; SQLite has one
            new.sort(key=itemgetter(0))  # writer and keeps discovery order (ids)
        _INSERT_URLS.executemany(conn, new)
        found.update(_url_states(conn, [r[0] for r in new]))
    promote = [r for r in rows if r[4] == _QUEUED and found[r[0]][1] == _EXCLUDED]
    _PROMOTE_URLS.executemany(conn, promote)
    return {url: id_ for url, (id_, _) in found.items()}


def _url_states(conn: Connection, urls: Sequence[str]) -> dict[str, tuple[int, str]]:
    """url → (id, state) of the known ones among ``urls``."""
    out: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(urls):
        rows = _URL_STATES.execute(conn, (chunk,)).all()  # one fetch, not a call per row
        out.update({url: (id_, state) for url, id_, state in rows})
    return out


def url_ids(conn: Connection, urls: Collection[str]) -> dict[str, int]:
    return {url: id_ for url, (id_, _) in _url_states(conn, list(urls)).items()}


def add_seeds(
    conn: Connection, seeds: Sequence[tuple[str, str, str]], now: dt.datetime, hosts: HostCache
) -> None:
    """Queue ``(url, host, kind)`` seeds at depth 0; URLs already known keep their state, so
    running the same crawl again resumes it."""
    host_ids = hosts.ids(conn, {h for _, h, _ in seeds})
    at = _values(conn).timestamp(now)
    _store_urls(
        conn, [(url, host_ids[host], 0, None, _QUEUED, at, kind) for url, host, kind in seeds]
    )


def seed_hosts(conn: Connection) -> frozenset[str]:
    """Hosts of every depth-0 URL: the crawl's scope when ``follow_external`` is off."""
    rows = conn.execute(
        select(hosts_t.c.host)
        .distinct()
        .join(urls_t, urls_t.c.host_id == hosts_t.c.id)
        .where(urls_t.c.depth == 0)
    )
    return frozenset(r[0] for r in rows)


_CLAIMED = (
    urls_t.c.id,
    urls_t.c.url,
    urls_t.c.host_id,
    urls_t.c.depth,
    urls_t.c.priority,
    urls_t.c.etag,
    urls_t.c.last_modified,
    urls_t.c.content_hash,
    urls_t.c.kind,
    urls_t.c.fetch_interval,
    urls_t.c.failures,
    urls_t.c.not_found,
    urls_t.c.changefreq,
)
"""What a claim returns, in the order :func:`_tasks` reads (``claim_shared`` too)."""


def _claim_statement(exclude: bool) -> ClauseElement:
    """Up to ``b_limit`` queued URLs, at most ``b_per_host`` of a host, among the first
    ``b_candidates`` in hand-out order, become ``fetching`` until ``b_lease``."""
    candidates = (
        select(urls_t.c.id, urls_t.c.host_id, urls_t.c.priority, urls_t.c.depth)
        .where(urls_t.c.state == URLState.QUEUED)
        .order_by(urls_t.c.priority.desc(), urls_t.c.depth, urls_t.c.id)
        .limit(bindparam("b_candidates"))
        .with_for_update(skip_locked=True)
    )
    if exclude:
        candidates = candidates.where(
            urls_t.c.host_id.not_in(bindparam("b_exclude", expanding=True))
        )
    cand = candidates.subquery("cand")
    ranked = select(
        cand.c.id,
        func.row_number()
        .over(
            partition_by=cand.c.host_id,
            order_by=(cand.c.priority.desc(), cand.c.depth, cand.c.id),
        )
        .label("rn"),
    ).subquery("ranked")
    pick = (
        select(ranked.c.id)
        .where(ranked.c.rn <= bindparam("b_per_host"))
        .limit(bindparam("b_limit"))
    )
    return (
        update(urls_t)
        .where(urls_t.c.id.in_(pick.scalar_subquery()))
        .values(state=URLState.FETCHING, lease_until=bindparam("b_lease"))
        .returning(*_CLAIMED)
    )


_CLAIM_FIELDS = ("b_candidates", "b_per_host", "b_limit", "b_lease")
_CLAIM = Statement(_any_dialect(lambda: _claim_statement(False)), _CLAIM_FIELDS)
_CLAIM_EXCLUDING = Statement(
    _any_dialect(lambda: _claim_statement(True)), (*_CLAIM_FIELDS, "b_exclude")
)


def claim(
    conn: Connection,
    limit: int,
    exclude_hosts: Collection[int],
    lease_until: dt.datetime,
    *,
    per_host: int = 8,
) -> list[FetchTask]:
    """Mark up to ``limit`` queued URLs ``fetching`` under a lease, in hand-out order, taking at
    most ``per_host`` from any one host so one big host cannot fill the buffer and starve the
    others. Only the first ``4 * limit`` candidates in hand-out order are looked at, so a claim
    costs the same however large the frontier is."""
    params: Row = (4 * limit, per_host, limit, _values(conn).timestamp(lease_until))
    if exclude_hosts:
        result = _CLAIM_EXCLUDING.execute(conn, (*params, list(exclude_hosts)))
    else:
        result = _CLAIM.execute(conn, params)
    return _tasks(conn, result.all())


def _tasks(conn: Connection, rows: Sequence[Any]) -> list[FetchTask]:
    """Claimed rows (:data:`_CLAIMED`) as tasks, in hand-out order (RETURNING promises none)."""
    if not rows:
        return []
    host_names: dict[int, str] = dict(
        _HOST_NAMES.execute(conn, (list({r[2] for r in rows}),)).all()
    )
    rows = sorted(rows, key=lambda r: (-r[4], r[3], r[0]))
    return [
        FetchTask(
            url_id=id_,
            url=url,
            host_id=host_id,
            host=host_names[host_id],
            depth=depth,
            etag=etag,
            last_modified=last_modified,
            content_hash=content_hash,
            kind=kind,
            interval=interval,
            failures=failures,
            not_found=not_found,
            changefreq=changefreq,
        )
        for (
            id_,
            url,
            host_id,
            depth,
            _priority,
            etag,
            last_modified,
            content_hash,
            kind,
            interval,
            failures,
            not_found,
            changefreq,
        ) in rows
    ]


def cached_robots(conn: Connection, hosts: Collection[str]) -> list[tuple[str, str, dt.datetime]]:
    """``(host, robots_txt, robots_fetched_at)`` for the given hosts that have one cached."""
    out: list[tuple[str, str, dt.datetime]] = []
    for chunk in _chunks(list(hosts)):
        rows = conn.execute(
            select(hosts_t.c.host, hosts_t.c.robots_txt, hosts_t.c.robots_fetched_at).where(
                hosts_t.c.host.in_(chunk),
                hosts_t.c.robots_txt.is_not(None),
                hosts_t.c.robots_fetched_at.is_not(None),
            )
        )
        out.extend((h, body, at) for h, body, at in rows)
    return out


def release(conn: Connection, url_ids: Collection[int]) -> None:
    """Give claimed-but-unstarted URLs back to the frontier."""
    ids = list(url_ids)
    for chunk in _chunks(ids):
        conn.execute(
            update(urls_t)
            .where(urls_t.c.id.in_(chunk), urls_t.c.state == URLState.FETCHING)
            .values(state=URLState.QUEUED, lease_until=None)
        )


def recover(conn: Connection, now: dt.datetime, *, all_leases: bool) -> int:
    """Requeue URLs whose claim died with its process; mark dead runs interrupted.

    With SQLite only one process can crawl a database at a time, so every ``fetching`` URL
    belongs to a dead process (``all_leases``); elsewhere only expired leases are taken back.
    """
    cond = urls_t.c.state == URLState.FETCHING
    if not all_leases:
        cond = and_(cond, urls_t.c.lease_until < now)
    result = conn.execute(
        update(urls_t).where(cond).values(state=URLState.QUEUED, lease_until=None)
    )
    if all_leases:
        conn.execute(
            update(crawls_t)
            .where(crawls_t.c.status == CrawlStatus.RUNNING)
            .values(status=CrawlStatus.INTERRUPTED)
        )
    return result.rowcount or 0


def start_crawl(
    conn: Connection,
    *,
    seed_file: str | None,
    settings: dict[str, Any],
    now: dt.datetime,
    command: str = "crawl",
) -> int:
    result = conn.execute(
        crawls_t.insert()
        .values(
            command=command,
            started_at=now,
            status=CrawlStatus.RUNNING,
            seed_file=seed_file,
            settings=settings,
            pid=os.getpid(),
            hostname=socket.gethostname(),
        )
        .returning(crawls_t.c.id)
    )
    return int(result.scalar_one())


def finish_crawl(conn: Connection, crawl_id: int, status: CrawlStatus, now: dt.datetime) -> None:
    conn.execute(
        update(crawls_t).where(crawls_t.c.id == crawl_id).values(status=status, finished_at=now)
    )


def queued_count(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(urls_t).where(urls_t.c.state == URLState.QUEUED)
        ).scalar_one()
    )


_update_fetched = (
    update(urls_t)
    .where(urls_t.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        attempts=urls_t.c.attempts + 1,
        last_fetched_at=bindparam("b_at"),
        lease_until=None,
        etag=bindparam("b_etag"),
        last_modified=bindparam("b_last_modified"),
        content_hash=func.coalesce(bindparam("b_hash"), urls_t.c.content_hash),
        next_fetch_at=bindparam("b_next"),
        fetch_interval=func.coalesce(bindparam("b_interval"), urls_t.c.fetch_interval),
        failures=func.coalesce(bindparam("b_failures"), urls_t.c.failures),
        not_found=func.coalesce(bindparam("b_not_found"), urls_t.c.not_found),
    )
)
_UPDATE_FETCHED = Statement(
    _any_dialect(lambda: _update_fetched),
    [
        "b_id",
        "b_state",
        "b_at",
        "b_etag",
        "b_last_modified",
        "b_hash",
        "b_next",
        "b_interval",
        "b_failures",
        "b_not_found",
    ],
)


def _upsert_links(dialect: Dialect) -> ClauseElement:
    ins = _insert_for(dialect, links_t)
    stmt: ClauseElement = ins.on_conflict_do_update(
        index_elements=["src_url_id", "dst_url_id"],
        set_={"last_seen_at": ins.excluded.last_seen_at, "nofollow": ins.excluded.nofollow},
    )
    return stmt


_UPSERT_LINKS = Statement(
    _upsert_links, ["src_url_id", "dst_url_id", "nofollow", "first_seen_at", "last_seen_at"]
)
FETCH_FIELDS = (
    "url_id",
    "crawl_id",
    "fetched_at",
    "status_code",
    "final_url",
    "redirects",
    "content_type",
    "content_length",
    "elapsed_ms",
    "title",
    "content_hash",
    "changed",
    "not_modified",
    "canonical_url",
    "noindex",
    "data",
    "text",
)
_TITLE, _TEXT = FETCH_FIELDS.index("title"), FETCH_FIELDS.index("text")
_INSERT_FETCHES = Statement(_any_dialect(fetches_t.insert), FETCH_FIELDS)
_INSERT_FETCHES_RETURNING = Statement(
    _any_dialect(lambda: fetches_t.insert().returning(fetches_t.c.id)), FETCH_FIELDS
)
_INSERT_FTS = Statement(
    _any_dialect(
        lambda: text("INSERT INTO fetches_fts(rowid, title, text) VALUES (:id, :title, :text)")
    ),
    ["id", "title", "text"],
)
_INSERT_ERRORS = Statement(
    _any_dialect(errors_t.insert),
    ["url_id", "crawl_id", "at", "attempt", "kind", "status_code", "message", "final"],
)
_TOUCH_LINKS = Statement(
    _any_dialect(
        lambda: (
            update(links_t)
            .where(_in(links_t.c.src_url_id, "b_ids"))
            .values(last_seen_at=bindparam("b_now"))
        )
    ),
    ["b_ids", "b_now"],
)
_REQUEUE = Statement(
    _any_dialect(
        lambda: (
            update(urls_t)
            .where(_in(urls_t.c.id, "b_ids"))
            .values(state=URLState.QUEUED, lease_until=None)
        )
    ),
    ["b_ids"],
)
_COUNT_BATCH = Statement(
    _any_dialect(
        lambda: (
            update(crawls_t)
            .where(crawls_t.c.id == bindparam("b_crawl"))
            .values(
                pages_fetched=crawls_t.c.pages_fetched + bindparam("b_pages"),
                errors=crawls_t.c.errors + bindparam("b_errors"),
                bytes_fetched=crawls_t.c.bytes_fetched + bindparam("b_bytes"),
            )
        )
    ),
    ["b_crawl", "b_pages", "b_errors", "b_bytes"],
)


def _validators(task: FetchTask, f: FetchResult | None) -> tuple[str | None, str | None]:
    """The ETag and Last-Modified to keep: the response's, except that a 304 (or no response)
    keeps those it confirmed, since a 304 need not repeat them, and an error status (a 5xx, a
    404) keeps the stored ones: it says nothing of the page's version, and dropping them would
    cost a full download instead of a 304 once the page is back."""
    if f is None or f.status_code >= 400:
        return task.etag, task.last_modified
    if f.not_modified:
        return f.etag or task.etag, f.last_modified or task.last_modified
    return f.etag, f.last_modified


def store_results(
    conn: Connection,
    crawl_id: int,
    results: Sequence[PageResult],
    now: dt.datetime,
    hosts: HostCache,
    *,
    keep_html: bool = False,
) -> None:
    """Store one batch of results: new URLs, link rows, fetch rows (with their bodies when
    ``keep_html``, and in the full-text index when they have text), error rows, URL states."""
    values = _values(conn)
    stamp = values.timestamp
    at = stamp(now)
    # 1. Link targets become URLs (queued or excluded), then rows in ``links``.
    _store_links(conn, results, at, hosts)

    # 2. Fetch rows, error rows, and the fetched URLs' new state.
    fetch_rows: list[Row] = []
    kept: list[PageResult | None] = []
    error_rows: list[Row] = []
    url_rows: list[Row] = []
    fetched_bytes = 0
    for res in results:
        f, p, task = res.fetch, res.parsed, res.task
        fetched_at = stamp(f.fetched_at) if f is not None else at
        if f is not None:
            fetched_bytes += (f.content_length or 0) if f.body is not None else 0
            fetch_rows.append(
                (
                    task.url_id,
                    crawl_id,
                    fetched_at,
                    f.status_code,
                    without_userinfo(f.final_url),
                    f.redirects,
                    f.content_type,
                    f.content_length,
                    f.elapsed_ms,
                    p.title if p else None,
                    p.content_hash if p else None,
                    res.changed,
                    f.not_modified,
                    p.canonical_url if p else None,
                    p.noindex if p else False,
                    values.json(p.data if p else None),
                    p.text if p else None,
                )
            )
            kept.append(res if keep_html and f.body is not None else None)
        error_rows.extend(
            (
                task.url_id,
                crawl_id,
                stamp(e.at),
                e.attempt,
                e.kind.value,
                e.status_code,
                e.message,
                e.final,
            )
            for e in res.errors
        )
        if res.state is URLState.QUEUED:
            continue  # given back to the frontier (robots.txt unreachable): not an attempt
        plan = res.plan
        state = URLState.GONE if plan is not None and plan.gone else res.state
        etag, last_modified = _validators(task, f)
        url_rows.append(
            (
                task.url_id,
                state.value,
                fetched_at,
                etag,
                last_modified,
                p.content_hash if p else None,
                stamp(plan.next_fetch_at) if plan else None,
                plan.interval if plan else None,
                plan.failures if plan else None,
                plan.not_found if plan else None,
            )
        )
    if fetch_rows:
        fts = conn.dialect.name == "sqlite" and any(r[_TEXT] for r in fetch_rows)
        if fts or any(kept):
            fetch_ids = _INSERT_FETCHES_RETURNING.returning_many(conn, fetch_rows)
            _store_bodies(conn, fetch_ids, kept)
            if fts:
                _INSERT_FTS.executemany(
                    conn,
                    [
                        (i, r[_TITLE], r[_TEXT])
                        for i, r in zip(fetch_ids, fetch_rows, strict=True)
                        if r[_TEXT]
                    ],
                )
        else:
            _INSERT_FETCHES.executemany(conn, fetch_rows)
    _INSERT_ERRORS.executemany(conn, error_rows)
    _UPDATE_FETCHED.executemany(conn, url_rows)
    # A 304 means the links are those of the last fetch: they were seen again now, so that
    # "links removed since ..." (last_seen_at older than the page's last fetch) stays true.
    unchanged = [res.task.url_id for res in results if res.fetch and res.fetch.not_modified]
    for chunk in _chunks(unchanged):
        _TOUCH_LINKS.execute(conn, (chunk, at))
    requeue = [res.task.url_id for res in results if res.state is URLState.QUEUED]
    for chunk in _chunks(requeue):
        _REQUEUE.execute(conn, (chunk,))
    _store_redirect_targets(conn, results, at, hosts)
    _store_robots(conn, [res.robots for res in results if res.robots is not None], at, hosts)
    _COUNT_BATCH.execute(conn, (crawl_id, len(fetch_rows), len(error_rows), fetched_bytes))


def _store_links(
    conn: Connection, results: Sequence[PageResult], at: Any, hosts: HostCache
) -> None:
    """Link targets become URLs (queued, or excluded when not followable), then one ``links``
    row per (page, target) pair. ``at`` is the batch's time in stored form."""
    targets: dict[str, tuple[str, bool, PageResult]] = {}
    for res in results:
        for link in res.links:
            prev = targets.get(link.url)
            if prev is None or (link.follow and not prev[1]):
                targets[link.url] = (link.host, link.follow, res)
    if not targets:
        return
    host_ids = hosts.ids(conn, {h for h, _, _ in targets.values()})
    ids = _store_urls(
        conn,
        [
            (
                url,
                host_ids[host],
                res.task.depth + 1,
                res.task.url_id,
                _QUEUED if follow else _EXCLUDED,
                at,
                "page",
            )
            for url, (host, follow, res) in targets.items()
        ],
    )
    # One row per pair (the last link wins): PostgreSQL refuses to upsert the same row twice in
    # one statement. Sorted: one lock order for concurrent workers, and (src, dst) row order.
    pairs: dict[tuple[int, int], Row] = {}
    for res in results:
        src = res.task.url_id
        for link in res.links:
            dst = ids[link.url]
            pairs[src, dst] = (src, dst, link.nofollow, at, at)
    _UPSERT_LINKS.executemany(conn, sorted(pairs.values()))


def _done_targets(dialect: Dialect) -> ClauseElement:
    ins = _insert_for(dialect, urls_t)
    stmt: ClauseElement = ins.on_conflict_do_update(
        index_elements=["url"],
        set_={"state": URLState.DONE.value, "lease_until": None},
        # An OR, not IN: an expanding IN cannot be part of an executemany upsert.
        where=(urls_t.c.state == URLState.QUEUED.value)
        | (urls_t.c.state == URLState.FETCHING.value),
    )
    return stmt


_DONE_TARGETS = Statement(_done_targets, (*URL_FIELDS, "last_fetched_at"))


def _store_redirect_targets(
    conn: Connection, results: Sequence[PageResult], at: Any, hosts: HostCache
) -> None:
    """A redirect's in-scope final URL becomes ``done``: its content is in the fetch of the URL
    that redirected, and it must not become a second page. One still waiting in the frontier
    (queued, or claimed and not started: the engine drops it from the buffer) is done too."""
    rows = [(res, res.final_url) for res in results if res.final_url]
    if not rows:
        return
    host_ids = hosts.ids(conn, {host_key(url) for _, url in rows})
    done = URLState.DONE.value
    _DONE_TARGETS.executemany(
        conn,
        [
            (url, host_ids[host_key(url)], res.task.depth, res.task.url_id, done, at, "page", at)
            for res, url in sorted(rows, key=lambda row: row[1])
        ],
    )


def _store_robots(
    conn: Connection, records: Sequence[RobotsRecord], at: Any, hosts: HostCache
) -> None:
    """Cache fetched robots.txt in ``hosts``; queue the sitemaps it lists (when asked to)."""
    for rec in records:
        if rec.body is None:
            continue  # unreachable: keep what an earlier fetch cached, and its age
        conn.execute(
            update(hosts_t)
            .where(hosts_t.c.id == rec.host_id)
            .values(
                robots_txt=rec.body, robots_fetched_at=rec.fetched_at, crawl_delay=rec.crawl_delay
            )
        )
    sitemaps = {url for rec in records for url in rec.sitemaps}
    if sitemaps:
        host_ids = hosts.ids(conn, {host_key(u) for u in sitemaps})
        _store_urls(
            conn,
            [
                (url, host_ids[host_key(url)], 0, None, _QUEUED, at, "sitemap")
                for url in sorted(sitemaps)
            ],
        )


def store_sitemap_entries(
    conn: Connection, chunks: Sequence[SitemapChunk], now: dt.datetime, hosts: HostCache
) -> None:
    """Queue the URLs sitemaps list, with their priority, lastmod and changefreq. A URL already
    known keeps its state but takes the sitemap's hints."""
    entries = {(e.url): (c.source, e) for c in chunks for e in c.entries}
    if not entries:
        return
    host_ids = hosts.ids(conn, {e.host for _, e in entries.values()})
    ins = _insert(conn, urls_t)
    stmt = ins.on_conflict_do_update(
        index_elements=["url"],
        set_={
            "priority": ins.excluded.priority,
            "lastmod": func.coalesce(ins.excluded.lastmod, urls_t.c.lastmod),
            "changefreq": func.coalesce(ins.excluded.changefreq, urls_t.c.changefreq),
            "state": case(
                (urls_t.c.state == URLState.EXCLUDED, ins.excluded.state), else_=urls_t.c.state
            ),
        },
    )
    conn.execute(
        stmt,
        [
            {
                "url": url,
                "host_id": host_ids[e.host],
                "depth": source.depth + (1 if e.kind == "page" else 0),
                "discovered_from": source.url_id,
                "state": URLState.QUEUED.value,
                "first_seen_at": now,
                "kind": e.kind,
                "priority": e.priority,
                "lastmod": e.lastmod,
                "changefreq": e.changefreq,
            }
            for url, (source, e) in sorted(entries.items(), key=lambda item: item[0])
        ],
    )


def latest_settings(conn: Connection) -> tuple[int, dict[str, Any]] | None:
    """The id and settings of the most recent run, for ``crawl --resume``."""
    row = conn.execute(
        select(crawls_t.c.id, crawls_t.c.settings).order_by(crawls_t.c.id.desc()).limit(1)
    ).first()
    return (int(row[0]), dict(row[1] or {})) if row is not None else None


_SCHEDULED = (URLState.DONE.value, URLState.FAILED.value)
"""The states a recrawl takes URLs back from; gone, blocked and excluded URLs stay put."""


def _due(due_before: dt.datetime) -> Any:
    """Due: its next fetch time has come, or a sitemap says it changed after our last fetch."""
    return and_(
        urls_t.c.state.in_(_SCHEDULED),
        (urls_t.c.next_fetch_at <= due_before)
        | and_(
            urls_t.c.lastmod.is_not(None),
            urls_t.c.last_fetched_at.is_not(None),
            urls_t.c.lastmod > urls_t.c.last_fetched_at,
        ),
    )


def mark_due(conn: Connection, due_before: dt.datetime, limit: int = 0) -> int:
    """Queue the URLs due by ``due_before`` (the most overdue first, at most ``limit``)."""
    pick = select(urls_t.c.id).where(_due(due_before)).order_by(urls_t.c.next_fetch_at)
    if limit > 0:
        pick = pick.limit(limit)
    result = conn.execute(
        update(urls_t).where(urls_t.c.id.in_(pick.scalar_subquery())).values(state=URLState.QUEUED)
    )
    return result.rowcount or 0


def due_counts(conn: Connection, now: dt.datetime) -> dict[str, int]:
    """How many URLs are due now, within an hour, a day and a week; and how many are gone."""
    out: dict[str, int] = {}
    for label, ahead in (("now", 0), ("hour", 3600), ("day", 86400), ("week", 7 * 86400)):
        out[label] = int(
            conn.execute(
                select(func.count())
                .select_from(urls_t)
                .where(_due(now + dt.timedelta(seconds=ahead)))
            ).scalar_one()
        )
    out["scheduled"] = int(
        conn.execute(
            select(func.count()).select_from(urls_t).where(urls_t.c.state.in_(_SCHEDULED))
        ).scalar_one()
    )
    out["queued"] = queued_count(conn)
    out["gone"] = int(
        conn.execute(
            select(func.count()).select_from(urls_t).where(urls_t.c.state == URLState.GONE)
        ).scalar_one()
    )
    return out


def next_due(conn: Connection) -> dt.datetime | None:
    """The earliest ``next_fetch_at`` of a scheduled URL (for ``recrawl --watch``)."""
    value = conn.execute(
        select(func.min(urls_t.c.next_fetch_at)).where(urls_t.c.state.in_(_SCHEDULED))
    ).scalar_one()
    if value is None:
        return None
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(when, dt.datetime)  # min() loses the column type on SQLite: parse it
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _store_bodies(conn: Connection, ids: Sequence[int], kept: Sequence[PageResult | None]) -> None:
    rows = []
    for fetch_id, res in zip(ids, kept, strict=True):
        f = res.fetch if res is not None else None
        body = f.body if f is not None else None
        if f is None or body is None:
            continue
        rows.append(
            {
                "fetch_id": fetch_id,
                "encoding": "zlib",
                "body": zlib.compress(body, 6),
                "length": len(body),
                "reason": f.reason,
                "headers": [list(h) for h in f.headers],
            }
        )
    if rows:
        conn.execute(bodies_t.insert(), rows)


_SHARED_CLAIM = text(
    """
    WITH ready AS (
        SELECT h.id, GREATEST(:delay, LEAST(COALESCE(h.crawl_delay, 0), :max_delay)) AS delay
        FROM hosts AS h
        WHERE (h.next_allowed_at IS NULL OR h.next_allowed_at <= now())
          AND EXISTS (SELECT 1 FROM urls AS q WHERE q.host_id = h.id AND q.state = 'queued')
          AND (SELECT count(*) FROM urls AS f
               WHERE f.host_id = h.id AND f.state = 'fetching' AND f.lease_until > now())
              < :per_host
        ORDER BY h.next_allowed_at NULLS FIRST, h.id
        LIMIT :limit
        FOR UPDATE OF h SKIP LOCKED
    ),
    picked AS (
        -- The host rows are locked (ready): no other worker can pick from these hosts now.
        -- A URL row another transaction holds (a batch of results upserting it as a link
        -- target) is skipped, not waited for: a claim that waited would start its host's
        -- reserved slot before its worker could use it.
        SELECT r.id AS host_id,
               (SELECT u.id FROM urls AS u
                WHERE u.host_id = r.id AND u.state = 'queued'
                ORDER BY u.priority DESC, u.depth, u.id
                LIMIT 1
                FOR UPDATE SKIP LOCKED) AS id
        FROM ready AS r
    ),
    reserved AS (
        -- The slot starts when it is reserved (clock_timestamp), not when the statement
        -- started (now()): the time the claim took is not taken out of the host's delay.
        UPDATE hosts AS h
        SET next_allowed_at = clock_timestamp()
            + make_interval(secs => r.delay + LEAST(:margin, r.delay / 2))
        FROM ready AS r
        WHERE h.id = r.id AND h.id IN (SELECT host_id FROM picked WHERE id IS NOT NULL)
        RETURNING h.id
    )
    UPDATE urls AS u
    SET state = 'fetching', lease_until = now() + make_interval(secs => :lease)
    FROM picked AS p
    -- picked locked the row and re-checked it on its latest version; checked again here all
    -- the same: a URL is handed out only while it is queued.
    WHERE u.id = p.id AND u.state = 'queued' AND (SELECT count(*) FROM reserved) >= 0
    RETURNING u.id, u.url, u.host_id, u.depth, u.priority, u.etag, u.last_modified,
              u.content_hash, u.kind, u.fetch_interval, u.failures, u.not_found, u.changefreq
    """
)


def claim_shared(
    conn: Connection,
    limit: int,
    *,
    delay: float,
    per_host: int,
    lease_s: float,
    max_delay: float,
    margin: float = 0.1,
) -> Claimed:
    """The claim of many processes sharing one PostgreSQL frontier (DESIGN §6): at most one URL
    per ready host, and the host's next slot reserved in ``hosts.next_allowed_at`` in the same
    transaction, so a host's delay and concurrency hold across every worker. Rows other workers
    are claiming are skipped (``SKIP LOCKED``), never waited for, never handed out twice.
    A slot lasts the host's delay plus ``margin`` (at most half the delay): the time a worker
    may take between its claim and its request without the next worker's request landing
    closer than the delay (docs/distributed.md). ``more`` says whether work exists that is
    not ready yet (or is held by other workers)."""
    rows = conn.execute(
        _SHARED_CLAIM,
        {
            "limit": limit,
            "delay": delay,
            "per_host": per_host,
            "lease": lease_s,
            "max_delay": max_delay,
            "margin": margin,
        },
    ).all()
    tasks = Claimed(_tasks(conn, rows))
    if not tasks:
        tasks.more = pending_work(conn)
    return tasks


def pending_work(conn: Connection) -> bool:
    """Whether any URL is queued or fetching — fetching even with an expired lease: a dead
    worker's URLs come back (:func:`recover`) and must still be crawled."""
    return bool(
        conn.execute(
            select(
                select(urls_t.c.id)
                .where(urls_t.c.state.in_([URLState.QUEUED.value, URLState.FETCHING.value]))
                .exists()
            )
        ).scalar()
    )
