"""Issue 3, URLs: one page under many spellings is one page; canonical, noindex, nofollow,
and a redirect to a page linked directly. The server's request log is the judge."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crawlkit import crawl, crawl_in_subprocess, query
from tests.fetch.test_politeness import (
    POLITE,
    fetched_urls,
    gets,
    layer,
    links_page,
    robots,
    url_states,
)
from tests.mockserver import Page, Redirect
from tests.test_polite_sitemaps import XML, entry, urlset

pytestmark = pytest.mark.timeout(60)


def test_one_page_under_many_spellings_is_fetched_once(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    base = srv.base_url()
    spellings = [
        base.replace("http://", "HTTP://") + "/a",
        f"{base}/./a",
        "/b/../a",
        "/a#frag",
        f"{base}/%61",
        "a",
        "./a#x",
    ]
    srv.site.add("/", links_page("root", spellings))
    srv.site.add("/a", links_page("a", []))
    assert crawl(tmp_path, [srv.url("/")]) == 0
    assert sorted(r.path for r in srv.log) == ["/", "/a"]
    db = tmp_path / "crawl.db"
    assert sorted(url_states(db)) == [srv.url("/"), srv.url("/a")]
    assert sorted(fetched_urls(db)) == [srv.url("/"), srv.url("/a")]
    # Every spelling is one row in links.
    assert query(db, "select count(*) from links") == [(1,)]


@pytest.mark.parametrize(("sort_query", "strip_tracking"), [(True, True), (False, False)])
def test_query_sorting_and_tracking_parameters(
    site_server, tmp_path: Path, sort_query: bool, strip_tracking: bool
) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    hrefs = ["/q?b=2&a=1", "/q?a=1&b=2", "/t?utm_source=x&utm_medium=y", "/t", "/g?gclid=1"]
    srv.site.add("/", links_page("root", hrefs))
    for path in [*hrefs, "/g"]:
        srv.site.add(path, links_page(path, []))
    settings = {"scope": {"sort_query": sort_query, "strip_tracking": strip_tracking}}
    assert crawl(tmp_path, [srv.url("/")], settings=settings) == 0
    paths = sorted(r.path for r in srv.log if r.path != "/")
    if sort_query:
        assert paths == ["/g", "/q?a=1&b=2", "/t"]
    else:
        assert paths == sorted(hrefs)
    assert len(fetched_urls(tmp_path / "crawl.db")) == len(paths) + 1


def test_canonical_noindex_and_meta_nofollow_recorded(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add("/", links_page("root", ["/c", "/ni", "/nf"]))
    srv.site.add("/c", links_page("c", [], '<link rel="canonical" href="/canon?x=1#f">'))
    srv.site.add(
        "/ni", links_page("ni", ["/from-noindex"], '<meta name="robots" content="noindex">')
    )
    srv.site.add("/from-noindex", links_page("x", []))
    srv.site.add(
        "/nf", links_page("nf", ["/hidden", "/c"], '<meta name="robots" content="nofollow">')
    )
    srv.site.add("/hidden", links_page("hidden", []))
    assert crawl(tmp_path, [srv.url("/")]) == 0
    db = tmp_path / "crawl.db"
    pages = {u: (c, n) for u, c, n in query(db, "select url, canonical_url, noindex from pages")}
    assert pages[srv.url("/c")] == (srv.url("/canon?x=1"), 0)
    assert pages[srv.url("/ni")] == (None, 1)
    assert pages[srv.url("/")] == (None, 0)
    assert srv.requests_for("/canon?x=1") == []  # canonical is recorded, not followed
    # noindex alone still follows links; nofollow records them without fetching.
    assert len(srv.requests_for("/from-noindex")) == 1
    assert srv.requests_for("/hidden") == []
    assert url_states(db)[srv.url("/hidden")] == "excluded"
    links = set(
        query(
            db,
            "select s.url, d.url from links l join urls s on s.id = l.src_url_id "
            "join urls d on d.id = l.dst_url_id",
        )
    )
    assert {(srv.url("/nf"), srv.url("/hidden")), (srv.url("/nf"), srv.url("/c"))} <= links


def redirect_site(srv, hrefs: list[str]) -> None:
    srv.site.add("/", links_page("root", hrefs))
    srv.site.add("/old", Redirect("/new"))
    srv.site.add("/new", links_page("new", []))


ONE_AT_A_TIME = {"politeness": {"per_host_concurrency": 1}}


@pytest.mark.parametrize("hrefs", [["/old", "/new"], ["/new", "/old"]])
def test_redirect_target_linked_directly_is_one_page(
    site_server, tmp_path: Path, hrefs: list[str]
) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    redirect_site(srv, hrefs)
    assert crawl(tmp_path, [srv.url("/")], settings=ONE_AT_A_TIME) == 0
    db = tmp_path / "crawl.db"
    assert len(gets(srv, "/old")) == 1
    # At most one fetch row under /new's own URL; /old's row says where it ended.
    rows = query(
        db,
        "select u.url, f.final_url, f.redirects from fetches f join urls u on u.id = f.url_id "
        "where u.url in (?, ?)",
        srv.url("/old"),
        srv.url("/new"),
    )
    assert [r for r in rows if r[0] == srv.url("/new")] in (
        [],
        [(srv.url("/new"), srv.url("/new"), 0)],
    )
    assert (srv.url("/old"), srv.url("/new"), 1) in rows
    assert url_states(db)[srv.url("/new")] == "done"
    # /new linked first: fetched as itself, then once more through /old's redirect (the
    # crawler must follow /old to learn where it goes). Never a third time.
    assert len(gets(srv, "/new")) <= 2


def test_redirect_target_not_fetched_again_as_its_own_page(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    redirect_site(srv, ["/old", "/new"])
    assert crawl(tmp_path, [srv.url("/")], settings=ONE_AT_A_TIME) == 0
    assert len(gets(srv, "/new")) == 1


# --------------------------------------------------------------------------------------------
# Issue 13: the canonical form does not change what is requested; no credentials from a URL
# --------------------------------------------------------------------------------------------

SECRET = "hunter2"

# Link targets the WHATWG URL Standard leaves raw, and what a browser sends for them; only the
# unreserved escape (%7E) is decoded, as the canonical form's policy allows.
AS_A_BROWSER_SENDS = {
    "/foo%": "/foo%",
    "/a%2z": "/a%2z",
    "/p[1]": "/p[1]",
    "/q?{a}|b`c^d": "/q?{a}|b`c^d",
    "/e%2fx": "/e%2fx",
    "/t%7Eu": "/t~u",
    "/caf\u00e9?q=\u00e9": "/caf%C3%A9?q=%C3%A9",  # ada escapes non-ASCII; sent as ada wrote it
}


def test_stored_urls_are_the_whatwg_serialization(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add("/", links_page("root", list(AS_A_BROWSER_SENDS)))
    assert crawl(tmp_path, [srv.url("/")]) == 0
    stored = set(url_states(tmp_path / "crawl.db"))
    assert stored == {srv.url("/"), *(srv.url(p) for p in AS_A_BROWSER_SENDS.values())}


def test_the_server_gets_the_request_a_browser_sends(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add("/", links_page("root", list(AS_A_BROWSER_SENDS)))
    assert crawl(tmp_path, [srv.url("/")]) == 0
    assert sorted(r.path for r in srv.log if r.path != "/") == sorted(AS_A_BROWSER_SENDS.values())


def test_redirect_hops_are_sent_as_a_browser_sends_them(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    hops = ["/r1%", "/r2[a]?{b}", "/r3%2f%2z"]
    srv.site.add("/", links_page("root", ["/start"]))
    srv.site.add("/start", Redirect(hops[0]))
    srv.site.add(hops[0], Redirect(hops[1]))
    srv.site.add(hops[1], Redirect(f"{srv.base_url()}{hops[2]}"))
    srv.site.add(hops[2], links_page("end", []))
    assert crawl(tmp_path, [srv.url("/")]) == 0
    assert [r.path for r in srv.log if r.path.startswith("/r")] == hops
    final = query(
        tmp_path / "crawl.db",
        "select f.final_url from fetches f join urls u on u.id = f.url_id where u.url = ?",
        srv.url("/start"),
    )
    assert final == [(srv.url(hops[2]),)]


def test_userinfo_in_links_and_sitemaps_is_never_sent_stored_or_logged(
    site_server, tmp_path: Path
) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    cred = f"http://bob:{SECRET}@127.0.0.2:{srv.port}"
    sitemaps = [srv.url("/sitemap.txt"), srv.url("/sitemap.xml")]
    srv.site.add(
        "/robots.txt",
        robots("User-agent: *\nAllow: /\n" + "".join(f"Sitemap: {sm}\n" for sm in sitemaps)),
    )
    canonical = f'<link rel="canonical" href="{cred}/">'
    srv.site.add("/", links_page("root", [f"{cred}/x"], canonical))
    srv.site.add("/sitemap.txt", Page(f"{cred}/from-text-sitemap\n", content_type="text/plain"))
    srv.site.add("/sitemap.xml", Page(urlset(entry(f"{cred}/from-xml-sitemap")), content_type=XML))
    for path in ["/x", "/from-text-sitemap", "/from-xml-sitemap"]:
        srv.site.add(path, links_page(path, []))
    log_file = tmp_path / "crawl.log"
    settings = layer(POLITE, {"scope": {"use_sitemaps": True}})
    result = crawl_in_subprocess(
        tmp_path, [srv.url("/")], "-vv", "--log-file", str(log_file), settings=settings
    )
    assert result.returncode == 0, result.stderr
    for path in ["/x", "/from-text-sitemap", "/from-xml-sitemap"]:
        assert len(gets(srv, path)) == 1, path
    assert [r for r in srv.log if any(h.lower() == "authorization" for h in r.headers)] == []
    db = tmp_path / "crawl.db"
    assert {srv.url("/x"), srv.url("/from-text-sitemap"), srv.url("/from-xml-sitemap")} <= set(
        url_states(db)
    )
    assert query(db, "select canonical_url from pages where url = ?", srv.url("/")) == [
        (srv.url("/"),)
    ]
    files = sorted(tmp_path.glob("crawl.db*"))
    assert [f.name for f in files if SECRET.encode() in f.read_bytes()] == []
    for where, text in {
        "stderr": result.stderr,
        "stdout": result.stdout,
        "log file": log_file.read_text(encoding="utf-8"),
    }.items():
        assert SECRET not in text, where
