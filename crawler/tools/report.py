"""``crawler report``: one self-contained HTML page about a crawl, with charts and tables.

The page needs no network to open: the CSS is inline, the charts are inline SVG (drawn by
:mod:`crawler.tools._svg`), and the only script (a few lines that sort tables on a click) is
inline too. Every value read from the database (URLs, titles, messages, host names) goes
through :func:`html.escape` before it is written, so a hostile page title stays text. Crawled
URLs appear as plain ``<a>`` links, and only when they are http(s).

Contents: summary figures; charts of status codes, fetches over time, response times, errors
by kind and by host, depth; tables of the top broken links (with the pages that link to them)
and of the slowest pages. Everything is aggregated in SQL (portable: SQLite and PostgreSQL),
except the time buckets, which are counted while streaming ``fetched_at`` (constant memory).

Must not: write to the database, load whole tables into memory, or reference anything outside
the file (no CDN scripts, fonts, images or style sheets).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, func, select, true

from crawler import __version__
from crawler.errors import UsageError
from crawler.tools import TOOLS
from crawler.tools._svg import Bar, bar_chart, column_chart, esc, legend, num
from crawler.tools.readonly import connect
from models import Crawl, Error, Fetch, Host, Link, Url

NAME = "report"

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


def register(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        NAME,
        help=TOOLS[NAME],
        description=(
            "Write one HTML file that opens without a network: status codes, fetches over "
            "time, response times, errors by kind and host, depth, the top broken links with "
            "their referrers, and the slowest pages."
        ),
        epilog=(
            "examples:\n"
            "  python -m crawler report --db crawl.db -o report.html\n"
            "  python -m crawler report --db crawl.db --crawl 3 -o run3.html"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-o", "--output", default="report.html", metavar="FILE", help="[report.html]"
    )
    parser.add_argument(
        "--crawl", type=int, metavar="ID", help="report on this run only (crawls.id) [all runs]"
    )
    return parser


def run(args: argparse.Namespace, db: str) -> int:
    with connect(db) as conn:
        data = collect(conn, args.crawl)
    source = Path(db).name if "://" not in db else db.split("://", 1)[0] + " database"
    page = render(data, source=source)
    out = Path(args.output)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return 0


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
    _collect_times(conn, rep, in_fetches)
    _collect_errors(conn, rep, in_errors)
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
    _collect_broken(conn, rep, in_fetches, in_errors)
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
    return rep


def _collect_times(conn: Connection, rep: Report, in_fetches: ColumnElement[bool]) -> None:
    bins = [Fetch.elapsed_ms < edge for edge in LATENCY_EDGES_MS]
    # Grouped by the label: PostgreSQL would see the CASE in GROUP BY as a different expression
    # (its bound parameters are numbered anew).
    index = case(*((cond, i) for i, cond in enumerate(bins)), else_=len(bins)).label("bin")
    counts: dict[int, int] = dict(
        conn.execute(select(index, func.count()).where(in_fetches).group_by("bin")).all()
    )
    labels = [f"<{_ms(LATENCY_EDGES_MS[0])}"]
    labels += [_ms_range(a, b) for a, b in itertools.pairwise(LATENCY_EDGES_MS)]
    labels += [f"≥{_ms(LATENCY_EDGES_MS[-1])}"]
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
    first, last = _aware(first), _aware(last)
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
        bucket = int((_aware(when) - start).total_seconds() // step)
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
    found: dict[int, Broken] = {}
    for uid, url, code, n in conn.execute(
        by_status.order_by(refs.desc(), Url.url).limit(TOP_BROKEN)
    ):
        found[uid] = Broken(url, _status_text(code), int(n))
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


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _status_text(code: int) -> str:
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


# --------------------------------------------------------------------------- formatting


def _ms(value: float) -> str:
    return f"{value / 1000:g} s" if value >= 1000 else f"{value:g} ms"


def _ms_range(low: int, high: int) -> str:
    """``50–100 ms``, ``0.5–1 s``: one unit per label, the larger bound's."""
    if high >= 1000:
        return f"{low / 1000:g}–{high / 1000:g} s"
    return f"{low}–{high} ms"


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _link(url: str) -> str:
    text = esc(url)
    if url.lower().startswith(("http://", "https://")):
        return f'<a href="{text}" rel="noreferrer noopener">{text}</a>'
    return text


