"""The statements that change the database, as functions of a ``Connection``.

Only the writer thread runs these (DESIGN §2.5: one writer, batched): the frontier and the
engine hand them to :meth:`crawler.writer.Writer.call`. They are Core statements executed with
``executemany`` — no ORM object per row on the hot path — and they work unchanged on SQLite and
PostgreSQL (``ON CONFLICT`` on both; ``FOR UPDATE SKIP LOCKED`` compiles to nothing on SQLite,
where the single writer already serializes claims).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import zlib
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, case, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

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


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
            stmt = _insert(conn, hosts_t).on_conflict_do_nothing(index_elements=["host"])
            conn.execute(stmt, [{"host": h} for h in missing])
            for chunk in _chunks(missing):
                rows = conn.execute(
                    select(hosts_t.c.host, hosts_t.c.id).where(hosts_t.c.host.in_(chunk))
                )
                self._ids.update((h, i) for h, i in rows)
        return {h: self._ids[h] for h in wanted}


def insert_urls(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert URLs, ignoring known ones — except that a URL known only as ``excluded`` (seen out
    of scope or too deep) becomes ``queued`` when it is now found followable.

    Known URLs are not locked: ``ON CONFLICT DO UPDATE`` locks every row it meets, even where
    its ``WHERE`` is false, and a link target another worker is storing as fetched would then
    make two workers' batches wait for each other (a deadlock on PostgreSQL). So new rows are
    inserted with ``DO NOTHING``, in URL order (concurrent inserts of the same new URLs queue
    up in one order), and only the rows still ``excluded`` are upserted again."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":  # one order for every worker; SQLite has one writer
        rows = sorted(rows, key=lambda r: str(r["url"]))  # and keeps discovery order (ids)
    conn.execute(_insert(conn, urls_t).on_conflict_do_nothing(index_elements=["url"]), rows)
    followable = [r for r in rows if r["state"] == URLState.QUEUED.value]
    excluded: set[str] = set()
    for chunk in _chunks([r["url"] for r in followable]):
        excluded.update(
            conn.execute(
                select(urls_t.c.url).where(
                    urls_t.c.url.in_(chunk), urls_t.c.state == URLState.EXCLUDED
                )
            ).scalars()
        )
    if not excluded:
        return
    ins = _insert(conn, urls_t)
    stmt = ins.on_conflict_do_update(
        index_elements=["url"],
        set_={
            "state": ins.excluded.state,
            "depth": ins.excluded.depth,
            "discovered_from": ins.excluded.discovered_from,
        },
        where=and_(urls_t.c.state == URLState.EXCLUDED, ins.excluded.state == URLState.QUEUED),
    )
    conn.execute(stmt, [r for r in followable if r["url"] in excluded])


def url_ids(conn: Connection, urls: Collection[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    ordered = list(urls)
    for chunk in _chunks(ordered):
        rows = conn.execute(select(urls_t.c.url, urls_t.c.id).where(urls_t.c.url.in_(chunk)))
        out.update((url, id_) for url, id_ in rows)
    return out


def add_seeds(
    conn: Connection, seeds: Sequence[tuple[str, str, str]], now: dt.datetime, hosts: HostCache
) -> None:
    """Queue ``(url, host, kind)`` seeds at depth 0; URLs already known keep their state, so
    running the same crawl again resumes it."""
    host_ids = hosts.ids(conn, {h for _, h, _ in seeds})
    insert_urls(
        conn,
        [
            {
                "url": url,
                "host_id": host_ids[host],
                "depth": 0,
                "discovered_from": None,
                "state": URLState.QUEUED.value,
                "first_seen_at": now,
                "kind": kind,
            }
            for url, host, kind in seeds
        ],
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
    candidates = (
        select(urls_t.c.id, urls_t.c.host_id, urls_t.c.priority, urls_t.c.depth)
        .where(urls_t.c.state == URLState.QUEUED)
        .order_by(urls_t.c.priority.desc(), urls_t.c.depth, urls_t.c.id)
        .limit(4 * limit)
        .with_for_update(skip_locked=True)
    )
    if exclude_hosts:
        candidates = candidates.where(urls_t.c.host_id.not_in(list(exclude_hosts)))
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
    pick = select(ranked.c.id).where(ranked.c.rn <= per_host).limit(limit)
    stmt = (
        update(urls_t)
        .where(urls_t.c.id.in_(pick.scalar_subquery()))
        .values(state=URLState.FETCHING, lease_until=lease_until)
        .returning(
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
    )
    return _tasks(conn, conn.execute(stmt).all())


def _tasks(conn: Connection, rows: Sequence[Any]) -> list[FetchTask]:
    """Claimed rows as tasks, in hand-out order (RETURNING promises none)."""
    if not rows:
        return []
    host_names = dict(
        conn.execute(
            select(hosts_t.c.id, hosts_t.c.host).where(hosts_t.c.id.in_({r.host_id for r in rows}))
        ).all()
    )
    tasks = [
        FetchTask(
            url_id=r.id,
            url=r.url,
            host_id=r.host_id,
            host=host_names[r.host_id],
            depth=r.depth,
            etag=r.etag,
            last_modified=r.last_modified,
            content_hash=r.content_hash,
            kind=r.kind,
            interval=r.fetch_interval,
            failures=r.failures,
            not_found=r.not_found,
            changefreq=r.changefreq,
        )
        for r in rows
    ]
    order = {r.id: (-r.priority, r.depth, r.id) for r in rows}
    tasks.sort(key=lambda t: order[t.url_id])
    return tasks


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
    # 1. Link targets become URLs (queued or excluded), then rows in ``links``.
    targets: dict[str, tuple[str, bool, PageResult]] = {}
    for res in results:
        for link in res.links:
            prev = targets.get(link.url)
            if prev is None or (link.follow and not prev[1]):
                targets[link.url] = (link.host, link.follow, res)
    if targets:
        host_ids = hosts.ids(conn, {h for h, _, _ in targets.values()})
        insert_urls(
            conn,
            [
                {
                    "url": url,
                    "host_id": host_ids[host],
                    "depth": res.task.depth + 1,
                    "discovered_from": res.task.url_id,
                    "state": (URLState.QUEUED if follow else URLState.EXCLUDED).value,
                    "first_seen_at": now,
                    "kind": "page",
                }
                for url, (host, follow, res) in targets.items()
            ],
        )
        ids = url_ids(conn, targets.keys())
        # One row per pair: PostgreSQL refuses to upsert the same row twice in one statement.
        pairs = {
            (res.task.url_id, ids[link.url]): link.nofollow for res in results for link in res.links
        }
        link_rows = [
            {
                "src_url_id": src,
                "dst_url_id": dst,
                "nofollow": nofollow,
                "first_seen_at": now,
                "last_seen_at": now,
            }
            for (src, dst), nofollow in sorted(pairs.items())
        ]
        ins = _insert(conn, links_t)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["src_url_id", "dst_url_id"],
                set_={"last_seen_at": ins.excluded.last_seen_at, "nofollow": ins.excluded.nofollow},
            ),
            link_rows,
        )

    # 2. Fetch rows, error rows, and the fetched URLs' new state.
    fetch_rows: list[dict[str, Any]] = []
    kept: list[PageResult | None] = []
    error_rows: list[dict[str, Any]] = []
    url_rows: list[dict[str, Any]] = []
    fetched_bytes = 0
    for res in results:
        f, p, task = res.fetch, res.parsed, res.task
        if f is not None:
            fetched_bytes += (f.content_length or 0) if f.body is not None else 0
            fetch_rows.append(
                {
                    "url_id": task.url_id,
                    "crawl_id": crawl_id,
                    "fetched_at": f.fetched_at,
                    "status_code": f.status_code,
                    "final_url": without_userinfo(f.final_url),
                    "redirects": f.redirects,
                    "content_type": f.content_type,
                    "content_length": f.content_length,
                    "elapsed_ms": f.elapsed_ms,
                    "title": p.title if p else None,
                    "content_hash": p.content_hash if p else None,
                    "changed": res.changed,
                    "not_modified": f.not_modified,
                    "canonical_url": p.canonical_url if p else None,
                    "noindex": p.noindex if p else False,
                    "data": p.data if p else None,
                    "text": p.text if p else None,
                }
            )
            kept.append(res if keep_html and f.body is not None else None)
        error_rows.extend(
            {
                "url_id": task.url_id,
                "crawl_id": crawl_id,
                "at": e.at,
                "attempt": e.attempt,
                "kind": e.kind.value,
                "status_code": e.status_code,
                "message": e.message,
                "final": e.final,
            }
            for e in res.errors
        )
        if res.state is URLState.QUEUED:
            continue  # given back to the frontier (robots.txt unreachable): not an attempt
        plan = res.plan
        state = URLState.GONE if plan is not None and plan.gone else res.state
        etag, last_modified = _validators(task, f)
        url_rows.append(
            {
                "b_id": task.url_id,
                "b_state": state.value,
                "b_at": f.fetched_at if f else now,
                "b_etag": etag,
                "b_last_modified": last_modified,
                "b_hash": p.content_hash if p else None,
                "b_next": plan.next_fetch_at if plan else None,
                "b_interval": plan.interval if plan else None,
                "b_failures": plan.failures if plan else None,
                "b_not_found": plan.not_found if plan else None,
            }
        )
    if fetch_rows:
        fts = conn.dialect.name == "sqlite" and any(r["text"] for r in fetch_rows)
        if fts or any(kept):
            fetch_ids = (
                conn.execute(
                    fetches_t.insert().returning(fetches_t.c.id, sort_by_parameter_order=True),
                    fetch_rows,
                )
                .scalars()
                .all()
            )
            _store_bodies(conn, fetch_ids, kept)
            if fts:
                conn.execute(
                    text("INSERT INTO fetches_fts(rowid, title, text) VALUES (:id, :title, :text)"),
                    [
                        {"id": i, "title": r["title"], "text": r["text"]}
                        for i, r in zip(fetch_ids, fetch_rows, strict=True)
                        if r["text"]
                    ],
                )
        else:
            conn.execute(fetches_t.insert(), fetch_rows)
    if error_rows:
        conn.execute(errors_t.insert(), error_rows)
    if url_rows:
        conn.execute(_update_fetched, url_rows)
    # A 304 means the links are those of the last fetch: they were seen again now, so that
    # "links removed since ..." (last_seen_at older than the page's last fetch) stays true.
    unchanged = [res.task.url_id for res in results if res.fetch and res.fetch.not_modified]
    for chunk in _chunks(unchanged):
        conn.execute(
            update(links_t).where(links_t.c.src_url_id.in_(chunk)).values(last_seen_at=now)
        )
    requeue = [res.task.url_id for res in results if res.state is URLState.QUEUED]
    for chunk in _chunks(requeue):
        conn.execute(
            update(urls_t)
            .where(urls_t.c.id.in_(chunk))
            .values(state=URLState.QUEUED, lease_until=None)
        )
    _store_redirect_targets(conn, results, now, hosts)
    _store_robots(conn, [res.robots for res in results if res.robots is not None], now, hosts)
    conn.execute(
        update(crawls_t)
        .where(crawls_t.c.id == crawl_id)
        .values(
            pages_fetched=crawls_t.c.pages_fetched + len(fetch_rows),
            errors=crawls_t.c.errors + len(error_rows),
            bytes_fetched=crawls_t.c.bytes_fetched + fetched_bytes,
        )
    )


def _store_redirect_targets(
    conn: Connection, results: Sequence[PageResult], now: dt.datetime, hosts: HostCache
) -> None:
    """A redirect's in-scope final URL becomes ``done``: its content is in the fetch of the URL
    that redirected, and it must not become a second page. One still waiting in the frontier
    (queued, or claimed and not started: the engine drops it from the buffer) is done too."""
    rows = [(res, res.final_url) for res in results if res.final_url]
    if not rows:
        return
    host_ids = hosts.ids(conn, {host_key(url) for _, url in rows})
    ins = _insert(conn, urls_t)
    stmt = ins.on_conflict_do_update(
        index_elements=["url"],
        set_={"state": URLState.DONE.value, "lease_until": None},
        # An OR, not IN: an expanding IN cannot be part of an executemany upsert.
        where=(urls_t.c.state == URLState.QUEUED.value)
        | (urls_t.c.state == URLState.FETCHING.value),
    )
    conn.execute(
        stmt,
        [
            {
                "url": url,
                "host_id": host_ids[host_key(url)],
                "depth": res.task.depth,
                "discovered_from": res.task.url_id,
                "state": URLState.DONE.value,
                "first_seen_at": now,
                "last_fetched_at": now,
                "kind": "page",
            }
            for res, url in sorted(rows, key=lambda row: row[1])
        ],
    )


def _store_robots(
    conn: Connection, records: Sequence[RobotsRecord], now: dt.datetime, hosts: HostCache
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
        insert_urls(
            conn,
            [
                {
                    "url": url,
                    "host_id": host_ids[host_key(url)],
                    "depth": 0,
                    "discovered_from": None,
                    "state": URLState.QUEUED.value,
                    "first_seen_at": now,
                    "kind": "sitemap",
                }
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
