"""The figures of ``crawler report``, aggregated in SQL (portable: SQLite and PostgreSQL),
except the time buckets, which are counted while streaming ``fetched_at`` (constant memory);
and the small text formats the figures are shown in. Only reads.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, func, select, true

from crawler.errors import UsageError
from models import Crawl, Error, Fetch, Host, Link, Url

TOP_BROKEN = 50
TOP_SLOW = 25
TOP_HOSTS = 12
REFERRERS_SHOWN = 3
MAX_TIME_BUCKETS = 60

LATENCY_EDGES_MS = (50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)
"""Upper bounds of the response-time histogram's bins; one more bin holds the rest."""

TIME_STEPS_S: tuple[float, ...] = (
    0.1,
    0.2,
    0.5,
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
)
TIME_STEPS_S += (43200, 86400, 172800, 604800)


# --------------------------------------------------------------------------- data


@dataclass
class Broken:
    url: str
    problem: str
    referrers: int
    examples: list[str] = field(default_factory=list)


@dataclass
class Report:
    crawl_id: int | None
    runs: list[tuple[int, dt.datetime, dt.datetime | None, str, int, int]]
    fetches: int = 0
    urls: int = 0
    hosts: int = 0
    error_rows: int = 0
    bytes: int = 0
    percentiles: dict[str, int] = field(default_factory=dict)
    status: list[tuple[int, int]] = field(default_factory=list)
    timeline: list[tuple[dt.datetime, int, int]] = field(default_factory=list)
    """(bucket start, fetches with status < 400, fetches with status >= 400)."""
    bucket_s: float = 1
    latency: list[tuple[str, int]] = field(default_factory=list)
    errors_by_kind: list[tuple[str, int, int]] = field(default_factory=list)
    """(kind, final rows, retried rows)."""
    errors_by_host: list[tuple[str, int, int]] = field(default_factory=list)
    depth: list[tuple[int, int]] = field(default_factory=list)
    broken: list[Broken] = field(default_factory=list)
    broken_total: int = 0
    slowest: list[tuple[str, int, str | None, int, int | None]] = field(default_factory=list)


def collect(conn: Connection, crawl_id: int | None) -> Report:
    """Everything the page shows, read with aggregate queries."""
    in_fetches: ColumnElement[bool] = Fetch.crawl_id == crawl_id if crawl_id else true()
    in_errors: ColumnElement[bool] = Error.crawl_id == crawl_id if crawl_id else true()
    runs_q = select(
        Crawl.id,
        Crawl.started_at,
        Crawl.finished_at,
        Crawl.status,
        Crawl.pages_fetched,
        Crawl.errors,
    ).order_by(Crawl.id)
    if crawl_id:
        runs_q = runs_q.where(Crawl.id == crawl_id)
    rep = Report(crawl_id, [tuple(r) for r in conn.execute(runs_q)])  # type: ignore[misc]
    if crawl_id and not rep.runs:
        raise UsageError(f"no crawl {crawl_id} in this database")
    _collect_totals(conn, rep, in_fetches, in_errors)
    _collect_times(conn, rep, in_fetches)
    _collect_errors(conn, rep, in_errors)
    _collect_depth_and_slowest(conn, rep, in_fetches)
    _collect_broken(conn, rep, in_fetches, in_errors)
    return rep


def _collect_totals(
    conn: Connection,
    rep: Report,
    in_fetches: ColumnElement[bool],
    in_errors: ColumnElement[bool],
) -> None:
    fetches, urls, size = conn.execute(
        select(func.count(), func.count(Fetch.url_id.distinct()), func.sum(Fetch.content_length))
        .select_from(Fetch)
        .where(in_fetches)
    ).one()
    rep.fetches, rep.urls, rep.bytes = int(fetches), int(urls), int(size or 0)
    rep.hosts = int(
        conn.execute(
            select(func.count(Url.host_id.distinct()))
            .select_from(Fetch)
            .join(Url, Url.id == Fetch.url_id)
            .where(in_fetches)
        ).scalar_one()
    )
    rep.error_rows = int(
        conn.execute(select(func.count()).select_from(Error).where(in_errors)).scalar_one()
    )
    rep.status = [
        (int(c), int(n))
        for c, n in conn.execute(
            select(Fetch.status_code, func.count())
            .where(in_fetches)
            .group_by(Fetch.status_code)
            .order_by(Fetch.status_code)
        )
    ]