# --------------------------------------------------------------------------- charts (SVG)

COLORS = {
    "ok": "#2f9e44",
    "redirect": "#1c7ed6",
    "client": "#f08c00",
    "server": "#e03131",
    "muted": "#adb5bd",
    "accent": "#5f3dc4",
}


def _status_color(code: int) -> str:
    if code >= 500:
        return COLORS["server"]
    if code >= 400:
        return COLORS["client"]
    if code >= 300:
        return COLORS["redirect"]
    return COLORS["ok"]


# --------------------------------------------------------------------------- page


def render(rep: Report, *, source: str) -> str:
    """The whole HTML document."""
    scope = f"crawl {rep.crawl_id}" if rep.crawl_id else f"{len(rep.runs)} crawl run(s)"
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        _card("Status codes", _status_chart(rep), "Fetches by HTTP status of the final response."),
        _card("Fetches over time", _timeline_chart(rep), _timeline_note(rep)),
        _card("Response times", _latency_chart(rep), _latency_note(rep)),
        _card("Depth", _depth_chart(rep), "Pages fetched by links followed from a seed."),
        _card("Errors by kind", _errors_chart(rep.errors_by_kind, 150), _errors_note(rep)),
        _card(
            "Errors by host",
            _errors_chart(rep.errors_by_host, 210),
            f"Hosts with the most error rows (top {TOP_HOSTS}).",
        ),
    ]
    return _PAGE.format(
        title=esc(f"Crawl report: {source}"),
        css=_CSS,
        script=_SCRIPT,
        heading=esc(source),
        scope=esc(scope),
        generated=esc(generated),
        version=esc(__version__),
        summary=_summary(rep),
        charts="\n".join(sections),
        broken=_broken_table(rep),
        slowest=_slowest_table(rep),
    )


def _card(title: str, body: str, note: str) -> str:
    return (
        f'<section class="card"><h2>{esc(title)}</h2><p class="note">{esc(note)}</p>'
        f"{body}</section>"
    )


def _summary(rep: Report) -> str:
    starts = [r[1] for r in rep.runs]
    ends = [r[2] for r in rep.runs if r[2] is not None]
    took = (max(ends) - min(starts)).total_seconds() if starts and ends else None
    ok = sum(n for code, n in rep.status if code < 400)
    figures = [
        ("fetches", num(rep.fetches)),
        ("URLs", num(rep.urls)),
        ("hosts", num(rep.hosts)),
        ("status < 400", f"{100 * ok / rep.fetches:.1f} %" if rep.fetches else "–"),
        ("error rows", num(rep.error_rows)),
        ("body bytes", _bytes(rep.bytes)),
        ("median time", _ms(rep.percentiles["median"]) if rep.percentiles else "–"),
        ("wall time", _duration(took) if took is not None else "–"),
    ]
    cells = "".join(
        f'<div class="figure"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for k, v in figures
    )
    rows = "".join(
        f"<tr><td class=num>{i}</td><td>{esc(_when(s))}</td><td>{esc(_when(f))}</td>"
        f"<td>{esc(st)}</td><td class=num>{esc(num(p))}</td><td class=num>{esc(num(e))}</td>"
        "</tr>"
        for i, s, f, st, p, e in rep.runs
    )
    runs = (
        '<details><summary>Crawl runs</summary><table class="sortable"><thead><tr>'
        "<th>id</th><th>started</th><th>finished</th><th>status</th><th>pages</th>"
        f"<th>errors</th></tr></thead><tbody>{rows}</tbody></table></details>"
    )
    return f'<div class="figures">{cells}</div>{runs}'


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else _aware(value).strftime("%Y-%m-%d %H:%M:%S")


def _status_chart(rep: Report) -> str:
    bars = [Bar(str(c), ((n, _status_color(c)),), f"HTTP {c}: {num(n)}") for c, n in rep.status]
    key = legend(
        ("2xx", COLORS["ok"]),
        ("3xx", COLORS["redirect"]),
        ("4xx", COLORS["client"]),
        ("5xx", COLORS["server"]),
    )
    return column_chart(bars, x_title="HTTP status", y_title="fetches") + key


