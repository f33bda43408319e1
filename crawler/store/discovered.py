"""Discovered URLs: insert with dedup (``ON CONFLICT``), ``excluded`` → ``queued`` promotion,
seeds, lookups and counts of the ``urls`` table.

Dedup is the database's job (docs/architecture.md): no process-local "seen" set.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, and_, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from crawler.records import (
    URLState,
)
from crawler.store.common import (
    EXCLUDED,
    QUEUED,
    any_dialect,
    chunks,
    hosts_t,
    in_list,
    insert_for,
    stored_values,
    urls_t,
)
from crawler.store.hosts import HostCache
from crawler.store.rawsql import Row, Statement

URL_FIELDS = ("url", "host_id", "depth", "discovered_from", "state", "first_seen_at", "kind")
"""A new ``urls`` row, as :func:`store_urls` takes it (``first_seen_at`` in stored form)."""


def _promote_excluded(dialect: Dialect) -> ClauseElement:
    ins = insert_for(dialect, urls_t)
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
    lambda d: insert_for(d, urls_t).on_conflict_do_nothing(index_elements=["url"]), URL_FIELDS
)
_PROMOTE_URLS = Statement(_promote_excluded, URL_FIELDS)
_URL_STATES = Statement(
    any_dialect(
        lambda: select(urls_t.c.url, urls_t.c.id, urls_t.c.state).where(
            in_list(urls_t.c.url, "urls")
        )
    ),
    ["urls"],
)


def insert_urls(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert URLs given as ``urls`` columns (``kind`` defaults to ``page``), as
    :func:`store_urls` does."""
    stamp = stored_values(conn).timestamp
    store_urls(
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


def store_urls(conn: Connection, rows: list[Row]) -> dict[str, int]:
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
    promote = [r for r in rows if r[4] == QUEUED and found[r[0]][1] == EXCLUDED]
    _PROMOTE_URLS.executemany(conn, promote)
    return {url: id_ for url, (id_, _) in found.items()}


def _url_states(conn: Connection, urls: Sequence[str]) -> dict[str, tuple[int, str]]:
    """url → (id, state) of the known ones among ``urls``."""
    out: dict[str, tuple[int, str]] = {}
    for chunk in chunks(urls):
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
    at = stored_values(conn).timestamp(now)
    store_urls(
        conn, [(url, host_ids[host], 0, None, QUEUED, at, kind) for url, host, kind in seeds]
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


def queued_count(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(urls_t).where(urls_t.c.state == URLState.QUEUED)
        ).scalar_one()
    )


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
