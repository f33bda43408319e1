"""The Core implementation of the writer's hot statements, before ``crawler.store.rawsql``.

``tests/store/test_rawsql.py`` runs the same batches through this and through
``crawler.store.results`` and checks the databases end up identical, row for row and byte for byte.
Only the functions that changed are here; the rest (tables, ``_validators``, ``_store_bodies``)
comes from ``crawler.store.results``. Change this file only to follow a deliberate change of what
is stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, select, text, update

from crawler.records import FetchTask, PageResult, RobotsRecord, URLState
from crawler.store.common import (
    chunks,
    crawls_t,
    errors_t,
    fetches_t,
    hosts_t,
    insert,
    links_t,
    urls_t,
)
from crawler.store.results import _store_bodies, _update_fetched, _validators
from crawler.urls import host_key, without_userinfo


class HostCache:
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
            stmt = insert(conn, hosts_t).on_conflict_do_nothing(index_elements=["host"])
            conn.execute(stmt, [{"host": h} for h in missing])
            for chunk in chunks(missing):
                rows = conn.execute(
                    select(hosts_t.c.host, hosts_t.c.id).where(hosts_t.c.host.in_(chunk))
                )
                self._ids.update((h, i) for h, i in rows)
        return {h: self._ids[h] for h in wanted}


def insert_urls(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":  # one order for every worker; SQLite has one writer
        rows = sorted(rows, key=lambda r: str(r["url"]))  # and keeps discovery order (ids)
    conn.execute(insert(conn, urls_t).on_conflict_do_nothing(index_elements=["url"]), rows)
    followable = [r for r in rows if r["state"] == URLState.QUEUED.value]
    excluded: set[str] = set()
    for chunk in chunks([r["url"] for r in followable]):
        excluded.update(
            conn.execute(
                select(urls_t.c.url).where(
                    urls_t.c.url.in_(chunk), urls_t.c.state == URLState.EXCLUDED
                )
            ).scalars()
        )
    if not excluded:
        return
    ins = insert(conn, urls_t)
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
    for chunk in chunks(ordered):
        rows = conn.execute(select(urls_t.c.url, urls_t.c.id).where(urls_t.c.url.in_(chunk)))
        out.update((url, id_) for url, id_ in rows)
    return out


def add_seeds(
    conn: Connection, seeds: Sequence[tuple[str, str, str]], now: dt.datetime, hosts: HostCache
) -> None:
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


def claim(
    conn: Connection,
    limit: int,
    exclude_hosts: Collection[int],
    lease_until: dt.datetime,
    *,
    per_host: int = 8,
) -> list[FetchTask]:
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


def store_results(
    conn: Connection,
    crawl_id: int,
    results: Sequence[PageResult],
    now: dt.datetime,
    hosts: HostCache,
    *,
    keep_html: bool = False,
) -> None:
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
        ins = insert(conn, links_t)
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
    for chunk in chunks(unchanged):
        conn.execute(
            update(links_t).where(links_t.c.src_url_id.in_(chunk)).values(last_seen_at=now)
        )
    requeue = [res.task.url_id for res in results if res.state is URLState.QUEUED]
    for chunk in chunks(requeue):
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
    rows = [(res, res.final_url) for res in results if res.final_url]
    if not rows:
        return
    host_ids = hosts.ids(conn, {host_key(url) for _, url in rows})
    ins = insert(conn, urls_t)
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
