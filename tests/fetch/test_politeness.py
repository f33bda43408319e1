"""Issue 3, end to end: per-host politeness, robots.txt, Retry-After and frontier order against
real loopback servers. The server's request log is the judge: what it saw is what the crawler
did, whatever the database says.

Shared helpers live here; the other ``test_polite_*.py`` files import them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from crawler.config import ScheduleSettings
from crawler.fetch.gate import RobotsCache
from crawler.fetch.robots import RobotsPolicy, policy_from_cache
from crawler.parse.links import LinkPolicy
from crawler.records import FetchTask, URLState
from crawler.run.work import ROBOTS_MAX_FAILURES, PageWorker
from crawler.urls import Scope
from tests.crawlkit import crawl, crawl_in_subprocess, query
from tests.mockserver import (
    FailThenSucceed,
    Page,
    Redirect,
    RequestRecord,
    SiteServer,
    generate_site,
    loopback_hosts,
)

pytestmark = pytest.mark.timeout(60)

POLITE = {"politeness": {"obey_robots": True}}
"""FAST turns robots.txt off; most tests here want it on."""


def layer(*dicts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Merge settings layers section by section (later wins)."""
    out: dict[str, dict[str, Any]] = {}
    for d in dicts:
        for section, values in d.items():
            out.setdefault(section, {}).update(values)
    return out


def by_host(log: Iterable[RequestRecord]) -> dict[str, list[RequestRecord]]:
    """Requests per arrival address, in order of start."""
    out: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in sorted(log, key=lambda r: r.started):
        out[r.host].append(r)
    return dict(out)


def start_gaps(records: list[RequestRecord]) -> list[float]:
    """Seconds between the starts of consecutive requests (records in start order)."""
    return [b.started - a.started for a, b in itertools.pairwise(records)]


def max_overlap(records: Iterable[RequestRecord]) -> int:
    """Most requests in flight at once, each from its arrival until its response began: a
    client may send its next request before the server has logged the last one finished."""
    events = sorted([(r.started, 1) for r in records] + [(r.responded, -1) for r in records])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def links_page(title: str, hrefs: Iterable[str], extra: str = "") -> Page:
    anchors = "".join(f'<a href="{h}">{h}</a>' for h in hrefs)
    return Page(f"<html><head><title>{title}</title>{extra}</head><body>{anchors}</body></html>")


def url_states(db: Path) -> dict[str, str]:
    return dict(query(db, "select url, state from urls"))


def fetched_urls(db: Path) -> list[str]:
    return [u for (u,) in query(db, "select u.url from fetches f join urls u on u.id = f.url_id")]


def gets(srv: SiteServer, path: str, host: str | None = None) -> list[RequestRecord]:
    return [r for r in srv.requests_for(path, host) if r.method == "GET"]


def robots(text: str) -> Page:
    return Page(text, content_type="text/plain")


# --------------------------------------------------------------------------- 1. politeness