def _timeline_chart(rep: Report) -> str:
    if not rep.timeline:
        return '<p class="empty">nothing to show</p>'
    days = rep.timeline[-1][0] - rep.timeline[0][0] >= dt.timedelta(days=1)
    bars = [
        Bar(
            _clock(start, rep.bucket_s, days=days),
            ((ok, COLORS["ok"]), (bad, COLORS["server"])),
            f"{start:%Y-%m-%d %H:%M:%S} UTC: {num(ok)} fetches below 400, {num(bad)} at 400+",
        )
        for start, ok, bad in rep.timeline
    ]
    every = max(1, math.ceil(len(bars) / (6 if days else 8)))
    chart = column_chart(
        bars,
        x_title="time (UTC)",
        y_title=f"fetches per {_step(rep.bucket_s)}",
        label_every=every,
        values=len(bars) <= 12,
    )
    return chart + legend(("status < 400", COLORS["ok"]), ("status ≥ 400", COLORS["server"]))


def _clock(when: dt.datetime, step: float, *, days: bool) -> str:
    """A time-axis label, as precise as the bucket: ``10:04:05.5``, ``10:04:05``, ``10:04``."""
    if days:
        return when.strftime("%m-%d %H:%M")
    if step < 1:
        return when.strftime("%H:%M:%S.%f")[:-5]
    return when.strftime("%H:%M:%S" if step < 60 else "%H:%M")


def _step(seconds: float) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def _timeline_note(rep: Report) -> str:
    return f"Completed fetches per {_step(rep.bucket_s)} bucket, by the time each one finished."


def _latency_chart(rep: Report) -> str:
    bars = [Bar(label, ((n, COLORS["accent"]),)) for label, n in rep.latency]
    return column_chart(bars, x_title="response time (request to end of body)", y_title="fetches")


def _latency_note(rep: Report) -> str:
    if not rep.percentiles:
        return "No fetches."
    p = rep.percentiles
    return f"Median {_ms(p['median'])}, 90th percentile {_ms(p['p90'])}, 99th {_ms(p['p99'])}."


def _depth_chart(rep: Report) -> str:
    bars = [Bar(str(d), ((n, COLORS["redirect"]),), f"depth {d}: {num(n)}") for d, n in rep.depth]
    return column_chart(bars, x_title="depth (links from a seed)", y_title="URLs fetched")


def _errors_chart(rows: Sequence[tuple[str, int, int]], label_width: int) -> str:
    bars = [
        Bar(name, ((f, COLORS["server"]), (r, COLORS["muted"])), f"{name}: {f} final, {r} retried")
        for name, f, r in rows
    ]
    if not bars:
        return '<p class="empty">No errors.</p>'
    key = legend(("final", COLORS["server"]), ("retried", COLORS["muted"]))
    return bar_chart(bars, x_title="error rows (failed attempts)", label_width=label_width) + key


def _errors_note(rep: Report) -> str:
    return f"{num(rep.error_rows)} failed attempts; final ones were not retried."


