"""The six scenarios of issue 8, each a function ``(ctx) -> dict`` runnable alone.

Each returns a JSON-ready dict with at least ``scenario``, ``title``, ``server``, ``rows``
(one :class:`~bench.measure.PeerRow` dict per crawler run) and ``metrics`` (the figures its
target is judged by); :mod:`bench.__main__` prints and saves them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import measure, servers, sitegen


@dataclass(frozen=True)
class Sizes:
    name: str
    pages: int
    """Scenario 1: pages on the one host."""
    latency_pages_per_host: int
    """Scenario 2: pages on each of the 20 hosts."""
    polite_pages_per_host: int
    """Scenario 3: pages on each of the 50 hosts."""
    frontier_base: int
    frontier_target: int
    """Scenario 4: URLs discovered in the small and the large run."""
    many_hosts: int
    many_delay_s: float
    """Scenario 5: hosts of 5 pages, and the per-host delay."""
    writer_rows: int
    """Scenario 6: link rows stored."""
    timeout_s: float
    """Longest any one subprocess may run."""


FULL = Sizes("full", 20_000, 250, 100, 10_000, 1_000_000, 1000, 20.0, 1_000_000, 3600)
QUICK = Sizes("quick", 2_000, 50, 20, 10_000, 100_000, 200, 4.0, 100_000, 600)
TINY = Sizes("tiny", 40, 3, 2, 200, 600, 4, 0.1, 2_000, 120)
SIZES = {s.name: s for s in (FULL, QUICK, TINY)}

LATENCY_S = 0.5
LATENCY_HOSTS = 20
LATENCY_WORKERS = 64
LATENCY_PER_HOST = 4
POLITE_HOSTS = 50
CRAWL_DELAY_S = 0.5
FANOUT = 50
PAGES_PER_MANY_HOST = 5


@dataclass
class Context:
    sizes: Sizes
    workdir: Path
    server_kind: str
    """auto, nginx or python: for the static-site scenarios (1)."""
    seed: int = 0
    results: dict[str, Any] | None = None
    """Earlier scenarios' results of this invocation (scenario 6 compares with scenario 1)."""


def _ours_on_py_server(
    ctx: Context,
    wd: Path,
    site: sitegen.StaticSite,
    settings: dict[str, Any],
    *,
    latency_s: float = 0.0,
) -> tuple[servers.PyServer, measure.PeerRow, list[tuple[str, str, float]]]:
    """Crawl ``site`` with ``settings`` from the logging Python server (the scenarios that
    judge timing by what the server saw); the server, our row and the server's request log."""
    srv = servers.PyServer(
        site.hosts,
        root=site.root,
        latency_s=latency_s,
        log=True,
        lifetime_s=ctx.sizes.timeout_s * 2,
    ).start()
    try:
        row, _ = measure.run_ours(
            wd / "ours",
            site.seeds(srv.port),
            settings,
            expected=site.total_pages,
            timeout_s=ctx.sizes.timeout_s,
        )
    finally:
        srv.stop()
    assert srv.log is not None
    return srv, row, srv.log


def _rate(log: list[tuple[str, str, float]], skip: tuple[str, ...] = ("/robots.txt",)) -> float:
    """Steady rate seen by the server: requests / (last start - first start)."""
    times = sorted(t for _h, p, t in log if p not in skip)
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def _gaps(log: list[tuple[str, str, float]], include_robots: bool) -> list[float]:
    """Every gap between two consecutive request starts on one host."""
    per_host: dict[str, list[float]] = defaultdict(list)
    for host, path, t in log:
        if include_robots or path != "/robots.txt":
            per_host[host].append(t)
    gaps: list[float] = []
    for times in per_host.values():
        times.sort()
        gaps.extend(b - a for a, b in itertools.pairwise(times))
    return gaps


# ------------------------------------------------------------------------------- 1 throughput


