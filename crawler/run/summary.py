"""The few lines printed at the end of a crawl."""

from __future__ import annotations

import shlex

from crawler.records import CrawlStatus
from crawler.run.runner import CrawlOutcome
from crawler.store.db import is_sqlite, masked


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def format_summary(outcome: CrawlOutcome, *, db: str, resume: str | None = None) -> str:
    """``resume`` is the command that continues the crawl, shown when there is more to do."""
    s = outcome.stats
    by_count = sorted(s.errors_by_kind.items(), key=lambda kv: -kv[1])
    kinds = ", ".join(f"{k} {n}" for k, n in by_count)
    lines = [
        f"crawl {outcome.crawl_id} {outcome.status.value}"
        + (f" ({outcome.stop_reason})" if outcome.stop_reason else ""),
        f"  pages:   {s.pages} fetched, {s.ok_pages} ok, {s.failed} failed"
        + (f", {s.blocked} blocked by robots.txt" if s.blocked else "")
        + (f", {s.retries} retried attempts" if s.retries else ""),
        f"  errors:  {sum(s.errors_by_kind.values())}" + (f" ({kinds})" if kinds else ""),
        f"  time:    {s.elapsed_s:.1f} s, {s.pages_per_s:.1f} pages/s, {_size(s.bytes)}",
    ]
    if outcome.due is not None:
        lines.insert(
            1,
            f"  due:     {outcome.due} URLs; {s.changed} changed, {s.unchanged} unchanged "
            f"({s.not_modified} answered 304 Not Modified)",
        )
    if outcome.queued_left > 0:
        lines.append(f"  queued:  {outcome.queued_left} URLs left in the frontier")
    if outcome.abandoned:
        lines.append(f"  given up: {outcome.abandoned} fetches in flight, queued again")
    if outcome.status is CrawlStatus.INTERRUPTED or (
        outcome.queued_left > 0 and outcome.status is CrawlStatus.FINISHED
    ):
        command = resume or f"python -m crawler crawl --resume --db {shlex.quote(masked(db))}"
        lines.append(f"  resume:  {command}")
    if is_sqlite(db):
        query = "'select url, status_code, title from pages'"
        lines.append(f"  results: sqlite3 {shlex.quote(db)} {query}")
    return "\n".join(lines)
