"""Tests of the integration-test HTTP server itself (tests/mockserver/)."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest
import requests

from tests.mockserver import (
    Binary,
    Drip,
    ETagPage,
    FailThenSucceed,
    GeneratedSite,
    Gzip,
    NotFound,
    Oversized,
    Page,
    Redirect,
    Site,
    SiteServer,
    SiteServerFactory,
    Slow,
    generate_site,
    loopback_hosts,
)
from tests.mockserver import site_server as site_server  # the fixture, by name

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment
        yield session


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_hosts_on_one_port_answer_by_arrival_address(
    site_server: SiteServerFactory, http: requests.Session
) -> None:
    a, b = loopback_hosts(2)
    site = Site()
    site.add("/", Page("host a"), host=a)
    site.add("/", Page("host b"), host=b)
    site.add("/both", Page("shared"))
    site.add("/both", Page("b's own"), host=b)
    srv = site_server(site, hosts=[a, b])

    assert srv.url("/x", host=b) == f"http://{b}:{srv.port}/x"
    assert http.get(srv.url("/", a)).text == "host a"
    assert http.get(srv.url("/", b)).text == "host b"
    assert http.get(srv.url("/both", a)).text == "shared"
    assert http.get(srv.url("/both", b)).text == "b's own"
    missing = http.get(srv.url("/nope", a))
    assert missing.status_code == 404
    assert "<title>404 Not Found</title>" in missing.text
    assert site.hosts_seen == {a, b}
    assert srv.errors == []


def test_log_records_host_path_headers_timing_and_keep_alive(
    site_server: SiteServerFactory, http: requests.Session
) -> None:
    site = Site()
    site.add("/q?a=1", Slow(0.05, Page("query")))
    srv = site_server(site)
    before = time.monotonic()
    r1 = http.get(srv.url("/q?a=1"), headers={"X-Test": "yes"})
    r2 = http.head(srv.url("/q?a=1"))
    r3 = http.get(srv.url("/missing"))
    assert (r1.status_code, r2.status_code, r3.status_code) == (200, 200, 404)
    assert r1.headers["Content-Length"] == "5"
    assert r2.headers["Content-Length"] == "5"
    assert r2.content == b""

    deadline = time.monotonic() + 2  # the server logs a request just after sending its response
    while len(srv.log) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    log = srv.log
    assert [(r.method, r.path, r.status, r.host) for r in log] == [
        ("GET", "/q?a=1", 200, "127.0.0.1"),
        ("HEAD", "/q?a=1", 200, "127.0.0.1"),
        ("GET", "/missing", 404, "127.0.0.1"),
    ]
    assert log[0].headers["X-Test"] == "yes"
    assert log[0].bytes_sent == 5
    assert log[1].bytes_sent == 0
    assert before <= log[0].started < log[0].finished
    assert log[1].started < log[1].finished
    assert log[0].finished - log[0].started >= 0.05
    # The HEAD went out after the slow GET's answer began. (Not "after its finished": that is
    # taken once the response is written, and the next request's arrival time is the kernel's,
    # which can come first.)
    assert log[1].started - log[0].started >= 0.05
    for r in log:
        assert r.started <= r.responded <= r.finished
    assert log[0].responded - log[0].started >= 0.05  # the Slow wait comes before the answer
    assert log[0].responded <= log[1].started
    assert log[1].responded <= log[2].started
    assert srv.requests_for("/q?a=1") == log[:2]
    assert srv.requests_for("/q?a=1", host="127.0.0.9") == []
    assert srv.connections == 1  # one kept-alive connection for all three

    srv.reset_log()
    assert srv.log == []
    assert srv.max_concurrent == 0


def test_concurrency_counters_under_parallel_requests(site_server: SiteServerFactory) -> None:
    hosts = loopback_hosts(2)
    site = Site()
    site.add("/slow", Slow(0.4, Page("done")))
    site.add("/fast", Page("fast"))
    srv = site_server(site, hosts=hosts)
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def fetch(i: int) -> None:
        with _session() as session:
            barrier.wait()
            statuses.append(session.get(srv.url("/slow", hosts[i % 2])).status_code)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert statuses == [200] * 10
    assert srv.max_concurrent == 10
    assert srv.max_concurrent_per_host == {hosts[0]: 5, hosts[1]: 5}
    assert all(r.finished - r.started >= 0.4 for r in srv.log)

    srv.reset_log()
    with _session() as session:
        for _ in range(3):
            session.get(srv.url("/fast", hosts[1]))
    assert srv.max_concurrent == 1
    assert srv.max_concurrent_per_host == {hosts[1]: 1}


def test_fail_then_succeed_counts_per_host_and_path(
    site_server: SiteServerFactory, http: requests.Session
) -> None:
    a, b = loopback_hosts(2)
    flaky = FailThenSucceed(2, Page("ok"), status=503, headers={"Retry-After": "1"})
    site = Site()
    site.add("/one", flaky)
    site.add("/two", flaky)
    srv = site_server(site, hosts=[a, b])

    got = [http.get(srv.url("/one", a)) for _ in range(3)]
    assert [r.status_code for r in got] == [503, 503, 200]
    assert got[0].headers["Retry-After"] == "1"
    assert got[2].text == "ok"
    assert http.get(srv.url("/one", b)).status_code == 503  # b counts on its own
    assert http.get(srv.url("/two", a)).status_code == 503  # so does another path

    srv.reset_log()  # hit counts survive a log reset ...
    assert http.get(srv.url("/one", a)).status_code == 200
    srv.reset_log(hits=True)  # ... unless asked
    assert http.get(srv.url("/one", a)).status_code == 503


def test_etag_page_answers_304(site_server: SiteServerFactory, http: requests.Session) -> None:
    lm = "Wed, 21 Oct 2015 07:28:00 GMT"
    site = Site()
    site.add("/e", ETagPage("<p>v1</p>", "v1", last_modified=lm))
    srv = site_server(site)
    url = srv.url("/e")

    first = http.get(url)
    assert first.status_code == 200
    assert first.headers["ETag"] == '"v1"'
    assert first.headers["Last-Modified"] == lm
    cached = http.get(url, headers={"If-None-Match": '"v1"'})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["ETag"] == '"v1"'
    assert http.get(url, headers={"If-None-Match": 'W/"v1", "v0"'}).status_code == 304
    assert http.get(url, headers={"If-None-Match": '"v0"'}).status_code == 200
    assert http.get(url, headers={"If-Modified-Since": lm}).status_code == 304
    earlier = "Tue, 20 Oct 2015 07:28:00 GMT"
    assert http.get(url, headers={"If-Modified-Since": earlier}).status_code == 200
    assert srv.connections == 1  # the 304s kept the connection alive


def test_drip_stops_when_the_client_disconnects(site_server: SiteServerFactory) -> None:
    body = b"x" * 2000
    site = Site()
    site.add("/drip", Drip(body, 0.01))
    srv = site_server(site)

    with _session() as session:
        resp = session.get(srv.url("/drip"), stream=True)
        assert resp.headers["Content-Length"] == "2000"
        assert resp.raw.read(5) == b"xxxxx"
        resp.close()

    _wait_for(lambda: len(srv.log) == 1)
    record = srv.log[0]
    assert record.status == 200
    assert record.bytes_sent < 200
    assert record.finished - record.started < 2.0
    assert srv.max_concurrent == 1


def test_redirect_oversized_binary_gzip(
    site_server: SiteServerFactory, http: requests.Session
) -> None:
    size = 5 * 1024 * 1024 + 7
    site = Site()
    site.add("/r1", Redirect("/r2"))
    site.add("/r2", Redirect("r3", status=302))
    site.add("/r3", Page("end"))
    site.add("/big", Oversized(size))
    site.add("/doc.pdf", Binary(1000, "application/pdf"))
    site.add("/gz", Gzip("<p>zipped</p>"))
    site.add("/gone", NotFound())
    srv = site_server(site)

    end = http.get(srv.url("/r1"))
    assert end.text == "end"
    assert [(r.status_code, r.headers["Location"]) for r in end.history] == [
        (301, "/r2"),
        (302, "r3"),
    ]
    big = http.get(srv.url("/big"))
    assert big.headers["Content-Length"] == str(size)
    assert len(big.content) == size
    assert big.content.startswith(b"<!doctype html>")
    pdf = http.get(srv.url("/doc.pdf"))
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert len(pdf.content) == 1000
    assert pdf.content.startswith(b"%PDF-")
    gz = http.get(srv.url("/gz"))
    assert gz.headers["Content-Encoding"] == "gzip"
    assert gz.text == "<p>zipped</p>"
    assert http.get(srv.url("/gone")).status_code == 404
    assert srv.errors == []


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[tuple[str, bool]] = []  # (href, nofollow)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append((a["href"] or "", "nofollow" in (a.get("rel") or "").split()))


def _bfs(
    session: requests.Session, gen: GeneratedSite
) -> tuple[set[str], set[tuple[str, str]], set[tuple[str, str]]]:
    """Fetch everything followable from the roots; (fetched, links, nofollow links)."""
    served = {f"{h}:{gen.port}" for h in gen.hosts}
    seen = set(gen.root_urls)
    queue = deque(gen.root_urls)
    links: set[tuple[str, str]] = set()
    nofollow: set[tuple[str, str]] = set()
    while queue:
        url = queue.popleft()
        resp = session.get(url, allow_redirects=False)
        if resp.status_code != 200 or "html" not in resp.headers.get("Content-Type", ""):
            continue
        parser = _Links()
        parser.feed(resp.text)
        for href, is_nofollow in parser.hrefs:
            dst = urldefrag(urljoin(url, href)).url
            (nofollow if is_nofollow else links).add((url, dst))
            if not is_nofollow and urlsplit(dst).netloc in served and dst not in seen:
                seen.add(dst)
                queue.append(dst)
    return seen, links, nofollow


def test_generated_site_matches_a_bfs_crawl(
    site_server: SiteServerFactory, http: requests.Session
) -> None:
    hosts = loopback_hosts(3)
    srv = site_server(hosts=hosts)
    gen = generate_site(srv.hosts, 15, port=srv.port, seed=7, site=srv.site)
    missing = gen.add_linked("/missing.html", NotFound(), from_path="/p/4.html")
    srv.site.add("/r2", Redirect("/p/3.html"), host=hosts[1])
    gen.add_linked("/r1", Redirect("/r2"), from_path="/", host=hosts[1])
    gen.add_linked("/file.zip", Binary(300, "application/zip"), from_path="/p/0.html")

    fetched, links, nofollow = _bfs(http, gen)

    assert fetched == gen.expected_urls
    assert links == gen.links
    assert nofollow == gen.nofollow_links
    assert len(gen.expected_urls) == 3 * 16 + 3
    assert missing in gen.expected_urls
    assert gen.nofollow_urls == {f"http://{h}:{srv.port}/nofollow.html" for h in hosts}
    assert gen.external_urls
    assert all(urlsplit(u).hostname == "external.invalid" for u in gen.external_urls)
    cross = {(s, d) for s, d in links if urlsplit(s).netloc != urlsplit(d).netloc}
    assert any(urlsplit(d).hostname in hosts for _, d in cross)
    assert all(len(p.anchors) >= 3 for p in gen.pages.values())
    assert srv.errors == []


def test_generated_site_is_deterministic() -> None:
    one = generate_site(["127.0.0.2", "127.0.0.3"], 10, port=1234, seed=3)
    two = generate_site(["127.0.0.2", "127.0.0.3"], 10, port=1234, seed=3)
    other = generate_site(["127.0.0.2", "127.0.0.3"], 10, port=1234, seed=4)
    assert one.links == two.links
    assert [p.render() for p in one.pages.values()] == [p.render() for p in two.pages.values()]
    assert one.links != other.links
    alone = generate_site(["127.0.0.2", "127.0.0.3"], 10, port=1, cross_host_links=False)
    cross = {d for s, d in alone.links if urlsplit(s).netloc != urlsplit(d).netloc}
    assert {urlsplit(d).hostname for d in cross} == {"external.invalid"}


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def test_stop_closes_sockets_and_threads_even_mid_request() -> None:
    hosts = loopback_hosts(3, first=30)
    site = Site()
    site.add("/drip", Drip(b"y" * 10_000, 0.05))
    site.add("/", Page("hi"))
    before = {t for t in threading.enumerate() if t.name.startswith("siteserver")}
    assert before == set()

    srv = SiteServer(site, hosts=hosts)
    with srv:
        assert all(_listening(h, srv.port) for h in hosts)
        idle, busy = _session(), _session()
        idle.get(srv.url("/"))  # leaves a kept-alive idle connection
        dripping = busy.get(srv.url("/drip", hosts[2]), stream=True)
        dripping.raw.read(1)
        started = time.monotonic()
    assert time.monotonic() - started < 2.0
    assert not any(_listening(h, srv.port) for h in hosts)
    assert [t for t in threading.enumerate() if t.name.startswith("siteserver")] == []
    assert [r.path for r in srv.log] == ["/", "/drip"]
    idle.close()
    busy.close()


def test_site_server_fixture_with_many_hosts(site_server: SiteServerFactory) -> None:
    hosts = loopback_hosts(20)
    site = Site()
    site.add("/", Page("root"))
    srv = site_server(site, hosts=hosts)
    with _session() as session:
        assert {session.get(srv.url("/", h)).text for h in hosts} == {"root"}
    assert site.hosts_seen == set(hosts)
    assert {r.host for r in srv.log} == set(hosts)


def test_bad_request_line_is_logged_without_stale_fields(site_server: SiteServerFactory) -> None:
    site = Site()
    site.add("/", Page("ok"))
    srv = site_server(site)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=2) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBROKEN\r\n\r\n")
        data = b""
        while b"400" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    _wait_for(lambda: len(srv.log) == 2)
    good, bad = srv.log
    assert (good.path, good.status) == ("/", 200)
    assert (bad.path, bad.status, bad.headers) == ("", 400, {})