@pytest.mark.timeout(120)
def test_twenty_hosts_polite_without_head_of_line_blocking(site_server, tmp_path: Path) -> None:
    hosts = loopback_hosts(20)
    srv = site_server(hosts=hosts)
    gen = generate_site(srv.hosts, 25, port=srv.port, seed=11, site=srv.site)
    settings = {
        "crawl": {"workers": 32},
        "politeness": {"obey_robots": True, "delay": 0.2, "per_host_concurrency": 2},
    }
    t0 = time.monotonic()
    # The crawler runs in its own process: the server's clock must not wait for its GIL.
    done = crawl_in_subprocess(tmp_path, gen.root_urls, settings=settings)
    wall = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    db = tmp_path / "crawl.db"

    log = srv.log
    assert set(fetched_urls(db)) == gen.expected_urls
    per_host = by_host(log)
    assert set(per_host) == set(hosts)
    for host, rs in per_host.items():  # robots.txt (404: allow all) once, before any page
        assert [r.path for r in rs].count("/robots.txt") == 1, host
        assert rs[0].path == "/robots.txt", host
        assert rs[0].responded <= rs[1].started, host
    # Concurrency: never more than 2 at once per host, by the server's own count and the log.
    assert max(srv.max_concurrent_per_host.values()) <= 2
    assert max(max_overlap(rs) for rs in per_host.values()) <= 2
    # Spacing, judged by the server: no host ever saw two requests start closer than 0.2 s.
    server_gaps = [g for rs in per_host.values() for g in start_gaps(rs)]
    server_min = min(server_gaps)
    assert server_min >= 0.2, f"two requests to one host {server_min:.4f}s apart"
    # Throughput: close to 20 hosts / 0.2 s = 100 pages/s, so no host held up another. Measured
    # over the crawl's own run (the crawls row: from the first claim to the end, after the
    # database was opened and migrated), and shown for the whole CLI call and the server's log.
    pages = len(gen.expected_urls)
    [(run_s,)] = query(
        db, "select (julianday(finished_at) - julianday(started_at)) * 86400 from crawls"
    )
    span = max(r.finished for r in log) - min(r.started for r in log)
    rate = pages / run_s
    print(
        f"\n20 hosts: {pages} pages, {len(log)} requests; crawl run {run_s:.2f}s = {rate:.1f} "
        f"pages/s; CLI call {wall:.2f}s = {pages / wall:.1f} pages/s; server span {span:.2f}s "
        f"= {pages / span:.1f} pages/s; min gap at the server {server_min:.4f}s"
    )
    assert rate >= 80, f"{rate:.1f} pages/s over {run_s:.2f}s"


# --------------------------------------------------------------------------- 2. robots.txt


def test_robots_fetched_once_first_blocks_and_is_cached(site_server, tmp_path: Path) -> None:
    h2, h3, h4 = hosts = loopback_hosts(3)
    srv = site_server(hosts=hosts)
    rules = "User-agent: *\nDisallow: /private\n"
    srv.site.add("/robots.txt", robots(rules), host=h2)
    # h3: no robots.txt (404) → allow all; h4: 403 → allow all, whatever the body says.
    srv.site.add("/robots.txt", Page("User-agent: *\nDisallow: /\n", status=403), host=h4)
    hrefs = ["/a", "/b", "/c", "/private/x", "/private"]
    srv.site.add("/", links_page("root", hrefs))
    for path in [*hrefs[:-2], "/private/x", "/private"]:
        srv.site.add(path, links_page(path, []))
    assert crawl(tmp_path, [srv.url("/", h) for h in hosts], settings=POLITE) == 0
    db = tmp_path / "crawl.db"

    for host, rs in by_host(srv.log).items():
        assert [r.path for r in rs].count("/robots.txt") == 1, host
        assert rs[0].path == "/robots.txt", host
        assert rs[0].responded <= rs[1].started, host
    assert not [r for r in srv.log if r.host == h2 and r.path.startswith("/private")]
    for host in (h3, h4):
        assert {"/private", "/private/x"} <= {r.path for r in srv.log if r.host == host}

    states = url_states(db)
    for path in ("/private", "/private/x"):
        assert states[srv.url(path, h2)] == "blocked"
        assert states[srv.url(path, h3)] == states[srv.url(path, h4)] == "done"
    errs = query(
        db,
        "select u.url, e.kind, e.final from errors e join urls u on u.id = e.url_id",
    )
    assert sorted(errs) == sorted(
        [(srv.url("/private", h2), "robots", 1), (srv.url("/private/x", h2), "robots", 1)]
    )
    cached = {
        h: (txt, at is not None, cd)
        for h, txt, at, cd in query(
            db, "select host, robots_txt, robots_fetched_at, crawl_delay from hosts"
        )
    }
    assert cached[srv.base_url(h2)] == (rules, True, None)
    assert cached[srv.base_url(h3)] == ("", True, None)
    assert cached[srv.base_url(h4)] == ("", True, None)


