"""Runs and the schedule: ``crawls`` rows (start, finish, latest settings) and the recrawl
queries (which URLs are due, how many, when the next is).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from crawler.records import (
    CrawlStatus,
    URLState,
)
from crawler.store.common import (
    crawls_t,
    urls_t,
)
from crawler.store.discovered import queued_count


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
