"""Issue 13, "Redirects are links too": every hop is checked before it is requested, and no
credentials ever come from a URL. A real server on loopback is the judge (its request log and
the headers it received), with the database file and the log output as the user sees them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.crawlkit import crawl, query
from tests.fetch.test_politeness import by_host, links_page, url_states
from tests.mockserver import Page, Redirect, loopback_hosts
from tests.test_polite_sitemaps import XML, entry, urlset

pytestmark = pytest.mark.timeout(60)

SECRET = "hunter2"


def _link_rows(db: Path) -> set[tuple[str, str]]:
    return set(
        query(
            db,
            "select s.url, d.url from links l join urls s on s.id = l.src_url_id "
            "join urls d on d.id = l.dst_url_id",
        )
    )


def _final_errors(db: Path, url: str) -> list[tuple[str, str]]:
    return query(
        db,
        "select e.kind, e.message from errors e join urls u on u.id = e.url_id "
        "where u.url = ? and e.final = 1",
        url,
    )


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("same_host", [True, False], ids=["same-host", "cross-host"])
def test_location_userinfo_is_never_sent_stored_or_logged(
    site_server, tmp_path: Path, caplog: pytest.LogCaptureFixture, same_host: bool
) -> None:
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    target_host = h2 if same_host else h3
    target = srv.url("/target", target_host).replace("://", f"://bob:{SECRET}@", 1)
    srv.site.add("/", links_page("root", ["/go"]), host=h2)
    srv.site.add("/go", Redirect(target), host=h2)
    srv.site.add("/target", links_page("target", []), host=target_host)
    log_file = tmp_path / "crawl.log"
    caplog.set_level(logging.DEBUG)
    seeds = [srv.url("/", h) for h in hosts]  # both seed hosts: the guard lets both through
    assert crawl(tmp_path, seeds, "-v", "--log-file", str(log_file)) == 0

    [hit] = srv.requests_for("/target", target_host)
    assert "authorization" not in {k.lower() for k in hit.headers}, hit.headers
    db = tmp_path / "crawl.db"
    assert SECRET.encode() not in db.read_bytes()
    for extra in db.parent.glob("crawl.db-*"):  # a WAL left behind must not hold it either
        assert SECRET.encode() not in extra.read_bytes()
    assert SECRET not in log_file.read_text(encoding="utf-8")
    assert SECRET not in caplog.text
    assert url_states(db)[srv.url("/target", target_host)] == "done"


# --------------------------------------------------------------------------- every hop checked


def _fetch_row(db: Path, url: str) -> tuple[int, str, int]:
    [row] = query(
        db,
        "select f.status_code, f.final_url, f.redirects from fetches f "
        "join urls u on u.id = f.url_id where u.url = ?",
        url,
    )
    return row


def _assert_redirect_kept(db: Path, go: str, target: str) -> None:
    """The redirecting URL's fetch row keeps its 3xx (``final_url`` is itself), and the
    target is a URL of its own, linked from it."""
    assert _fetch_row(db, go) == (301, go, 0)
    assert url_states(db)[go] == "done"
    assert (go, target) in _link_rows(db)


def test_same_host_hop_disallowed_by_robots_is_not_requested(site_server, tmp_path) -> None:
    [h2] = loopback_hosts(1)
    srv = site_server(hosts=[h2])
    srv.site.add(
        "/robots.txt", Page("User-agent: *\nDisallow: /private\n", content_type="text/plain")
    )
    srv.site.add("/", links_page("root", ["/go"]))
    srv.site.add("/go", Redirect("/private/x"))
    srv.site.add("/private/x", links_page("secret", []))
    assert crawl(tmp_path, [srv.url("/")], settings={"politeness": {"obey_robots": True}}) == 0
    assert srv.requests_for("/private/x") == []
    db = tmp_path / "crawl.db"
    go, target = srv.url("/go"), srv.url("/private/x")
    _assert_redirect_kept(db, go, target)
    assert url_states(db)[target] == "blocked"
    assert _final_errors(db, target) == [("robots", "disallowed by robots.txt")]


def test_same_host_hop_outside_include_exclude_is_not_requested(site_server, tmp_path) -> None:
    [h2] = loopback_hosts(1)
    srv = site_server(hosts=[h2])
    srv.site.add("/", links_page("root", ["/go"]))
    srv.site.add("/go", Redirect("/skip/x"))
    srv.site.add("/skip/x", links_page("skipped", []))
    assert crawl(tmp_path, [srv.url("/")], settings={"scope": {"exclude": ["/skip/"]}}) == 0
    assert srv.requests_for("/skip/x") == []
    db = tmp_path / "crawl.db"
    go, target = srv.url("/go"), srv.url("/skip/x")
    _assert_redirect_kept(db, go, target)
    assert url_states(db)[target] == "excluded"


def test_cross_host_hop_out_of_scope_is_not_requested(site_server, tmp_path) -> None:
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    target = srv.url("/x", h3)
    srv.site.add("/", links_page("root", ["/go"]), host=h2)
    srv.site.add("/go", Redirect(target), host=h2)
    srv.site.add("/x", links_page("x", []), host=h3)
    assert crawl(tmp_path, [srv.url("/", h2)]) == 0
    assert set(by_host(srv.log)) == {h2}
    db = tmp_path / "crawl.db"
    _assert_redirect_kept(db, srv.url("/go", h2), target)
    assert url_states(db)[target] == "excluded"


def test_cross_host_hop_gets_its_own_robots_check(site_server, tmp_path) -> None:
    """A hop to another (seed) host is a new frontier URL: that host's robots.txt is fetched
    first, and a disallowed target is never requested."""
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    robots = Page("User-agent: *\nDisallow: /private\n", content_type="text/plain")
    srv.site.add("/robots.txt", robots, host=h3)
    srv.site.add("/", links_page("root", ["/go", "/go-open"]), host=h2)
    srv.site.add("/", links_page("other root", []), host=h3)
    srv.site.add("/go", Redirect(srv.url("/private/x", h3)), host=h2)
    srv.site.add("/go-open", Redirect(srv.url("/open", h3)), host=h2)
    srv.site.add("/private/x", links_page("secret", []), host=h3)
    srv.site.add("/open", links_page("open", []), host=h3)
    settings = {"politeness": {"obey_robots": True}}
    assert crawl(tmp_path, [srv.url("/", h) for h in hosts], settings=settings) == 0
    assert srv.requests_for("/private/x", h3) == []
    db = tmp_path / "crawl.db"
    blocked, open_ = srv.url("/private/x", h3), srv.url("/open", h3)
    _assert_redirect_kept(db, srv.url("/go", h2), blocked)
    assert url_states(db)[blocked] == "blocked"
    assert _final_errors(db, blocked) == [("robots", "disallowed by robots.txt")]
    # An allowed cross-host target is fetched as its own URL, after its host's robots.txt.
    _assert_redirect_kept(db, srv.url("/go-open", h2), open_)
    assert _fetch_row(db, open_) == (200, open_, 0)
    paths = [r.path for r in by_host(srv.log)[h3]]
    assert paths.index("/robots.txt") < paths.index("/open")


def test_same_host_allowed_hop_is_followed_inline(site_server, tmp_path) -> None:
    """``final_url`` still names where an inline-followed redirect ended."""
    [h2] = loopback_hosts(1)
    srv = site_server(hosts=[h2])
    srv.site.add("/", links_page("root", ["/go"]))
    srv.site.add("/go", Redirect("/new"))
    srv.site.add("/new", links_page("new", []))
    assert crawl(tmp_path, [srv.url("/")], settings={"politeness": {"obey_robots": True}}) == 0
    db = tmp_path / "crawl.db"
    assert _fetch_row(db, srv.url("/go")) == (200, srv.url("/new"), 1)
    assert len(srv.requests_for("/new")) == 1


# --------------------------------------------------------------------------- sitemap hops

SITEMAPS = {"politeness": {"obey_robots": True}, "scope": {"use_sitemaps": True}}


def _sitemap(*locs: str) -> Page:
    return Page(urlset(*(entry(loc) for loc in locs)), content_type=XML)


def _kinds(db: Path) -> dict[str, str]:
    return dict(query(db, "select url, kind from urls"))


def test_sitemap_same_host_hops_are_checked_against_robots(site_server, tmp_path) -> None:
    """An allowed same-host hop is followed inline; a disallowed one is never requested and
    becomes a blocked sitemap URL, linked to the sitemap that redirected."""
    [h2] = loopback_hosts(1)
    srv = site_server(hosts=[h2])
    rules = "User-agent: *\nDisallow: /private\n"
    rules += f"Sitemap: {srv.url('/sm-open')}\nSitemap: {srv.url('/sm-private')}\n"
    srv.site.add("/robots.txt", Page(rules, content_type="text/plain"))
    srv.site.add("/", links_page("root", []))
    srv.site.add("/sm-open", Redirect("/maps/open.xml"))
    srv.site.add("/maps/open.xml", _sitemap(srv.url("/from-open")))
    srv.site.add("/sm-private", Redirect("/private/map.xml"))
    srv.site.add("/private/map.xml", _sitemap(srv.url("/from-private")))
    for path in ("/from-open", "/from-private"):
        srv.site.add(path, links_page(path, []))
    assert crawl(tmp_path, [srv.url("/")], settings=SITEMAPS) == 0
    assert srv.requests_for("/private/map.xml") == []
    assert srv.requests_for("/from-private") == []
    assert len(srv.requests_for("/maps/open.xml")) == 1
    assert len(srv.requests_for("/from-open")) == 1
    db = tmp_path / "crawl.db"
    assert _fetch_row(db, srv.url("/sm-open")) == (200, srv.url("/maps/open.xml"), 1)
    blocked = srv.url("/private/map.xml")
    assert _fetch_row(db, srv.url("/sm-private")) == (301, srv.url("/sm-private"), 0)
    assert url_states(db)[blocked] == "blocked"
    assert _kinds(db)[blocked] == "sitemap"
    assert _final_errors(db, blocked) == [("robots", "disallowed by robots.txt")]
    [(src,)] = query(
        db,
        "select s.url from urls u join urls s on s.id = u.discovered_from where u.url = ?",
        blocked,
    )
    assert src == srv.url("/sm-private")


def test_sitemap_cross_host_hops_get_their_own_robots_check(site_server, tmp_path) -> None:
    """A hop to another host is queued as a sitemap of its own: that host's robots.txt is
    fetched first, a disallowed sitemap is never requested, an allowed one is read; a hop out
    of scope is an excluded URL, never requested."""
    h2, h3, h4 = loopback_hosts(3)
    srv = site_server(hosts=[h2, h3, h4])
    rules = "".join(f"Sitemap: {srv.url(p, h2)}\n" for p in ("/sm-a", "/sm-b", "/sm-out"))
    srv.site.add("/robots.txt", Page(rules, content_type="text/plain"), host=h2)
    deny = "User-agent: *\nDisallow: /private\n"
    srv.site.add("/robots.txt", Page(deny, content_type="text/plain"), host=h3)
    srv.site.add("/", links_page("root", []))
    srv.site.add("/sm-a", Redirect(srv.url("/maps/a.xml", h3)), host=h2)
    srv.site.add("/sm-b", Redirect(srv.url("/private/b.xml", h3)), host=h2)
    srv.site.add("/sm-out", Redirect(srv.url("/out.xml", h4)), host=h2)
    srv.site.add("/maps/a.xml", _sitemap(srv.url("/from-a", h3)), host=h3)
    srv.site.add("/private/b.xml", _sitemap(srv.url("/from-b", h3)), host=h3)
    srv.site.add("/out.xml", _sitemap(srv.url("/from-out", h4)), host=h4)
    for path in ("/from-a", "/from-b"):
        srv.site.add(path, links_page(path, []), host=h3)
    assert crawl(tmp_path, [srv.url("/", h) for h in (h2, h3)], settings=SITEMAPS) == 0
    assert srv.requests_for("/private/b.xml", h3) == []
    assert srv.requests_for("/from-b", h3) == []
    assert h4 not in by_host(srv.log)
    paths = [r.path for r in by_host(srv.log)[h3]]
    assert paths.index("/robots.txt") < paths.index("/maps/a.xml") < paths.index("/from-a")
    db = tmp_path / "crawl.db"
    a, b, out = srv.url("/maps/a.xml", h3), srv.url("/private/b.xml", h3), srv.url("/out.xml", h4)
    for src in ("/sm-a", "/sm-b", "/sm-out"):
        assert _fetch_row(db, srv.url(src, h2)) == (301, srv.url(src, h2), 0)
    states, kinds = url_states(db), _kinds(db)
    assert (states[a], kinds[a]) == ("done", "sitemap")
    assert (states[b], kinds[b]) == ("blocked", "sitemap")
    assert states[srv.url("/from-a", h3)] == "done"
    assert states[out] == "excluded"
    assert (srv.url("/sm-out", h2), out) in _link_rows(db)