def test_robots_cache_survives_resume_within_ttl(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add("/robots.txt", robots("User-agent: *\nDisallow: /private\n"))
    hrefs = [f"/p{i}" for i in range(8)] + ["/private"]
    srv.site.add("/", links_page("root", hrefs))
    for path in hrefs:
        srv.site.add(path, links_page(path, []))
    seeds = [srv.url("/")]
    one = {"politeness": {"obey_robots": True, "per_host_concurrency": 1}}
    db = tmp_path / "crawl.db"

    assert crawl(tmp_path, seeds, "--max-pages", "2", settings=one) == 0
    assert len(gets(srv, "/robots.txt")) == 1
    srv.reset_log()
    assert crawl(tmp_path, seeds, "--max-pages", "2", settings=one) == 0
    assert gets(srv, "/robots.txt") == [], "robots.txt fetched again within robots_ttl"
    assert len([r for r in srv.log if r.path.startswith("/p")]) == 2
    srv.reset_log()
    expire = layer(one, {"politeness": {"robots_ttl": 0.0}})
    assert crawl(tmp_path, seeds, "--max-pages", "2", settings=expire) == 0
    assert len(gets(srv, "/robots.txt")) >= 1, "robots_ttl = 0 must fetch robots.txt again"
    srv.reset_log()
    assert crawl(tmp_path, seeds, settings=one) == 0
    assert gets(srv, "/robots.txt") == []
    assert not srv.requests_for("/private")
    assert url_states(db)[srv.url("/private")] == "blocked"
    assert query(db, "select count(*) from urls where state = 'done'") == [(9,)]


def test_robots_5xx_defers_the_host_and_requeues(site_server, tmp_path: Path) -> None:
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    srv.site.add("/robots.txt", FailThenSucceed(99, robots(""), status=500), host=h2)
    srv.site.add("/", links_page("root", ["/a", "/b"]))
    srv.site.add("/a", links_page("a", []))
    srv.site.add("/b", links_page("b", []))
    code = crawl(tmp_path, [srv.url("/", h) for h in hosts], "--max-time", "2", settings=POLITE)
    assert code == 0
    db = tmp_path / "crawl.db"
    assert {r.path for r in srv.log if r.host == h2} == {"/robots.txt"}, "page fetched anyway"
    assert {r.path for r in srv.log if r.host == h3} == {"/robots.txt", "/", "/a", "/b"}
    seed = srv.url("/", h2)
    assert url_states(db)[seed] == "queued"
    assert query(
        db,
        "select e.kind, e.final from errors e join urls u on u.id = e.url_id where u.url = ?",
        seed,
    ) == [("robots", 0)]
    assert query(db, "select robots_txt from hosts where host = ?", srv.base_url(h2)) == [(None,)]


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_robots_cache_retries_unreachable_then_worker_gives_up() -> None:
    clock = FakeClock()
    answers: list[RobotsPolicy] = []
    calls: list[str] = []

    def fetch(host: str) -> RobotsPolicy:
        calls.append(host)
        return answers.pop(0)

    host = "http://a.example"
    cache = RobotsCache(fetch, "crawler/0.1", ttl_s=3600, retry_s=60, clock=clock)
    answers += [RobotsPolicy(unreachable=True)] * 2
    policy, fresh, failures = cache.get(host)
    assert (policy.unreachable, fresh, failures, len(calls)) == (True, True, 1, 1)
    assert not policy.can_fetch(host + "/x")
    assert not cache.disallows(host + "/x", host)  # unreachable is "not now", not "blocked"
    clock.t += 59.9
    assert cache.get(host)[1:] == (False, 1)
    assert len(calls) == 1
    clock.t += 0.1
    assert cache.get(host)[1:] == (True, 2)
    assert len(calls) == 2
    answers.append(policy_from_cache("crawler/0.1", "User-agent: *\nDisallow: /x\n"))
    clock.t += 60
    policy, fresh, failures = cache.get(host)
    assert (policy.unreachable, fresh, failures) == (False, True, 0)
    assert cache.disallows(host + "/x", host)
    assert not cache.disallows(host + "/y", host)
    clock.t += 3599
    assert cache.get(host)[1] is False  # within the TTL
    answers.append(policy_from_cache("crawler/0.1", ""))
    clock.t += 1
    assert cache.get(host)[1] is True
    assert not cache.disallows(host + "/x", host)

    # prime(): a row younger than the TTL is trusted, an older one is not.
    cache.prime("http://b.example", "User-agent: *\nDisallow: /\n", age_s=3599)
    assert cache.known("http://b.example")
    assert cache.disallows("http://b.example/q", "http://b.example")
    cache.prime("http://c.example", "", age_s=3600)
    assert not cache.known("http://c.example")


def test_worker_requeues_then_gives_up_on_unreachable_robots() -> None:
    clock = FakeClock()
    cache = RobotsCache(
        lambda host: RobotsPolicy(unreachable=True), "crawler", ttl_s=3600, retry_s=60, clock=clock
    )
    pages: list[str] = []

    def page_fetch(url: str, **kw: Any) -> Any:
        pages.append(url)
        raise AssertionError("no page may be fetched while robots.txt is unreachable")

    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    worker = PageWorker(
        page_fetch,
        LinkPolicy(Scope(seed_hosts=frozenset({"http://a.example"}))),
        schedule=ScheduleSettings(default_interval=3600),
        now=lambda: now,
        robots=cache,
    )
    task = FetchTask(1, "http://a.example/p", 1, "http://a.example", 0)
    outcomes = []
    for _ in range(ROBOTS_MAX_FAILURES):
        result = worker(task)
        outcomes.append(
            (result.state, [(e.kind.value, e.final) for e in result.errors], result.retry_after_s)
        )
        clock.t += 60
    assert outcomes == [
        *[(URLState.QUEUED, [("robots", False)], 60)] * (ROBOTS_MAX_FAILURES - 1),
        (URLState.FAILED, [("robots", True)], None),
    ]
    assert pages == []


def test_crawl_delay_raises_one_hosts_spacing_only(site_server, tmp_path: Path) -> None:
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    srv.site.add("/robots.txt", robots("User-agent: crawler\nCrawl-delay: 0.5\n"), host=h2)
    hrefs = [f"/p{i}" for i in range(5)]
    srv.site.add("/", links_page("root", hrefs))
    for path in hrefs:
        srv.site.add(path, links_page(path, []))
    settings = {"politeness": {"obey_robots": True, "delay": 0.1, "per_host_concurrency": 2}}
    assert crawl(tmp_path, [srv.url("/", h) for h in hosts], settings=settings) == 0
    per_host = by_host(srv.log)
    assert len(per_host[h2]) == len(per_host[h3]) == 7  # robots.txt, /, 5 pages
    slow, base = start_gaps(per_host[h2]), start_gaps(per_host[h3])
    print(f"\ncrawl-delay host min gap {min(slow):.3f}s; base host min {min(base):.3f}s")
    assert min(slow) >= 0.5
    assert min(base) >= 0.1
    assert max(base) < 0.3, "the host without Crawl-delay was slowed down too"
    db = tmp_path / "crawl.db"
    assert query(db, "select crawl_delay from hosts where host = ?", srv.base_url(h2)) == [(0.5,)]
    assert query(db, "select crawl_delay from hosts where host = ?", srv.base_url(h3)) == [(None,)]


def test_user_agent_group_wins_over_star(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add(
        "/robots.txt",
        robots("User-agent: *\nDisallow: /\n\nUser-agent: crawler\nDisallow: /secret\n"),
    )
    srv.site.add("/", links_page("root", ["/a", "/secret"]))
    srv.site.add("/a", links_page("a", []))
    srv.site.add("/secret", links_page("secret", []))
    assert crawl(tmp_path, [srv.url("/")], settings=POLITE) == 0
    assert {r.path for r in srv.log} == {"/robots.txt", "/", "/a"}
    states = url_states(tmp_path / "crawl.db")
    assert states[srv.url("/secret")] == "blocked"
    assert states[srv.url("/a")] == "done"


def test_obey_robots_false_fetches_disallowed_pages(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add("/robots.txt", robots("User-agent: *\nDisallow: /\n"))
    srv.site.add("/", links_page("root", ["/a"]))
    srv.site.add("/a", links_page("a", []))
    settings = {"politeness": {"obey_robots": False}}
    assert crawl(tmp_path, [srv.url("/")], settings=settings) == 0
    assert sorted(r.path for r in srv.log) == ["/", "/a"]  # robots.txt not even asked for
    assert set(url_states(tmp_path / "crawl.db").values()) == {"done"}


def test_robots_redirects_followed_up_to_five_hops(site_server, tmp_path: Path) -> None:
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    rules = "User-agent: *\nDisallow: /private\n"
    for host, hops in ((h2, 5), (h3, 6)):
        chain = ["/robots.txt"] + [f"/hop{i}" for i in range(1, hops)] + ["/rules.txt"]
        for src, dst in itertools.pairwise(chain):
            srv.site.add(src, Redirect(dst), host=host)
        srv.site.add("/rules.txt", robots(rules), host=host)
    srv.site.add("/", links_page("root", ["/private", "/a"]))
    srv.site.add("/private", links_page("private", []))
    srv.site.add("/a", links_page("a", []))
    assert crawl(tmp_path, [srv.url("/", h) for h in hosts], settings=POLITE) == 0
    paths = {h: [r.path for r in rs] for h, rs in by_host(srv.log).items()}
    # 5 hops: followed, the rules apply; the file is read once.
    assert paths[h2].count("/rules.txt") == 1
    assert "/private" not in paths[h2]
    # 6 hops: unavailable, so allow all (RFC 9309 §2.3.1.2).
    assert "/rules.txt" not in paths[h3]
    assert "/private" in paths[h3]
    states = url_states(tmp_path / "crawl.db")
    assert states[srv.url("/private", h2)] == "blocked"
    assert states[srv.url("/private", h3)] == "done"


# --------------------------------------------------------------------------- 3. Retry-After


def retry_after_site(srv: SiteServer, h2: str, h3: str) -> None:
    srv.site.add("/", links_page("root", ["/ra", "/a1", "/a2", "/a3"]), host=h2)
    busy = Page("<title>ok</title>")
    srv.site.add("/ra", FailThenSucceed(1, busy, status=503, headers={"Retry-After": "1"}), host=h2)
    for p in ("/a1", "/a2", "/a3"):
        srv.site.add(p, Page(f"<title>{p}</title>"), host=h2)
    others = [f"/o{i}" for i in range(25)]
    srv.site.add("/", links_page("root", others), host=h3)
    for p in others:
        srv.site.add(p, Page(f"<title>{p}</title>"), host=h3)


RETRY_SETTINGS = {"politeness": {"delay": 0.08, "per_host_concurrency": 1}}


def test_retry_after_is_honoured_and_other_hosts_go_on(site_server, tmp_path: Path) -> None:
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    retry_after_site(srv, h2, h3)
    assert crawl(tmp_path, [srv.url("/", h) for h in hosts], settings=RETRY_SETTINGS) == 0
    first, second = gets(srv, "/ra", h2)
    assert (first.status, second.status) == (503, 200)
    assert second.started - first.responded >= 1.0
    meanwhile = [r for r in srv.log if r.host == h3 and first.finished < r.started < second.started]
    assert len(meanwhile) >= 5, "the other host waited too"
    db = tmp_path / "crawl.db"
    ra = srv.url("/ra", h2)
    assert query(db, "select status_code from pages where url = ?", ra) == [(200,)]
    assert url_states(db)[ra] == "done"
    assert query(
        db,
        "select e.kind, e.status_code, e.attempt, e.final from errors e "
        "join urls u on u.id = e.url_id where u.url = ?",
        ra,
    ) == [("http_status", 503, 1, 0)]


def test_retry_after_pushes_the_whole_host_back(site_server, tmp_path: Path) -> None:
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    retry_after_site(srv, h2, h3)
    # Two requests at once per host: while one waits out its Retry-After, the other slot is free.
    two = layer(RETRY_SETTINGS, {"politeness": {"per_host_concurrency": 2}})
    assert crawl(tmp_path, [srv.url("/", h) for h in hosts], settings=two) == 0
    first, second = gets(srv, "/ra", h2)
    # The wait starts when the 503 reaches the crawler (allow a request already on its way) and
    # ends after Retry-After: 1; then any request may go, the retry or another URL.
    on_its_way = 0.05
    during = [
        (r.path, round(r.started - first.responded, 3))
        for r in srv.log
        if r.host == h2 and first.finished + on_its_way < r.started < first.responded + 1.0
    ]
    assert during == []
    assert second.started >= first.responded + 1.0


# --------------------------------------------------------------------------- 4. frontier order


def tree_site(srv: SiteServer, fanout: int, levels: int) -> dict[str, int]:
    """A tree of pages: ``/`` → ``/n1-0`` … → ``/n1-0-2`` …; returns path → depth."""
    depth = {"/": 0}
    frontier = ["/"]
    for level in range(1, levels + 1):
        nxt = []
        for parent in frontier:
            stem = "/n" if parent == "/" else parent + "-"
            kids = [f"{stem}{level if parent == '/' else ''}{i}" for i in range(fanout)]
            srv.site.add(parent, links_page(parent, kids))
            for kid in kids:
                depth[kid] = level
            nxt += kids
        frontier = nxt
    for leaf in frontier:
        srv.site.add(leaf, links_page(leaf, []))
    return depth


@pytest.mark.parametrize("max_pages", [7, 12, 18])
def test_breadth_first_with_max_pages(site_server, tmp_path: Path, max_pages: int) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    depth = tree_site(srv, fanout=3, levels=3)  # 1 + 3 + 9 + 27 pages
    settings = {"politeness": {"per_host_concurrency": 1}}
    assert crawl(tmp_path, [srv.url("/")], "--max-pages", str(max_pages), settings=settings) == 0
    db = tmp_path / "crawl.db"
    rows = query(db, "select url, depth, state from urls")
    fetched = [d for _, d, s in rows if s == "done"]
    queued = [d for _, d, s in rows if s == "queued"]
    assert len(fetched) == max_pages
    assert queued
    assert max(fetched) <= min(queued)
    # The database's depth is the tree's, and the server saw the same pages.
    base = srv.url("/").rstrip("/")
    for url, d, _ in rows:
        assert depth[url[len(base) :] or "/"] == d
    assert len(srv.log) == max_pages


def test_higher_priority_is_fetched_first(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    hrefs = [f"/p{i}" for i in range(10)]
    srv.site.add("/", links_page("root", hrefs))
    for p in hrefs:
        srv.site.add(p, links_page(p, []))
    settings = {"politeness": {"per_host_concurrency": 1}}
    seeds = [srv.url("/")]
    assert crawl(tmp_path, seeds, "--max-pages", "1", settings=settings) == 0
    db = tmp_path / "crawl.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("update urls set priority = 5 where url = ?", (srv.url("/p7"),))
        con.execute("update urls set priority = 3 where url = ?", (srv.url("/p3"),))
        con.execute("update urls set priority = -1 where url = ?", (srv.url("/p0"),))
    con.close()
    srv.reset_log()
    assert crawl(tmp_path, seeds, "--max-pages", "2", settings=settings) == 0
    assert [r.path for r in sorted(srv.log, key=lambda r: r.started)] == ["/p7", "/p3"]
    srv.reset_log()
    assert crawl(tmp_path, seeds, settings=settings) == 0
    order = [r.path for r in sorted(srv.log, key=lambda r: r.started)]
    assert order[-1] == "/p0"
    assert sorted(order) == sorted(set(hrefs) - {"/p7", "/p3"})
