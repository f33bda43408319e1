"""Issue 3, sitemaps: from robots.txt ``Sitemap:`` lines, sitemap indexes, ``.xml.gz`` and seeds
that are sitemaps. The server's request log is the judge."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from crawler.parse.sitemap_fields import priority_rank
from tests.crawlkit import crawl, query
from tests.fetch.test_politeness import POLITE, gets, layer, links_page, robots, url_states
from tests.mockserver import Page, loopback_hosts

pytestmark = pytest.mark.timeout(60)

XML = "application/xml"


def urlset(*entries: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        + "".join(entries)
        + "</urlset>"
    )


def entry(loc: str, lastmod: str = "", changefreq: str = "", priority: str = "") -> str:
    parts = [f"<loc>{loc}</loc>"]
    if lastmod:
        parts.append(f"<lastmod>{lastmod}</lastmod>")
    if changefreq:
        parts.append(f"<changefreq>{changefreq}</changefreq>")
    if priority:
        parts.append(f"<priority>{priority}</priority>")
    return "<url>" + "".join(parts) + "</url>"


def test_robots_sitemap_feeds_the_frontier(site_server, tmp_path: Path) -> None:
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    sm = srv.url("/sitemap.xml", h2)
    srv.site.add("/robots.txt", robots(f"User-agent: *\nAllow: /\nSitemap: {sm}\n"), host=h2)
    srv.site.add("/", links_page("root", ["/linked"]), host=h2)
    srv.site.add("/linked", links_page("linked", []), host=h2)
    srv.site.add("/orphan", links_page("orphan", []), host=h2)
    srv.site.add("/elsewhere", links_page("elsewhere", []), host=h3)
    srv.site.add(
        "/sitemap.xml",
        Page(
            urlset(
                entry(srv.url("/orphan", h2), "2024-01-02T03:04:05Z", "weekly", "0.8"),
                entry(srv.url("/linked", h2)),
                entry(srv.url("/elsewhere", h3), priority="1.0"),  # out of scope: skipped
            ),
            content_type=XML,
        ),
        host=h2,
    )
    settings = layer(POLITE, {"scope": {"use_sitemaps": True}})
    assert crawl(tmp_path, [srv.url("/", h2)], settings=settings) == 0
    assert len(gets(srv, "/sitemap.xml", h2)) == 1
    assert len(gets(srv, "/orphan", h2)) == 1
    assert len(gets(srv, "/linked", h2)) == 1
    assert not [r for r in srv.log if r.host == h3]
    db = tmp_path / "crawl.db"
    rows = {
        u: rest
        for u, *rest in query(
            db,
            "select url, state, kind, priority, strftime('%Y-%m-%dT%H:%M:%S', lastmod), "
            "changefreq from urls",
        )
    }
    assert rows[sm][:2] == ["done", "sitemap"]
    assert rows[srv.url("/orphan", h2)] == [
        "done",
        "page",
        priority_rank(0.8),
        "2024-01-02T03:04:05",
        "weekly",
    ]
    assert srv.url("/elsewhere", h3) not in rows


def test_use_sitemaps_false_ignores_robots_sitemap_lines(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    sm = srv.url("/sitemap.xml")
    srv.site.add("/robots.txt", robots(f"Sitemap: {sm}\n"))
    srv.site.add("/", links_page("root", []))
    srv.site.add("/sitemap.xml", Page(urlset(entry(srv.url("/orphan"))), content_type=XML))
    srv.site.add("/orphan", links_page("orphan", []))
    settings = layer(POLITE, {"scope": {"use_sitemaps": False}})
    assert crawl(tmp_path, [srv.url("/")], settings=settings) == 0
    assert sorted(r.path for r in srv.log) == ["/", "/robots.txt"]
    assert sm not in url_states(tmp_path / "crawl.db")


def test_sitemap_seed_index_and_gzip(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    index = (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{srv.url('/part.xml.gz')}</loc></sitemap>"
        f"<sitemap><loc>{srv.url('/plain.xml')}</loc></sitemap>"
        "</sitemapindex>"
    )
    srv.site.add("/sitemap.xml", Page(index, content_type=XML))
    gz = gzip.compress(
        urlset(entry(srv.url("/g1"), priority="0.9"), entry(srv.url("/g2"))).encode(), mtime=0
    )
    srv.site.add("/part.xml.gz", Page(gz, content_type="application/x-gzip"))
    srv.site.add("/plain.xml", Page(urlset(entry(srv.url("/p1"), "2023-05-06")), content_type=XML))
    for p in ("/g1", "/g2", "/p1"):
        srv.site.add(p, links_page(p, []))
    assert crawl(tmp_path, [srv.url("/sitemap.xml")]) == 0
    assert sorted(r.path for r in srv.log) == [
        "/g1",
        "/g2",
        "/p1",
        "/part.xml.gz",
        "/plain.xml",
        "/sitemap.xml",
    ]
    db = tmp_path / "crawl.db"
    kinds = dict(query(db, "select url, kind from urls"))
    assert kinds[srv.url("/sitemap.xml")] == "sitemap"
    assert kinds[srv.url("/part.xml.gz")] == kinds[srv.url("/plain.xml")] == "sitemap"
    assert kinds[srv.url("/g1")] == "page"
    assert set(url_states(db).values()) == {"done"}
    assert query(db, "select priority from urls where url = ?", srv.url("/g1")) == [
        (priority_rank(0.9),)
    ]
    assert query(db, "select date(lastmod) from urls where url = ?", srv.url("/p1")) == [
        ("2023-05-06",)
    ]
    # The sitemap's pages are not "pages" of the sitemap in the fetch table's eyes.
    assert query(db, "select title from pages where url = ?", srv.url("/sitemap.xml")) == [(None,)]
