"""End-to-end crawls of a generated site on real loopback servers, into a real SQLite file."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.crawlkit import FAST, crawl, query, write_seeds, write_settings
from tests.mockserver import (
    Binary,
    FailThenSucceed,
    NotFound,
    Oversized,
    Page,
    Redirect,
    Slow,
    generate_site,
    loopback_hosts,
)

pytestmark = pytest.mark.timeout(90)


def test_crawl_generated_site_exactly(site_server, tmp_path: Path) -> None:
    hosts = loopback_hosts(3)
    srv = site_server(hosts=hosts)
    gen = generate_site(srv.hosts, 80, port=srv.port, seed=7, site=srv.site)
    h0 = hosts[0]
    missing = gen.add_linked("/gone.html", NotFound(), from_path="/p/4.html")
    flaky = gen.add_linked(
        "/flaky.html",
        FailThenSucceed(2, Page("<title>Flaky</title><a href='/p/1.html'>x</a>")),
        from_path="/",
    )
    srv.site.add("/r2", Redirect("/r3"), host=h0)
    srv.site.add("/r3", Redirect(f"http://{h0}:{srv.port}/p/3.html"), host=h0)
    chain = gen.add_linked("/r1", Redirect("r2"), from_path="/p/0.html")
    pdf = gen.add_linked("/doc.pdf", Binary(5000, "application/pdf"), from_path="/p/2.html")
    big = gen.add_linked("/big.html", Oversized(300_000), from_path="/p/5.html")
    always500 = gen.add_linked(
        "/broken.html", FailThenSucceed(99, Page("never")), from_path="/p/6.html"
    )

    code = crawl(
        tmp_path,
        gen.root_urls,
        settings={"fetch": {"max_body_bytes": 100_000, "retries": 3}},
    )
    db = tmp_path / "crawl.db"
    assert code == 0

    fetched = {
        u for (u,) in query(db, "select u.url from fetches f join urls u on u.id = f.url_id")
    }
    # /r1 redirects to /p/3.html. Whichever is reached first, /p/3.html is one page: fetched
    # under its own URL, or (when /r1 came first) known as done through /r1's fetch.
    p3 = f"http://{h0}:{srv.port}/p/3.html"
    p3_direct = p3 in fetched
    assert fetched | {p3} == gen.expected_urls
    assert query(db, "select state from urls where url = ?", p3) == [("done",)]
    # Each URL fetched exactly once.
    dupes = query(db, "select url_id, count(*) from fetches group by url_id having count(*) > 1")
    assert dupes == []

    # Error rows, exactly.
    errors = query(
        db,
        "select u.url, e.kind, e.status_code, e.attempt, e.final from errors e "
        "join urls u on u.id = e.url_id order by u.url, e.attempt",
    )
    expected_errors = sorted(
        [(missing, "http_status", 404, 1, 1)]
        + [(flaky, "http_status", 500, n, 0) for n in (1, 2)]
        + [(big, "too_large", 200, 1, 1)]
        + [(always500, "http_status", 500, n, 0) for n in (1, 2, 3)]
        + [(always500, "http_status", 500, 4, 1)]
    )
    assert sorted(errors) == expected_errors
    assert query(db, "select status_code from pages where url = ?", big) == [(200,)]

    # URL states.
    states = dict(query(db, "select url, state from urls"))
    assert states[missing] == "failed"
    assert states[always500] == "failed"
    assert states[big] == "failed"
    assert states[flaky] == "done"
    assert states[pdf] == "done"
    for url in gen.external_urls:
        assert states[url] == "excluded"
    for url in gen.nofollow_urls:
        assert states[url] == "excluded"
    assert query(db, "select count(*) from urls where state in ('queued', 'fetching')") == [(0,)]

    # The redirect chain is one fetch of /r1 with its final URL and hop count.
    assert query(
        db, "select final_url, redirects, status_code from pages where url = ?", chain
    ) == [(f"http://{h0}:{srv.port}/p/3.html", 3, 200)]
    # The non-HTML file is recorded, not parsed.
    assert query(db, "select content_type, title from pages where url = ?", pdf) == [
        ("application/pdf", None)
    ]
    # Titles come from the pages.
    assert query(db, "select title from pages where url = ?", gen.url("/p/10.html", hosts[1])) == [
        (f"{hosts[1]} /p/10.html",)
    ]

    # Link rows: every followable link, the nofollow ones flagged, external ones included.
    links = set(
        query(
            db,
            "select s.url, d.url, l.nofollow from links l join urls s on s.id = l.src_url_id "
            "join urls d on d.id = l.dst_url_id",
        )
    )
    # Pages the generator does not know about add theirs: /flaky.html's own link, and /r1, whose
    # fetch ended on /p/3.html, has the links of that page.
    expected_links = (
        gen.links | {(flaky, gen.url("/p/1.html"))} | {(chain, d) for s, d in gen.links if s == p3}
    )
    if not p3_direct:
        expected_links -= {(s, d) for s, d in gen.links if s == p3}
    assert {(s, d) for s, d, nf in links if not nf} == expected_links
    assert {(s, d) for s, d, nf in links if nf} == gen.nofollow_links

    # The run is on record.
    [(status, pages, nerrors, finished)] = query(
        db, "select status, pages_fetched, errors, finished_at is not null from crawls"
    )
    assert (status, finished) == ("finished", 1)
    assert pages == len(gen.expected_urls) - (0 if p3_direct else 1)
    assert nerrors == len(expected_errors)


def test_pool_never_exceeds_workers(site_server, tmp_path: Path) -> None:
    srv = site_server()
    links = "".join(f'<a href="/s/{i}">{i}</a>' for i in range(40))
    srv.site.add("/", Page(f"<title>root</title>{links}"))
    for i in range(40):
        srv.site.add(f"/s/{i}", Slow(0.15, Page(f"<title>{i}</title>")))
    code = crawl(
        tmp_path,
        [srv.url("/")],
        "--workers",
        "4",
        settings={"politeness": {"per_host_concurrency": 64}},
    )
    assert code == 0
    assert srv.max_concurrent == 4  # the pool was used fully, and never more
    assert query(tmp_path / "crawl.db", "select count(*) from fetches") == [(41,)]


def test_slow_page_does_not_hold_back_fast_rows(site_server, tmp_path: Path) -> None:
    srv = site_server()
    links = "".join(f'<a href="/f/{i}">{i}</a>' for i in range(20))
    srv.site.add("/", Page(f'<title>root</title><a href="/slow">slow</a>{links}'))
    srv.site.add("/slow", Slow(2.0, Page("<title>slow</title>")))
    for i in range(20):
        srv.site.add(f"/f/{i}", Page(f"<title>fast {i}</title>"))
    db = tmp_path / "crawl.db"
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(crawl(tmp_path, [srv.url("/")])))
    runner.start()
    committed_at = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and committed_at is None:
        try:
            n = query(db, "select count(*) from pages where title like 'fast %'")[0][0]
        except sqlite3.OperationalError:  # not created yet
            n = 0
        if n == 20:
            committed_at = time.monotonic()
        time.sleep(0.02)
    runner.join(30)
    assert result == [0]
    assert committed_at is not None
    [slow] = srv.requests_for("/slow")
    assert committed_at < slow.finished, "fast rows waited for the slow page"


def test_max_pages_and_max_depth(site_server, tmp_path: Path) -> None:
    srv = site_server()
    gen = generate_site(srv.hosts, 50, port=srv.port, seed=3, site=srv.site)
    assert crawl(tmp_path, gen.root_urls, "--max-pages", "10") == 0
    db = tmp_path / "crawl.db"
    assert query(db, "select count(*) from fetches") == [(10,)]
    # Breadth-first: the root is among them; nothing is left claimed.
    assert query(
        db, "select count(*) from fetches f join urls u on u.id=f.url_id where depth=0"
    ) == [(1,)]
    assert query(db, "select count(*) from urls where state = 'fetching'") == [(0,)]

    other = tmp_path / "depth"
    other.mkdir()
    assert crawl(other, gen.root_urls, "--max-depth", "1") == 0
    depths = query(
        other / "crawl.db", "select max(u.depth) from fetches f join urls u on u.id = f.url_id"
    )
    assert depths == [(1,)]


def test_nothing_fetchable_exits_1(tmp_path: Path) -> None:
    # Nothing listens on this port: every attempt is refused.
    settings = {"fetch": {"retries": 1}}
    assert crawl(tmp_path, ["http://127.0.0.1:9/"], settings=settings) == 1
    rows = query(tmp_path / "crawl.db", "select kind, attempt, final from errors order by attempt")
    assert rows == [("connect", 1, 0), ("connect", 2, 1)]
    assert query(tmp_path / "crawl.db", "select state from urls") == [("failed",)]


def test_database_is_readable_during_crawl_in_wal_mode(site_server, tmp_path: Path) -> None:
    srv = site_server()
    gen = generate_site(srv.hosts, 30, port=srv.port, site=srv.site)
    assert crawl(tmp_path, gen.root_urls) == 0
    # WAL while the crawl ran; finished, it is back in rollback-journal mode: one file.
    assert query(tmp_path / "crawl.db", "pragma journal_mode") == [("delete",)]
    assert query(tmp_path / "crawl.db", "pragma integrity_check") == [("ok",)]


def test_settings_written_to_crawl_row(site_server, tmp_path: Path) -> None:
    srv = site_server()
    srv.site.add("/", Page("<title>x</title>"))
    write_seeds(tmp_path / "s.txt", [srv.url("/")])
    write_settings(tmp_path / "c.toml", FAST)
    assert crawl(tmp_path, [srv.url("/")], "--workers", "3") == 0
    [(settings,)] = query(
        tmp_path / "crawl.db", "select json_extract(settings, '$.crawl.workers') from crawls"
    )
    assert settings == 3
