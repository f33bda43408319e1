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
import math
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from crawler import __version__
from crawler.tools import TOOLS
from crawler.tools._report_data import (
    TOP_HOSTS,
    Report,
    aware,
    collect,
    duration_text,
    ms_text,
    size_text,
)
from crawler.tools._svg import Bar, bar_chart, column_chart, esc, legend, num
from crawler.tools.readonly import connect

NAME = "report"


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


# --------------------------------------------------------------------------- rendering


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
    return _template("report.html").format(
        title=esc(f"Crawl report: {source}"),
        css=_template("report.css"),
        script=_template("report.js"),
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
        ("body bytes", size_text(rep.bytes)),
        ("median time", ms_text(rep.percentiles["median"]) if rep.percentiles else "–"),
        ("wall time", duration_text(took) if took is not None else "–"),
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
    return "" if value is None else aware(value).strftime("%Y-%m-%d %H:%M:%S")


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
    median, p90, p99 = ms_text(p["median"]), ms_text(p["p90"]), ms_text(p["p99"])
    return f"Median {median}, 90th percentile {p90}, 99th {p99}."


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
        f"<td class=num data-sort={ms}>{esc(ms_text(ms))}</td>"
        f"<td class=num data-sort={size or 0}>"
        f"{esc(size_text(size) if size is not None else '')}</td>"
        "</tr>"
        for url, code, title, ms, size in rep.slowest
    )
    return (
        '<table class="sortable"><thead><tr><th>URL</th><th>title</th><th>status</th>'
        f"<th>time</th><th>size</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _template(name: str) -> str:
    """A template shipped beside this module (package data): the page, its CSS, its script."""
    return resources.files("crawler.tools").joinpath(name).read_text(encoding="utf-8")