def _broken_table(rep: Report) -> str:
    if not rep.broken:
        return '<p class="empty">No broken links.</p>'
    rows = []
    for item in rep.broken:
        refs = "".join(f"<li>{_link(u)}</li>" for u in item.examples)
        more = item.referrers - len(item.examples)
        if more > 0:
            refs += f'<li class="more">and {esc(num(more))} more</li>'
        rows.append(
            f"<tr><td class=url>{_link(item.url)}</td><td>{esc(item.problem)}</td>"
            f"<td class=num>{esc(num(item.referrers))}</td><td><ul>{refs}</ul></td></tr>"
        )
    shown = f"{len(rep.broken)} of {num(rep.broken_total)}, the most linked-to first."
    return (
        f'<p class="note">{esc(shown)}</p><table class="sortable fixed">'
        '<colgroup><col style="width:34%"><col style="width:24%"><col style="width:10%">'
        '<col style="width:32%"></colgroup><thead><tr><th>URL</th>'
        "<th>problem</th><th>linked from</th><th>referring pages</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _slowest_table(rep: Report) -> str:
    if not rep.slowest:
        return '<p class="empty">No fetches.</p>'
    rows = "".join(
        f"<tr><td class=url>{_link(url)}</td><td>{esc(title)}</td><td class=num>{code}</td>"
        f"<td class=num data-sort={ms}>{esc(_ms(ms))}</td>"
        f"<td class=num data-sort={size or 0}>{esc(_bytes(size) if size is not None else '')}</td>"
        "</tr>"
        for url, code, title, ms, size in rep.slowest
    )
    return (
        '<table class="sortable"><thead><tr><th>URL</th><th>title</th><th>status</th>'
        f"<th>time</th><th>size</th></tr></thead><tbody>{rows}</tbody></table>"
    )


_CSS = """
:root { --ink:#212529; --soft:#495057; --line:#dee2e6; --bg:#f4f5f7; --card:#fff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { background: #212529; color: #f8f9fa; padding: 18px 32px; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; }
header p { margin: 4px 0 0; color: #ced4da; }
main { max-width: 1360px; margin: 0 auto; padding: 20px 32px 40px; }
h2 { font-size: 16px; margin: 0 0 2px; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr));
  gap: 12px; margin-bottom: 12px; }
.figure { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 14px; }
.figure b { display: block; font-size: 22px; font-variant-numeric: tabular-nums; }
.figure span { color: var(--soft); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; }
details { margin: 4px 0 18px; } summary { cursor: pointer; color: var(--soft); }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 16px; min-width: 0; }
.card.wide { margin-top: 16px; }
.note { margin: 0 0 8px; color: var(--soft); font-size: 12.5px; }
svg.chart { display: block; width: 100%; height: auto; max-width: 760px; }
svg text { font-family: inherit; fill: var(--soft); }
svg .tick { font-size: 11px; } svg .value { font-size: 11px; fill: var(--ink); }
svg .label { font-size: 12px; fill: var(--ink); }
svg .axis-title { font-size: 12px; font-weight: 600; fill: var(--soft); }
svg .grid { stroke: #e9ecef; stroke-width: 1; } svg .axis { stroke: #868e96; stroke-width: 1; }
svg g:hover rect { opacity: .8; }
.legend { display: flex; gap: 14px; font-size: 12px; color: var(--soft); margin-top: 4px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 5px; vertical-align: -1px; }
.empty { color: var(--soft); font-style: italic; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
table.fixed { table-layout: fixed; } table.fixed td { overflow-wrap: anywhere; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: #f8f9fa; font-weight: 600; cursor: pointer; user-select: none;
  white-space: nowrap; position: sticky; top: 0; }
th.asc::after { content: " ▲"; } th.desc::after { content: " ▼"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.url { overflow-wrap: anywhere; min-width: 240px; max-width: 480px; }
td ul { margin: 0; padding-left: 16px; } td li { overflow-wrap: anywhere; }
li.more { color: var(--soft); list-style: none; margin-left: -16px; }
a { color: #1864ab; text-decoration: none; } a:hover { text-decoration: underline; }
footer { color: var(--soft); font-size: 12px; margin-top: 24px; }
"""

_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      var key = function (row) {
        var cell = row.cells[col], v = cell.dataset.sort || cell.textContent.replace(/\\s/g, "");
        var n = parseFloat(v);
        return isNaN(n) || !/^-?[0-9.]+$/.test(v) ? cell.textContent.toLowerCase() : n;
      };
      Array.from(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b);
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      }).forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header><h1>Crawl report: {heading}</h1><p>{scope} · generated {generated}</p></header>
<main>
{summary}
<div class="grid2">
{charts}
</div>
<section class="card wide"><h2>Top broken links</h2>
<p class="note">URLs whose latest fetch answered 400 or more, or that failed for good (no answer,
a redirect loop, ...), with the pages that link to them.</p>
{broken}
</section>
<section class="card wide"><h2>Slowest pages</h2>
<p class="note">Fetches by time from the first request to the end of the body, redirects
included.</p>
{slowest}
</section>
<footer>Made by crawler {version}. This file is self-contained: it loads nothing from the
network. Click a column heading to sort a table.</footer>
</main>
<script>{script}</script>
</body>
</html>
"""
