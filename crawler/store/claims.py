"""Claims: queued URLs become ``fetching`` under a lease, and are given back.

Two strategies behind one interface (:class:`Claims`): :class:`LocalClaims`, the claim of one
process (per-host capped, in hand-out order), and :class:`SharedClaims`, the claim of many
processes sharing one PostgreSQL frontier (one URL per ready host, the host's next slot reserved
in the same transaction). Both hand back URLs with :meth:`Claims.give_back` and recover dead
leases with :func:`recover`. Runs on the writer thread only.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, and_, bindparam, func, select, text, update
from sqlalchemy.sql import ClauseElement

from crawler.records import (
    Claimed,
    CrawlStatus,
    FetchTask,
    URLState,
)
from crawler.store.common import (
    any_dialect,
    chunks,
    crawls_t,
    stored_values,
    urls_t,
)
from crawler.store.discovered import pending_work
from crawler.store.hosts import host_names
from crawler.store.rawsql import Row, Statement

if TYPE_CHECKING:
    from concurrent.futures import Future

    from crawler.store.writer import Writer

log = logging.getLogger(__name__)

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
_CLAIM = Statement(any_dialect(lambda: _claim_statement(False)), _CLAIM_FIELDS)
_CLAIM_EXCLUDING = Statement(
    any_dialect(lambda: _claim_statement(True)), (*_CLAIM_FIELDS, "b_exclude")
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
    params: Row = (4 * limit, per_host, limit, stored_values(conn).timestamp(lease_until))
    if exclude_hosts:
        result = _CLAIM_EXCLUDING.execute(conn, (*params, list(exclude_hosts)))
    else:
        result = _CLAIM.execute(conn, params)
    return _tasks(conn, result.all())


def _tasks(conn: Connection, rows: Sequence[Any]) -> list[FetchTask]:
    """Claimed rows (:data:`_CLAIMED`) as tasks, in hand-out order (RETURNING promises none)."""
    if not rows:
        return []
    names = host_names(conn, {r[2] for r in rows})
    rows = sorted(rows, key=lambda r: (-r[4], r[3], r[0]))
    return [
        FetchTask(
            url_id=id_,
            url=url,
            host_id=host_id,
            host=names[host_id],
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


def release(conn: Connection, url_ids: Collection[int]) -> None:
    """Give claimed-but-unstarted URLs back to the frontier."""
    ids = list(url_ids)
    for chunk in chunks(ids):
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


_Q, _F = URLState.QUEUED.value, URLState.FETCHING.value
_RETURNING = ", ".join(f"u.{column.name}" for column in _CLAIMED)
"""The shared claim returns what the local one does, in :data:`_CLAIMED` order."""
_SHARED_CLAIM = text(
    f"""
    WITH ready AS (
        SELECT h.id, GREATEST(:delay, LEAST(COALESCE(h.crawl_delay, 0), :max_delay)) AS delay
        FROM hosts AS h
        WHERE (h.next_allowed_at IS NULL OR h.next_allowed_at <= now())
          AND EXISTS (SELECT 1 FROM urls AS q WHERE q.host_id = h.id AND q.state = '{_Q}')
          AND (SELECT count(*) FROM urls AS f
               WHERE f.host_id = h.id AND f.state = '{_F}' AND f.lease_until > now())
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
                WHERE u.host_id = r.id AND u.state = '{_Q}'
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
    SET state = '{_F}', lease_until = now() + make_interval(secs => :lease)
    FROM picked AS p
    -- picked locked the row and re-checked it on its latest version; checked again here all
    -- the same: a URL is handed out only while it is queued.
    WHERE u.id = p.id AND u.state = '{_Q}' AND (SELECT count(*) FROM reserved) >= 0
    RETURNING {_RETURNING}
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


def lease_deadline(now: dt.datetime, lease_s: float) -> dt.datetime:
    return now + dt.timedelta(seconds=lease_s)


class Claims(Protocol):
    """A claim strategy: take URLs to fetch, give back those that will not be fetched."""

    def take(
        self, conn: Connection, n: int, exclude: Collection[int], per_host: int
    ) -> list[FetchTask]: ...

    def give_back(self, conn: Connection, url_ids: Collection[int]) -> None: ...


class LocalClaims:
    """One process's claim (:func:`claim`): per-host capped, in hand-out order, under a lease."""

    def __init__(self, lease_s: float, now: Callable[[], dt.datetime]) -> None:
        self._lease_s = lease_s
        self._now = now

    def take(
        self, conn: Connection, n: int, exclude: Collection[int], per_host: int
    ) -> list[FetchTask]:
        return claim(
            conn, n, exclude, lease_deadline(self._now(), self._lease_s), per_host=per_host
        )

    def give_back(self, conn: Connection, url_ids: Collection[int]) -> None:
        release(conn, url_ids)


class SharedClaims:
    """The claim of many processes sharing one PostgreSQL frontier (:func:`claim_shared`): the
    database reserves each host's next slot, and claims of dead workers come back when their
    leases expire (checked at most every ``min(10 s, lease / 2)``)."""

    def __init__(
        self,
        *,
        delay: float,
        per_host: int,
        lease_s: float,
        max_delay: float,
        now: Callable[[], dt.datetime],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._delay = delay
        self._per_host = per_host
        self._lease_s = lease_s
        self._max_delay = max_delay
        self._now = now
        self._clock = clock
        self._last_recovery = 0.0

    def take(
        self, conn: Connection, n: int, exclude: Collection[int], per_host: int
    ) -> list[FetchTask]:
        if self._clock() - self._last_recovery > min(10.0, self._lease_s / 2):
            self._last_recovery = self._clock()
            recover(conn, self._now(), all_leases=False)
        return claim_shared(
            conn,
            n,
            delay=self._delay,
            per_host=self._per_host,
            lease_s=self._lease_s,
            max_delay=self._max_delay,
        )

    def give_back(self, conn: Connection, url_ids: Collection[int]) -> None:
        release(conn, url_ids)


OnClaimed = Callable[[Connection, list[FetchTask]], None]
"""Run in the claim's transaction with what it claimed (the crawl primes robots.txt there)."""


class WriterClaims:
    """A claim strategy run as writer jobs (DESIGN §2.5: only the writer writes): the frontier's
    :class:`~crawler.run.frontier.ClaimSource`. A claim is asynchronous (a future); a give-back
    at shutdown waits, and is skipped when the writer failed (leases bring those URLs back)."""

    def __init__(self, writer: Writer, claims: Claims, on_claimed: OnClaimed | None = None) -> None:
        self._writer = writer
        self._claims = claims
        self._on_claimed = on_claimed

    def claim(self, n: int, exclude: Collection[int], per_host: int) -> Future[list[FetchTask]]:
        def job(conn: Connection) -> list[FetchTask]:
            tasks = self._claims.take(conn, n, exclude, per_host)
            if self._on_claimed is not None:
                self._on_claimed(conn, tasks)
            return tasks

        return self._writer.call(job)

    def give_back(self, tasks: Sequence[FetchTask], *, wait: bool = False) -> None:
        ids = [t.url_id for t in tasks]
        if not ids:
            return

        def job(conn: Connection) -> None:
            self._claims.give_back(conn, ids)

        if not wait:
            self._writer.call(job)
            return
        if self._writer.error is not None:
            return
        try:
            self._writer.run(job)
        except Exception as exc:  # the next run requeues them from their lease anyway
            log.warning("could not release %d claimed URLs: %s", len(ids), exc)