def throughput(ctx: Context) -> dict[str, Any]:
    """Zero latency, 1 host, 32 workers, politeness off: us vs Scrapy vs the plain pattern."""
    n = ctx.sizes.pages
    wd = ctx.workdir / "throughput"
    hosts = sitegen.host_addresses(1)
    t0 = time.perf_counter()
    site = sitegen.generate(wd / "site", hosts, n, seed=ctx.seed)
    gen_s = time.perf_counter() - t0
    timeout = ctx.sizes.timeout_s
    srv = servers.static_server(site.root, hosts, wd / "nginx", ctx.server_kind, timeout * 4)
    try:
        seeds = site.seeds(srv.port)
        rows: list[measure.PeerRow] = []
        notes: list[str] = []

        def run_ours() -> tuple[measure.PeerRow, measure.OurCounts]:
            return measure.run_ours(
                wd / "ours", seeds, measure.POLITENESS_OFF, expected=n, timeout_s=timeout
            )

        # Ours runs before and after Scrapy, and counts as both: the machine's speed drifts
        # over minutes, and a ratio of two runs minutes apart carried that drift.
        first, _ = run_ours()
        scrapy = measure.run_scrapy(
            wd / "scrapy", seeds, list(hosts), expected=n, timeout_s=timeout
        )
        second, counts = run_ours()
        if scrapy is None:
            notes.append(measure.SCRAPY_MISSING)
            print(f"note: {measure.SCRAPY_MISSING}", flush=True)
        else:
            rows.append(scrapy)
        rows.append(measure.run_plain(wd / "plain", seeds, expected=n, timeout_s=timeout))
        ours = measure.bracket("ours", [first, second])
        rows.append(ours)
        notes.append(f"ours, before and after Scrapy: {ours.note}")
    finally:
        srv.stop()
    ratios: dict[str, dict[str, float | None]] = {}
    if scrapy is not None and scrapy.pages:
        for row in rows:
            ratios[row.peer] = {
                "pages_per_s": _ratio(row.pages_per_s, scrapy.pages_per_s),
                "cpu_per_page": _ratio(row.cpu_ms_per_page, scrapy.cpu_ms_per_page),
                "peak_rss": _ratio(row.peak_rss_mb, scrapy.peak_rss_mb),
            }
    mine = ratios.get("ours", {})
    return {
        "scenario": "throughput",
        "title": "1 throughput: zero latency, 1 host, 32 workers, politeness off",
        "server": srv.label,
        "site": {
            "pages": n,
            "hosts": len(hosts),
            "mean_page_bytes": site.bytes // n,
            "generate_s": round(gen_s, 2),
        },
        "rows": [r.as_dict() for r in rows],
        "ratios_to_scrapy": ratios,
        "metrics": {
            "ours_pages_per_s": ours.pages_per_s,
            "ours_cpu_ms_per_page": ours.cpu_ms_per_page,
            "ours_peak_rss_mb": ours.peak_rss_mb,
            "ours_links_stored": counts.links,
            "x_scrapy_pages_per_s": mine.get("pages_per_s"),
            "x_scrapy_cpu_per_page": mine.get("cpu_per_page"),
            "x_scrapy_peak_rss": mine.get("peak_rss"),
        },
        "targets": {
            "x_scrapy_pages_per_s": ">= 4",
            "x_scrapy_cpu_per_page": "<= 0.333",
            "x_scrapy_peak_rss": "<= 1",
        },
        "notes": notes,
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


# ------------------------------------------------------------------------------- 2 latency


def latency(ctx: Context) -> dict[str, Any]:
    """20 hosts, 64 workers, 4 per host, 500 ms per response: limit min(64, 80) / 0.5."""
    pph = ctx.sizes.latency_pages_per_host
    wd = ctx.workdir / "latency"
    hosts = sitegen.host_addresses(LATENCY_HOSTS)
    site = sitegen.generate(wd / "site", hosts, pph, seed=ctx.seed)
    limit = min(LATENCY_WORKERS, LATENCY_HOSTS * LATENCY_PER_HOST) / LATENCY_S
    settings = {
        "crawl": {"workers": LATENCY_WORKERS},
        "politeness": {
            "obey_robots": False,
            "delay": 0,
            "per_host_concurrency": LATENCY_PER_HOST,
        },
    }
    srv, row, log = _ours_on_py_server(ctx, wd, site, settings, latency_s=LATENCY_S)
    steady = _rate(log)
    return {
        "scenario": "latency",
        "title": (
            f"2 latency-bound: {LATENCY_HOSTS} hosts, {LATENCY_WORKERS} workers, "
            f"{LATENCY_PER_HOST} per host, {LATENCY_S * 1000:g} ms per response"
        ),
        "server": srv.label,
        "site": {"pages": site.total_pages, "hosts": len(hosts)},
        "rows": [row.as_dict()],
        "metrics": {
            "limit_pages_per_s": limit,
            "pages_per_s": row.pages_per_s,
            "pct_of_limit": round(100 * row.pages_per_s / limit, 1),
            "steady_pages_per_s": round(steady, 2),
            "steady_pct_of_limit": round(100 * steady / limit, 1),
            "max_in_flight_seen": _max_in_flight(log, LATENCY_S),
        },
        "targets": {"steady_pct_of_limit": ">= 90"},
        "notes": [
            "pages_per_s counts the whole process (start-up, migrations, the slow first "
            "pages while few URLs are known); steady_* is the server's view, first request "
            "to last."
        ],
    }


def _max_in_flight(log: list[tuple[str, str, float]], latency_s: float) -> int:
    """Requests in flight at once, from start times and a fixed response time."""
    events = sorted([(t, 1) for _h, _p, t in log] + [(t + latency_s, -1) for _h, _p, t in log])
    cur = best = 0
    for _t, d in events:
        cur += d
        best = max(best, cur)
    return best


# ------------------------------------------------------------------------------- 3 politeness


def politeness(ctx: Context) -> dict[str, Any]:
    """50 hosts with ``Crawl-delay: 0.5`` in robots.txt: limit 100 pages/s."""
    pph = ctx.sizes.polite_pages_per_host
    wd = ctx.workdir / "politeness"
    hosts = sitegen.host_addresses(POLITE_HOSTS)
    site = sitegen.generate(wd / "site", hosts, pph, seed=ctx.seed, crawl_delay=CRAWL_DELAY_S)
    limit = POLITE_HOSTS / CRAWL_DELAY_S
    settings = {
        "crawl": {"workers": 64},
        "politeness": {"obey_robots": True, "delay": 0, "per_host_concurrency": 2},
    }
    srv, row, log = _ours_on_py_server(ctx, wd, site, settings)
    gaps = _gaps(log, include_robots=False)
    all_gaps = _gaps(log, include_robots=True)
    steady = _rate(log)
    return {
        "scenario": "politeness",
        "title": (
            f"3 politeness-bound: {POLITE_HOSTS} hosts, Crawl-delay {CRAWL_DELAY_S:g} s "
            "in robots.txt"
        ),
        "server": srv.label,
        "site": {"pages": site.total_pages, "hosts": len(hosts)},
        "rows": [row.as_dict()],
        "metrics": {
            "limit_pages_per_s": limit,
            "pages_per_s": row.pages_per_s,
            "pct_of_limit": round(100 * row.pages_per_s / limit, 1),
            "steady_pages_per_s": round(steady, 2),
            "steady_pct_of_limit": round(100 * steady / limit, 1),
            "min_gap_ms": round(1000 * min(gaps), 1) if gaps else None,
            "min_gap_with_robots_ms": round(1000 * min(all_gaps), 1) if all_gaps else None,
            "gaps_under_delay": sum(g < CRAWL_DELAY_S - 0.002 for g in gaps),
        },
        "targets": {"steady_pct_of_limit": ">= 90", "min_gap_ms": f">= {CRAWL_DELAY_S * 1000:g}"},
        "notes": [
            "gaps are between request starts on one host, as the Python server saw them "
            "(headers read); 2 ms of tolerance for its own scheduling."
        ],
    }


# ------------------------------------------------------------------------------- 4 frontier


_FRONTIER_PATH = re.compile(r"^/f/(\d+)\.html$")


def _frontier_dynamic(host: str, path: str) -> bytes | None:
    if path == "/":
        return sitegen.frontier_page(0, FANOUT)
    m = _FRONTIER_PATH.match(path)
    return sitegen.frontier_page(int(m.group(1)), FANOUT) if m else None


def frontier(ctx: Context) -> dict[str, Any]:
    """Pages that each link to 50 never-seen URLs; peak RSS at the target vs at the base size."""
    wd = ctx.workdir / "frontier"
    hosts = sitegen.host_addresses(1)
    srv = servers.PyServer(
        hosts, dynamic=_frontier_dynamic, lifetime_s=ctx.sizes.timeout_s * 3
    ).start()
    runs: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    try:
        for label, discovered in (
            ("base", ctx.sizes.frontier_base),
            ("target", ctx.sizes.frontier_target),
        ):
            max_pages = math.ceil((discovered - 1) / FANOUT)
            row, counts = measure.run_ours(
                wd / label,
                [f"http://{hosts[0]}:{srv.port}/"],
                measure.POLITENESS_OFF,
                expected=max_pages,
                timeout_s=ctx.sizes.timeout_s,
                extra=["--max-pages", str(max_pages)],
            )
            row.peer = f"ours ({label})"
            rows.append(row.as_dict())
            runs.append(
                {
                    "run": label,
                    "max_pages": max_pages,
                    "discovered_urls": counts.urls,
                    "peak_rss_mb": row.peak_rss_mb,
                }
            )
    finally:
        srv.stop()
    ratio = runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"] if runs[0]["peak_rss_mb"] else None
    return {
        "scenario": "frontier",
        "title": f"4 memory flat in the frontier: each page links to {FANOUT} new URLs",
        "server": srv.label,
        "rows": rows,
        "runs": runs,
        "metrics": {
            "discovered_base": runs[0]["discovered_urls"],
            "discovered_target": runs[1]["discovered_urls"],
            "peak_rss_base_mb": runs[0]["peak_rss_mb"],
            "peak_rss_target_mb": runs[1]["peak_rss_mb"],
            "rss_ratio": round(ratio, 3) if ratio else None,
        },
        "targets": {"rss_ratio": "<= 1.5"},
    }


# ------------------------------------------------------------------------------- 5 many hosts


def many_hosts(ctx: Context) -> dict[str, Any]:
    """Many hosts of 5 pages each, politeness on: does handing out a URL stay O(1) in hosts?"""
    n_hosts = ctx.sizes.many_hosts
    delay = ctx.sizes.many_delay_s
    wd = ctx.workdir / "many_hosts"
    hosts = sitegen.host_addresses(n_hosts)
    site = sitegen.generate(wd / "site", hosts, PAGES_PER_MANY_HOST, seed=ctx.seed)
    # Each host: its root at once, then 4 more pages `delay` apart at best.
    floor_s = (PAGES_PER_MANY_HOST - 1) * delay
    limit = site.total_pages / floor_s
    settings = {
        "crawl": {"workers": 64},
        "politeness": {"obey_robots": False, "delay": delay, "per_host_concurrency": 1},
    }
    srv, row, log = _ours_on_py_server(ctx, wd, site, settings)
    times = sorted(t for _h, _p, t in log)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    gaps = _gaps(log, include_robots=True)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for host, _path, t in log:
        first[host] = min(first.get(host, t), t)
        last[host] = max(last.get(host, t), t)
    host_spans = sorted(last[h] - first[h] for h in first)
    median_span = host_spans[len(host_spans) // 2] if host_spans else 0.0
    # The first round: every host's first request (1,000 new connections) takes time of its
    # own; after it, each host runs on its own clock.
    first_round = max(first.values()) - min(first.values()) if first else 0.0
    return {
        "scenario": "many_hosts",
        "title": (
            f"5 many hosts: {n_hosts} hosts x {PAGES_PER_MANY_HOST} pages, delay {delay:g} s, "
            "1 per host, 64 workers"
        ),
        "server": srv.label + f", {n_hosts} listening sockets in one selector",
        "site": {"pages": site.total_pages, "hosts": n_hosts},
        "rows": [row.as_dict()],
        "metrics": {
            "limit_pages_per_s": round(limit, 2),
            "floor_s": floor_s,
            "pages_per_s": row.pages_per_s,
            "pct_of_limit": round(100 * row.pages_per_s / limit, 1),
            "server_span_s": round(span, 2),
            "steady_pct_of_limit": round(100 * floor_s / span, 1) if span else None,
            "min_gap_ms": round(1000 * min(gaps), 1) if gaps else None,
            "first_round_s": round(first_round, 2),
            "median_host_span_s": round(median_span, 2),
            "max_host_span_s": round(host_spans[-1], 2) if host_spans else None,
            "per_host_pct_of_limit": round(100 * floor_s / median_span, 1) if median_span else None,
        },
        "targets": {"steady_pct_of_limit": ">= 90"},
        "notes": [
            "limit: all pages in (pages per host - 1) x delay, the time the politeness rules "
            "need; steady_pct = that floor / the server's first-to-last request span. "
            "first_round_s: from the first host's first request to the last host's first; "
            "per_host_pct: the floor / the median host's own first-to-last span."
        ],
    }


# ------------------------------------------------------------------------------- 6 writer


LINKS_PER_RESULT = 20


def writer(ctx: Context) -> dict[str, Any]:
    """Store link rows through the real Writer and ``store_results``, synthetic results."""
    from crawler.config import StoreSettings
    from crawler.records import (
        FetchResult,
        FetchTask,
        Link,
        NewLink,
        PageResult,
        ParsedPage,
        URLState,
    )
    from crawler.store.db import open_database
    from crawler.store.discovered import add_seeds, url_ids
    from crawler.store.runs import start_crawl
    from crawler.store.writer import Writer
    from crawler.urls import host_key

    wd = ctx.workdir / "writer"
    wd.mkdir(parents=True, exist_ok=True)
    db = wd / "writer.db"
    db.unlink(missing_ok=True)
    rows_wanted = ctx.sizes.writer_rows
    n_pages = math.ceil(rows_wanted / LINKS_PER_RESULT)
    base = "http://127.0.0.2:8000"
    host = host_key(base + "/")
    rng = random.Random(ctx.seed)
    # Half of the targets are new URLs, half are links to URLs already seen (as on real sites).
    universe = n_pages * LINKS_PER_RESULT // 2

    engine = open_database(str(db))
    store = StoreSettings(db=str(db))
    w = Writer(engine, store).start()
    now = dt.datetime.now(dt.UTC)
    crawl_id = w.run(
        lambda conn: start_crawl(conn, seed_file=None, settings={}, now=now, command="crawl")
    )
    w.crawl_id = crawl_id
    src_urls = [f"{base}/src/{i}.html" for i in range(n_pages)]
    for i in range(0, n_pages, 5000):
        chunk = [(u, host, "page") for u in src_urls[i : i + 5000]]
        w.run(lambda conn, c=chunk: add_seeds(conn, seeds=c, now=now, hosts=w.hosts))
    ids: dict[str, int] = {}
    for i in range(0, n_pages, 5000):
        part = src_urls[i : i + 5000]
        ids.update(w.run(lambda conn, p=part: url_ids(conn, p)))
    host_id = w.run(lambda conn: w.hosts.ids(conn, {host}))[host]

    def result(i: int) -> PageResult:
        url = src_urls[i]
        task = FetchTask(url_id=ids[url], url=url, host_id=host_id, host=host, depth=0)
        dsts = {f"{base}/p/{rng.randrange(universe)}.html" for _ in range(LINKS_PER_RESULT)}
        links = tuple(NewLink(u, host, False, True) for u in dsts)
        fetch = FetchResult(
            url=url,
            final_url=url,
            status_code=200,
            fetched_at=now,
            elapsed_ms=3,
            content_type="text/html",
            content_length=11_000,
        )
        parsed = ParsedPage(
            title=f"page {i}",
            links=tuple(Link(u) for u in dsts),
            content_hash=f"{i:064x}",
        )
        return PageResult(task, URLState.DONE, fetch=fetch, parsed=parsed, links=links)

    results = [result(i) for i in range(n_pages)]
    link_rows = sum(len(r.links) for r in results)
    # Phase 1: as fast as the writer takes them (the producer blocks on the full queue).
    start = time.perf_counter()
    for r in results:
        w.put(r)
    w.run(lambda conn: None)  # a job runs after everything put before it is committed
    elapsed = time.perf_counter() - start
    stored_links = w.run(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM links").scalar())
    stored_urls = w.run(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM urls").scalar())
    unthrottled_depth = w.max_queue_depth
    # Phase 2: paced at a crawl-like rate (scenario 1's, or 300 pages/s): does the queue grow?
    crawl_rate = 300.0
    if ctx.results and "throughput" in ctx.results:
        crawl_rate = max(crawl_rate, ctx.results["throughput"]["metrics"]["ours_pages_per_s"] * 2)
    paced_n = min(n_pages, max(50, int(crawl_rate * (3 if ctx.sizes.name != "tiny" else 0.3))))
    more = [result(i) for i in range(paced_n)]  # the same sources again: links are updated
    w.max_queue_depth = 0
    t0 = time.perf_counter()
    for k, r in enumerate(more):
        due = t0 + k / crawl_rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        w.put(r)
    w.run(lambda conn: None)
    paced_depth = w.max_queue_depth
    w.close()
    engine.dispose()
    return {
        "scenario": "writer",
        "title": (
            f"6 writer: {link_rows:,} link rows from {n_pages:,} synthetic pages "
            f"({LINKS_PER_RESULT} links each) through Writer + store_results"
        ),
        "server": "none (in process)",
        "rows": [],
        "metrics": {
            "link_rows": link_rows,
            "stored_links": stored_links,
            "stored_urls": stored_urls,
            "elapsed_s": round(elapsed, 2),
            "link_rows_per_s": round(link_rows / elapsed),
            "pages_per_s": round(n_pages / elapsed, 1),
            "queue_size": store.queue_size,
            "max_queue_depth_unthrottled": unthrottled_depth,
            "paced_pages_per_s": round(crawl_rate, 1),
            "max_queue_depth_paced": paced_depth,
        },
        "targets": {"max_queue_depth_paced": f"< {store.queue_size} (never full at crawl rate)"},
        "notes": [
            "unthrottled: the producer puts as fast as it can, so the queue fills to its bound "
            "and the producer waits (backpressure); paced: results arrive at twice scenario "
            "1's rate (at least 300 pages/s), as a crawl would deliver them."
        ],
    }


SCENARIOS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "throughput": throughput,
    "latency": latency,
    "politeness": politeness,
    "frontier": frontier,
    "many_hosts": many_hosts,
    "writer": writer,
}
