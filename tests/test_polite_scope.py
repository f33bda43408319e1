"""Issue 3, scope and private networks: what is recorded but never requested. The server's
request log is the judge."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crawlkit import crawl, query
from tests.fetch.test_politeness import by_host, links_page, url_states
from tests.mockserver import Page, Redirect, loopback_hosts

pytestmark = pytest.mark.timeout(60)


def link_rows(db: Path) -> set[tuple[str, str]]:
    return set(
        query(
            db,
            "select s.url, d.url from links l join urls s on s.id = l.src_url_id "
            "join urls d on d.id = l.dst_url_id",
        )
    )


def test_external_host_recorded_never_requested(site_server, tmp_path: Path) -> None:
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    other = srv.url("/x", h3)
    srv.site.add("/", links_page("root", [other, "/a"]), host=h2)
    srv.site.add("/a", links_page("a", []), host=h2)
    srv.site.add("/x", links_page("x", []), host=h3)
    assert crawl(tmp_path, [srv.url("/", h2)]) == 0
    assert set(by_host(srv.log)) == {h2}
    db = tmp_path / "crawl.db"
    assert url_states(db)[other] == "excluded"
    assert (srv.url("/", h2), other) in link_rows(db)


def test_include_exclude_and_max_depth(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add("/", links_page("root", ["/keep/a", "/keep/drop-1", "/other"]))
    srv.site.add("/keep/a", links_page("a", ["/keep/b"]))
    srv.site.add("/keep/b", links_page("b", ["/keep/c"]))
    for p in ("/keep/drop-1", "/other", "/keep/c"):
        srv.site.add(p, links_page(p, []))
    settings = {"scope": {"include": ["/keep/", r":\d+/$"], "exclude": ["/drop-"]}}
    assert crawl(tmp_path, [srv.url("/")], "--max-depth", "2", settings=settings) == 0
    assert sorted(r.path for r in srv.log) == ["/", "/keep/a", "/keep/b"]
    states = url_states(tmp_path / "crawl.db")
    for path in ("/keep/drop-1", "/other", "/keep/c"):  # excluded, excluded, too deep
        assert states[srv.url(path)] == "excluded", path


def test_max_pages_per_host(site_server, tmp_path: Path) -> None:
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    hrefs = [f"/p{i}" for i in range(10)]
    srv.site.add("/", links_page("root", hrefs))
    for p in hrefs:
        srv.site.add(p, links_page(p, []))
    settings = {"scope": {"max_pages_per_host": 5}}
    assert crawl(tmp_path, [srv.url("/", h) for h in hosts], settings=settings) == 0
    assert {h: len(rs) for h, rs in by_host(srv.log).items()} == {h2: 5, h3: 5}
    db = tmp_path / "crawl.db"
    assert query(
        db,
        "select h.host, count(*) from fetches f join urls u on u.id = f.url_id "
        "join hosts h on h.id = u.host_id group by h.host order by h.host",
    ) == [(srv.base_url(h2), 5), (srv.base_url(h3), 5)]
    assert query(db, "select state, count(*) from urls group by state order by state") == [
        ("done", 10),
        ("queued", 12),
    ]


def test_only_http_and_https_are_fetchable(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    odd = ["ftp://127.0.0.2/file", "mailto:a@example.com", "javascript:alert(1)", "data:,x"]
    srv.site.add("/", links_page("root", [*odd, "/a"]))
    srv.site.add("/a", links_page("a", []))
    assert crawl(tmp_path, [srv.url("/")]) == 0
    assert sorted(r.path for r in srv.log) == ["/", "/a"]
    rows = query(tmp_path / "crawl.db", "select url, state from urls")
    assert all(u.startswith("http://") for u, _ in rows), rows
    assert len(rows) == 2


# --------------------------------------------------------------------------- private networks


def test_private_address_not_followed_unless_allowed(site_server, tmp_path: Path) -> None:
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    target = srv.url("/inside", h3)
    srv.site.add("/", links_page("root", [target]), host=h2)
    srv.site.add("/inside", links_page("inside", []), host=h3)
    external = {"scope": {"follow_external": True}, "fetch": {"retries": 0}}
    assert crawl(tmp_path, [srv.url("/", h2)], settings=external) in (0, 1)
    assert set(by_host(srv.log)) == {h2}, "a private address was requested"
    db = tmp_path / "crawl.db"
    assert url_states(db)[target] == "failed"
    [(kind, final, message)] = query(
        db,
        "select e.kind, e.final, e.message from errors e join urls u on u.id = e.url_id "
        "where u.url = ?",
        target,
    )
    assert final == 1, (kind, message)
    assert "allow_private_networks" in message, (kind, message)

    # With robots.txt on, the refused robots.txt request is not "unreachable, try later": the
    # URL fails at once with the same reason, and nothing reaches the private host.
    robots_on = tmp_path / "robots"
    robots_on.mkdir()
    srv.reset_log()
    with_robots = {**external, "politeness": {"obey_robots": True}}
    assert crawl(robots_on, [srv.url("/", h2)], "--max-time", "20", settings=with_robots) in (0, 1)
    assert set(by_host(srv.log)) == {h2}
    assert url_states(robots_on / "crawl.db")[target] == "failed"
    [(kind, final, message)] = query(
        robots_on / "crawl.db",
        "select e.kind, e.final, e.message from errors e join urls u on u.id = e.url_id "
        "where u.url = ?",
        target,
    )
    assert (kind, final) == ("other", 1)
    assert "allow_private_networks" in message

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    srv.reset_log()
    settings = {"scope": {"follow_external": True, "allow_private_networks": True}}
    assert crawl(allowed, [srv.url("/", h2)], settings=settings) == 0
    assert [r.path for r in srv.log if r.host == h3] == ["/inside"]
    assert url_states(allowed / "crawl.db")[target] == "done"


def test_redirect_to_private_host_is_refused_as_its_own_url(site_server, tmp_path: Path) -> None:
    """Issue 13: the redirect is a link; its target, a URL of its own, is refused by the guard
    when claimed (it used to be a ``redirect`` error on the redirecting URL)."""
    h2, h3 = hosts = loopback_hosts(2)
    srv = site_server(hosts=hosts)
    srv.site.add("/", links_page("root", ["/go"]), host=h2)
    srv.site.add("/go", Redirect(srv.url("/inside", h3)), host=h2)
    srv.site.add("/inside", Page("<title>inside</title>"), host=h3)
    settings = {"scope": {"follow_external": True}, "fetch": {"retries": 0}}
    assert crawl(tmp_path, [srv.url("/", h2)], settings=settings) in (0, 1)
    assert set(by_host(srv.log)) == {h2}
    db = tmp_path / "crawl.db"
    go, inside = srv.url("/go", h2), srv.url("/inside", h3)
    assert url_states(db)[go] == "done"
    assert (go, inside) in link_rows(db)
    assert url_states(db)[inside] == "failed"
    [(kind, final, message)] = query(
        db,
        "select e.kind, e.final, e.message from errors e join urls u on u.id = e.url_id "
        "where u.url = ?",
        inside,
    )
    assert (kind, final) == ("other", 1)
    assert "refused" in message
