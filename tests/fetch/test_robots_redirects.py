"""Issue 13, points 3 and 4: robots.txt redirects (RFC 9309 §2.3.1.2) and the cause of a
robots.txt failure as the error kind. Real servers on loopback, a real SQLite file; a name
that must not resolve is faked in-process (``socket.getaddrinfo``), never sent to DNS."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.run import work
from tests.crawlkit import crawl, query
from tests.fetch.test_politeness import by_host, links_page, url_states
from tests.mockserver import Page, Redirect, loopback_hosts

pytestmark = pytest.mark.timeout(60)

ROBOTS_ON = {"politeness": {"obey_robots": True}}
MISSING = "nowhere.invalid"


def _final_errors(db: Path, url: str) -> list[tuple[str, str]]:
    return query(
        db,
        "select e.kind, e.message from errors e join urls u on u.id = e.url_id "
        "where u.url = ? and e.final = 1",
        url,
    )


# --------------------------------------------------------------------------- point 3


@pytest.mark.parametrize("how", ["to-refused-host", "loop", "too-many"])
def test_robots_redirect_that_cannot_end_is_unavailable_so_allow_all(
    site_server, tmp_path: Path, how: str
) -> None:
    """A hop the private-network guard refuses, a loop or too many hops: robots.txt is
    unavailable (allow all), so the seed page is fetched; the refused host sees nothing."""
    seed, refused = loopback_hosts(2, first=20)  # 127.0.0.20 seed; .21 never a seed
    srv = site_server(hosts=[seed, refused])
    srv.site.add("/", Page("<title>home</title>"), host=seed)
    if how == "to-refused-host":
        srv.site.add("/robots.txt", Redirect(srv.url("/robots.txt", refused)), host=seed)
        srv.site.add("/robots.txt", Page("User-agent: *\nDisallow: /\n"), host=refused)
    elif how == "loop":
        srv.site.add("/robots.txt", Redirect("/r1"), host=seed)
        srv.site.add("/r1", Redirect("/robots.txt"), host=seed)
    else:
        srv.site.add("/robots.txt", Redirect("/r1"), host=seed)
        for i in range(1, 8):
            srv.site.add(f"/r{i}", Redirect(f"/r{i + 1}"), host=seed)
    settings = {**ROBOTS_ON, "fetch": {"retries": 0}}
    assert crawl(tmp_path, [srv.url("/", seed)], settings=settings) == 0
    assert url_states(tmp_path / "crawl.db")[srv.url("/", seed)] == "done"
    assert srv.requests_for("/", seed), "the seed page was never requested"
    assert set(by_host(srv.log)) == {seed}


def test_robots_redirect_of_five_hops_across_hosts_is_followed(site_server, tmp_path) -> None:
    """RFC 9309 §2.3.1.2: at least five hops, across hosts; the rules found apply."""
    seed, other = loopback_hosts(2, first=22)
    srv = site_server(hosts=[seed, other])
    srv.site.add("/", links_page("home", ["/secret", "/open"]), host=seed)
    srv.site.add("/secret", Page("<title>secret</title>"), host=seed)
    srv.site.add("/open", Page("<title>open</title>"), host=seed)
    srv.site.add("/robots.txt", Redirect("/h1"), host=seed)
    for i in range(1, 4):
        srv.site.add(f"/h{i}", Redirect(f"/h{i + 1}"), host=seed)
    srv.site.add("/h4", Redirect(srv.url("/rules.txt", other)), host=seed)  # hop 5
    srv.site.add("/rules.txt", Page("User-agent: *\nDisallow: /secret\n"), host=other)
    settings = {**ROBOTS_ON, "scope": {"allow_private_networks": True}}
    assert crawl(tmp_path, [srv.url("/", seed)], settings=settings) == 0
    states = url_states(tmp_path / "crawl.db")
    assert states[srv.url("/secret", seed)] == "blocked"
    assert states[srv.url("/open", seed)] == "done"


# --------------------------------------------------------------------------- point 4


@pytest.fixture
def missing_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """A host name that does not resolve, faked in-process (no DNS query leaves)."""
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.lower() == MISSING:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return MISSING


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound once, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("cause", ["dns", "connect", "timeout"])
def test_robots_failure_keeps_its_cause_as_the_error_kind(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cause: str
) -> None:
    monkeypatch.setattr(work, "ROBOTS_MAX_FAILURES", 1)  # give up at the first failure
    if cause == "dns":
        seed = f"http://{request.getfixturevalue('missing_name')}:8080/"
    elif cause == "connect":
        seed = f"http://127.0.0.1:{request.getfixturevalue('closed_port')}/"
    else:
        seed = f"http://127.0.0.1:{request.getfixturevalue('silent_port')}/"
    fetch = {"retries": 0, "total_timeout": 1.0, "read_timeout_s": 0.5, "connect_timeout_s": 0.5}
    crawl(tmp_path, [seed], settings={**ROBOTS_ON, "fetch": fetch})
    db = tmp_path / "crawl.db"
    assert url_states(db)[seed] == "failed"
    [(kind, message)] = _final_errors(db, seed)
    assert kind == cause, message
    assert "robots.txt" in message


def test_later_urls_of_a_refused_host_fail_like_the_first(site_server, tmp_path: Path) -> None:
    """The guard refuses a host's robots.txt: every URL of it ends ``other``/"refused", none
    "disallowed by robots.txt" (the cached refusal is not a robots.txt rule)."""
    seed, refused = loopback_hosts(2, first=24)
    srv = site_server(hosts=[seed, refused])
    targets = [srv.url(f"/p{i}", refused) for i in range(4)]
    srv.site.add("/", links_page("home", targets), host=seed)
    settings = {
        # One at a time: the later URLs are handed out after the refusal is cached.
        "politeness": {"obey_robots": True, "per_host_concurrency": 1},
        "scope": {"follow_external": True},
        "fetch": {"retries": 0},
    }
    crawl(tmp_path, [srv.url("/", seed)], settings=settings)
    db = tmp_path / "crawl.db"
    assert set(by_host(srv.log)) == {seed}
    for url in targets:
        [(kind, message)] = _final_errors(db, url)
        assert (kind, url_states(db)[url]) == ("other", "failed"), message
        assert "refused" in message