def _collect_depth_and_slowest(
    conn: Connection, rep: Report, in_fetches: ColumnElement[bool]
) -> None:
    rep.depth = [
        (int(d), int(n))
        for d, n in conn.execute(
            select(Url.depth, func.count(Fetch.url_id.distinct()))
            .select_from(Fetch)
            .join(Url, Url.id == Fetch.url_id)
            .where(in_fetches)
            .group_by(Url.depth)
            .order_by(Url.depth)
        )
    ]
    rep.slowest = [
        (r.url, r.status_code, r.title, r.elapsed_ms, r.content_length)
        for r in conn.execute(
            select(Url.url, Fetch.status_code, Fetch.title, Fetch.elapsed_ms, Fetch.content_length)
            .join(Url, Url.id == Fetch.url_id)
            .where(in_fetches)
            .order_by(Fetch.elapsed_ms.desc(), Fetch.id)
            .limit(TOP_SLOW)
        )
    ]


def _collect_times(conn: Connection, rep: Report, in_fetches: ColumnElement[bool]) -> None:
    bins = [Fetch.elapsed_ms < edge for edge in LATENCY_EDGES_MS]
    # Grouped by the label: PostgreSQL would see the CASE in GROUP BY as a different expression
    # (its bound parameters are numbered anew).
    index = case(*((cond, i) for i, cond in enumerate(bins)), else_=len(bins)).label("bin")
    counts: dict[int, int] = dict(
        conn.execute(select(index, func.count()).where(in_fetches).group_by("bin")).all()
    )
    labels = [f"<{ms_text(LATENCY_EDGES_MS[0])}"]
    labels += [ms_range_text(a, b) for a, b in itertools.pairwise(LATENCY_EDGES_MS)]
    labels += [f"≥{ms_text(LATENCY_EDGES_MS[-1])}"]
    rep.latency = [(label, int(counts.get(i, 0))) for i, label in enumerate(labels)]
    if rep.fetches:
        ordered = select(Fetch.elapsed_ms).where(in_fetches).order_by(Fetch.elapsed_ms)
        for name, q in (("median", 0.5), ("p90", 0.9), ("p99", 0.99)):
            offset = min(rep.fetches - 1, int(q * rep.fetches))
            value = conn.execute(ordered.offset(offset).limit(1)).scalar_one()
            rep.percentiles[name] = int(value)

    first, last = conn.execute(
        select(func.min(Fetch.fetched_at), func.max(Fetch.fetched_at)).where(in_fetches)
    ).one()
    if first is None:
        return
    first, last = aware(first), aware(last)
    span = (last - first).total_seconds()
    step = next((s for s in TIME_STEPS_S if span / s < MAX_TIME_BUCKETS), None)
    if step is None:  # over a year: whole days
        step = math.ceil(span / MAX_TIME_BUCKETS / 86400) * 86400
    start = dt.datetime.fromtimestamp(math.floor(first.timestamp() / step) * step, dt.UTC)
    ok: Counter[int] = Counter()
    bad: Counter[int] = Counter()
    rows = conn.execution_options(stream_results=True, yield_per=10_000).execute(
        select(Fetch.fetched_at, Fetch.status_code).where(in_fetches)
    )
    for when, code in rows:
        bucket = int((aware(when) - start).total_seconds() // step)
        (bad if code >= 400 else ok)[bucket] += 1
    n = int((last - start).total_seconds() // step) + 1
    rep.bucket_s = step
    rep.timeline = [(start + dt.timedelta(seconds=i * step), ok[i], bad[i]) for i in range(n)]


def _collect_errors(conn: Connection, rep: Report, in_errors: ColumnElement[bool]) -> None:
    final = func.sum(case((Error.final, 1), else_=0))
    total = func.count()
    rep.errors_by_kind = [
        (str(k), int(f or 0), int(t) - int(f or 0))
        for k, f, t in conn.execute(
            select(Error.kind, final, total)
            .where(in_errors)
            .group_by(Error.kind)
            .order_by(total.desc(), Error.kind)
        )
    ]
    rep.errors_by_host = [
        (str(h), int(f or 0), int(t) - int(f or 0))
        for h, f, t in conn.execute(
            select(Host.host, final, total)
            .select_from(Error)
            .join(Url, Url.id == Error.url_id)
            .join(Host, Host.id == Url.host_id)
            .where(in_errors)
            .group_by(Host.host)
            .order_by(total.desc(), Host.host)
            .limit(TOP_HOSTS)
        )
    ]


def _collect_broken(
    conn: Connection,
    rep: Report,
    in_fetches: ColumnElement[bool],
    in_errors: ColumnElement[bool],
) -> None:
    """URLs whose latest fetch answered 400 or more, and URLs that failed for good otherwise
    (no answer, a redirect loop, ...: the last final error says why); most linked-to first."""
    latest = (
        select(func.max(Fetch.id).label("id")).where(in_fetches).group_by(Fetch.url_id).subquery()
    )
    refs = func.count(Link.src_url_id)
    by_status = (
        select(Url.id, Url.url, Fetch.status_code, refs)
        .select_from(Fetch)
        .join(latest, latest.c.id == Fetch.id)
        .join(Url, Url.id == Fetch.url_id)
        .outerjoin(Link, Link.dst_url_id == Url.id)
        .where(Fetch.status_code >= 400)
        .group_by(Url.id, Url.url, Fetch.status_code)
    )
    status_ids = select(by_status.subquery().c.id)
    failed_ids = select(Error.url_id).where(in_errors, Error.final, Error.kind != "robots")
    by_error = (
        select(Url.id, Url.url, refs)
        .select_from(Url)
        .outerjoin(Link, Link.dst_url_id == Url.id)
        .where(Url.state == "failed", Url.id.in_(failed_ids), Url.id.not_in(status_ids))
        .group_by(Url.id, Url.url)
    )
    rep.broken_total = int(
        conn.execute(select(func.count()).select_from(by_status.subquery())).scalar_one()
        + conn.execute(select(func.count()).select_from(by_error.subquery())).scalar_one()
    )
    _broken_top(conn, rep, by_status, by_error, refs, in_errors)


def _broken_top(
    conn: Connection,
    rep: Report,
    by_status: Any,
    by_error: Any,
    refs: Any,
    in_errors: ColumnElement[bool],
) -> None:
    """The most linked-to broken URLs, each with why and a few of the pages linking to it."""
    found: dict[int, Broken] = {}
    for uid, url, code, n in conn.execute(
        by_status.order_by(refs.desc(), Url.url).limit(TOP_BROKEN)
    ):
        found[uid] = Broken(url, status_text(code), int(n))
    for uid, url, n in conn.execute(by_error.order_by(refs.desc(), Url.url).limit(TOP_BROKEN)):
        kind, message = conn.execute(
            select(Error.kind, Error.message)
            .where(Error.url_id == uid, in_errors, Error.final)
            .order_by(Error.id.desc())
            .limit(1)
        ).one()
        found[uid] = Broken(url, f"{kind}: {message}", int(n))
    top = sorted(found.items(), key=lambda kv: (-kv[1].referrers, kv[1].url))[:TOP_BROKEN]
    for uid, item in top:
        item.examples = list(
            conn.execute(
                select(Url.url)
                .join(Link, Link.src_url_id == Url.id)
                .where(Link.dst_url_id == uid)
                .order_by(Url.url)
                .limit(REFERRERS_SHOWN)
            ).scalars()
        )
    rep.broken = [item for _, item in top]


def aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def status_text(code: int) -> str:
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def ms_text(value: float) -> str:
    return f"{value / 1000:g} s" if value >= 1000 else f"{value:g} ms"


def ms_range_text(low: int, high: int) -> str:
    """``50–100 ms``, ``0.5–1 s``: one unit per label, the larger bound's."""
    if high >= 1000:
        return f"{low / 1000:g}–{high / 1000:g} s"
    return f"{low}–{high} ms"


def size_text(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
