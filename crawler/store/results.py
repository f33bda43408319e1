"""Storing a batch of results: link targets and ``links`` rows, ``fetches`` (with bodies and
the full-text index), ``errors``, the fetched URLs' new state, redirect targets, robots.txt
in ``hosts``, sitemap entries, and the run's counters.

Only the writer thread runs these (DESIGN §2.5: one writer, batched; see
:meth:`crawler.store.writer.Writer`). They are Core statements executed with ``executemany``
(no ORM object per row on the hot path) and work unchanged on SQLite and PostgreSQL (``ON
CONFLICT`` on both). The statements run for every batch are
:class:`crawler.store.rawsql.Statement` objects: the Core statement compiled once per dialect,
given tuples of values already in stored form, because SQLAlchemy's per-row work cost more CPU
than the database's. Claims, hosts, discovered URLs and runs have modules of their own.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, text, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from crawler.records import (
    FetchResult,
    FetchTask,
    PageResult,
    RobotsRecord,
    SitemapChunk,
    URLState,
)
from crawler.store.common import (
    EXCLUDED,
    QUEUED,
    any_dialect,
    bodies_t,
    chunks,
    crawls_t,
    errors_t,
    fetches_t,
    hosts_t,
    in_list,
    insert,
    insert_for,
    links_t,
    stored_values,
    urls_t,
)
from crawler.store.discovered import URL_FIELDS, store_urls
from crawler.store.hosts import HostCache
from crawler.store.rawsql import Converters, Row, Statement
from crawler.urls import host_key, without_userinfo

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
    any_dialect(lambda: _update_fetched),
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
    ins = insert_for(dialect, links_t)
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
_INSERT_FETCHES = Statement(any_dialect(fetches_t.insert), FETCH_FIELDS)
_INSERT_FETCHES_RETURNING = Statement(
    any_dialect(lambda: fetches_t.insert().returning(fetches_t.c.id)), FETCH_FIELDS
)
_INSERT_FTS = Statement(
    any_dialect(
        lambda: text("INSERT INTO fetches_fts(rowid, title, text) VALUES (:id, :title, :text)")
    ),
    ["id", "title", "text"],
)
_INSERT_ERRORS = Statement(
    any_dialect(errors_t.insert),
    ["url_id", "crawl_id", "at", "attempt", "kind", "status_code", "message", "final"],
)
_TOUCH_LINKS = Statement(
    any_dialect(
        lambda: (
            update(links_t)
            .where(in_list(links_t.c.src_url_id, "b_ids"))
            .values(last_seen_at=bindparam("b_now"))
        )
    ),
    ["b_ids", "b_now"],
)
_REQUEUE = Statement(
    any_dialect(
        lambda: (
            update(urls_t)
            .where(in_list(urls_t.c.id, "b_ids"))
            .values(state=URLState.QUEUED, lease_until=None)
        )
    ),
    ["b_ids"],
)
_COUNT_BATCH = Statement(
    any_dialect(
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
    values = stored_values(conn)
    at = values.timestamp(now)
    # 1. Link targets become URLs (queued or excluded), then rows in ``links``.
    _store_links(conn, results, at, hosts)
    # 2. Fetch rows, error rows, and the fetched URLs' new state.
    rows = _BatchRows(crawl_id, values, at, keep_html)
    for res in results:
        rows.add(res)
    _insert_fetches(conn, rows.fetches, rows.kept)
    _INSERT_ERRORS.executemany(conn, rows.errors)
    _UPDATE_FETCHED.executemany(conn, rows.urls)
    # A 304 means the links are those of the last fetch: they were seen again now, so that
    # "links removed since ..." (last_seen_at older than the page's last fetch) stays true.
    unchanged = [res.task.url_id for res in results if res.fetch and res.fetch.not_modified]
    for chunk in chunks(unchanged):
        _TOUCH_LINKS.execute(conn, (chunk, at))
    requeue = [res.task.url_id for res in results if res.state is URLState.QUEUED]
    for chunk in chunks(requeue):
        _REQUEUE.execute(conn, (chunk,))
    _store_redirect_targets(conn, results, at, hosts)
    _store_robots(conn, [res.robots for res in results if res.robots is not None], at, hosts)
    _COUNT_BATCH.execute(conn, (crawl_id, len(rows.fetches), len(rows.errors), rows.bytes))


class _BatchRows:
    """The ``fetches``, ``errors`` and ``urls`` rows of one batch, in stored form."""

    def __init__(self, crawl_id: int, values: Converters, at: Any, keep_html: bool) -> None:
        self._crawl_id = crawl_id
        self._values = values
        self._at = at
        self._keep_html = keep_html
        self.fetches: list[Row] = []
        self.kept: list[PageResult | None] = []
        """Per fetch row: the result whose body is kept (``keep_html``), else None."""
        self.errors: list[Row] = []
        self.urls: list[Row] = []
        self.bytes = 0

    def add(self, res: PageResult) -> None:
        f, p, task = res.fetch, res.parsed, res.task
        stamp = self._values.timestamp
        fetched_at = stamp(f.fetched_at) if f is not None else self._at
        if f is not None:
            self.bytes += (f.content_length or 0) if f.body is not None else 0
            self.fetches.append(
                (
                    task.url_id,
                    self._crawl_id,
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
                    p.noindex if p else res.noindex,
                    self._values.json(p.data if p else None),
                    p.text if p else None,
                )
            )
            self.kept.append(res if self._keep_html and f.body is not None else None)
        self.errors.extend(
            (
                task.url_id,
                self._crawl_id,
                stamp(e.at),
                e.attempt,
                e.kind.value,
                e.status_code,
                e.message,
                e.final,
            )
            for e in res.errors
        )
        if res.state is not URLState.QUEUED:  # QUEUED: given back (robots.txt unreachable)
            self.urls.append(_url_row(res, fetched_at, stamp))


def _url_row(res: PageResult, fetched_at: Any, stamp: Callable[[Any], Any]) -> Row:
    """The fetched URL's new state, validators and schedule (:data:`_UPDATE_FETCHED`)."""
    plan, p, task = res.plan, res.parsed, res.task
    state = URLState.GONE if plan is not None and plan.gone else res.state
    etag, last_modified = _validators(task, res.fetch)
    return (
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


def _insert_fetches(
    conn: Connection, fetch_rows: list[Row], kept: Sequence[PageResult | None]
) -> None:
    """Insert fetch rows; when bodies are kept or text indexed, with their ids (RETURNING)."""
    if not fetch_rows:
        return
    fts = conn.dialect.name == "sqlite" and any(r[_TEXT] for r in fetch_rows)
    if not (fts or any(kept)):
        _INSERT_FETCHES.executemany(conn, fetch_rows)
        return
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
    ids = store_urls(
        conn,
        [
            (
                url,
                host_ids[host],
                res.task.depth + 1,
                res.task.url_id,
                QUEUED if follow else EXCLUDED,
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
    ins = insert_for(dialect, urls_t)
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
        store_urls(
            conn,
            [
                (url, host_ids[host_key(url)], 0, None, QUEUED, at, "sitemap")
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
    ins = insert(conn, urls_t)
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
