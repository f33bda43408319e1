"""Faults the crawler must survive (issue 7): real loopback servers that misbehave on purpose.

Most faults are served together by one site and crawled once (``hostile``, module scope): each
test then checks its own URL -- the exact ``errors.kind``, a useful message, the URL's state --
and, through ``test_healthy_pages_survive``, that the healthy pages of the same crawl were all
stored. Faults that need their own settings (robots.txt, the gzip bomb with its memory bound,
50,000 links, IPv6) get their own crawl. The behaviours live in :mod:`tests.mockserver.hostile`;
``docs/reliability.md`` lists every fault with what the crawler does.
"""

from __future__ import annotations

import codecs
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import dnsguard
from tests.crawlkit import FAST, ROOT, crawl, query, write_seeds, write_settings
from tests.mockserver import FailThenSucceed, Oversized, Page, Redirect, Site, SiteServer
from tests.mockserver.hostile import (
    TIME_BIN,
    BrokenChunked,
    DripBody,
    DripHeaders,
    GarbageStatus,
    GzipBomb,
    Http09,
    IPv6SiteServer,
    ManyLinks,
    NeverAnswers,
    RandomBytes,
    ResetMidBody,
    RetryAfterDate,
    ShortBody,
    peak_rss_mb,
    refused_port,
)

pytestmark = pytest.mark.timeout(120)

A, B, PRIVATE = "127.0.0.2", "127.0.0.3", "127.0.0.9"
"""A and B are seed hosts; PRIVATE is served but never a seed (the private-network guard)."""

READ_TIMEOUT_S, TOTAL_TIMEOUT_S, RETRY_AFTER_S = 1.5, 3.0, 2
SETTINGS = {
    "crawl": {"workers": 16},
    "fetch": {
        "connect_timeout_s": 2.0,
        "read_timeout_s": READ_TIMEOUT_S,
        "total_timeout": TOTAL_TIMEOUT_S,
        "retries": 1,
        "max_body_bytes": 1_000_000,
        "max_redirects": 5,
    },
}
LONG_PATH = "/long/" + "a" * 4994  # a 5,000-character path
DEEP = 10_000


def _title_page(title: str) -> Page:
    return Page(f"<html><head><title>{title}</title></head><body><p>{title}</p></body></html>")


def _faults_a(port: int) -> dict[str, Any]:
    """Paths on host A and what they serve; the root links to every one."""
    deep = b"<html><body>" + b"<div>" * DEEP + b'<a href="/deep-target">in</a>' + b"</div>" * DEEP
    chain = {f"/chain{i}": Redirect(f"/chain{i + 1}") for i in range(8)}
    return {
        **{f"/ok{i}": _title_page(f"healthy {i}") for i in range(6)},
        # transport
        "/reset": ResetMidBody(),
        "/never": NeverAnswers(),
        "/drip-body": DripBody(size=1000, interval_s=1.0),
        "/drip-headers": DripHeaders(interval_s=0.2),
        "/short": ShortBody(),
        "/chunked": BrokenChunked(),
        "/http09": Http09(),
        "/garbage": GarbageStatus(),
        # bodies
        "/big": Oversized(2_000_000),
        "/random": RandomBytes(200_000),
        "/image": RandomBytes(50_000, prefix=b"\x89PNG\r\n\x1a\n"),
        # charsets
        "/cs-header": Page(
            '<html><head><meta charset="windows-1252"><title>café header</title></head></html>',
            content_type="text/html; charset=utf-8",
        ),
        "/cs-bad-utf8": Page(
            b"<html><head><title>caf\xc3\xa9 \xff\xfe ok</title></head></html>",
            content_type="text/html",
        ),
        "/cs-utf16": Page(
            codecs.BOM_UTF16_LE
            + "<html><head><title>café 日本</title></head></html>".encode("utf-16-le"),
            content_type="text/html",
        ),
        "/cs-1252": Page(
            b"<html><head><title>caf\xe9</title></head><body>na\xefve \x93q\x94</body></html>",
            content_type="text/html",
        ),
        # redirects
        "/loop": Redirect("/loop2"),
        "/loop2": Redirect("/loop"),
        **chain,
        "/chain8": _title_page("end of chain"),
        "/to-ftp": Redirect("ftp://example.com/file"),
        "/to-file": Redirect("file:///etc/passwd"),
        "/to-private": Redirect(f"http://{PRIVATE}:{port}/secret"),
        "/relative": Redirect("rel/target.html"),
        "/rel/target.html": _title_page("relative target"),
        # HTML
        "/unclosed": Page(
            b"<html><head><title>unclosed</title><body><p><div><a href='/u1'>one<p><a href=/u2>"
        ),
        "/nul": Page(b"<html><head><title>n\x00ul</title></head><body>a\x00b<a href='/ok0'>x"),
        "/has-long-url": Page(f'<title>long</title><a href="{LONG_PATH}">long</a>'),
        LONG_PATH: _title_page("the long one"),
        "/deep": Page(deep),
        "/base": Page(
            f'<html><head><base href="http://{B}:{port}/based/"><title>base</title></head>'
            '<body><a href="x.html">x</a></body></html>'
        ),
    }


def _faults_b() -> dict[str, Any]:
    """Paths on host B (HTTP semantics; B's Retry-After pauses must not slow host A)."""
    return {
        "/r429": FailThenSucceed(
            1, _title_page("after 429"), status=429, headers={"Retry-After": str(RETRY_AFTER_S)}
        ),
        "/r503-date": RetryAfterDate(RETRY_AFTER_S, status=503),
        "/r401": Page("no", status=401),
        "/r403": Page("no", status=403),
        "/based/x.html": _title_page("based"),
    }


@dataclass
class Crawl:
    srv: SiteServer
    db: Path
    seconds: float
    code: int

    def url(self, path: str, host: str = A) -> str:
        return f"http://{host}:{self.srv.port}{path}"

    def errors(self, url: str) -> list[tuple[Any, ...]]:
        """(kind, message, final, status_code) of every error row of ``url``, in order."""
        return query(
            self.db,
            "select e.kind, e.message, e.final, e.status_code from errors e"
            " join urls u on u.id = e.url_id where u.url = ? order by e.attempt, e.id",
            url,
        )

    def state(self, url: str) -> str | None:
        rows = query(self.db, "select state from urls where url = ?", url)
        return rows[0][0] if rows else None

    def fetch(self, url: str) -> tuple[Any, ...] | None:
        """(status_code, title, final_url, redirects) of the URL's fetch, if any."""
        rows = query(
            self.db,
            "select f.status_code, f.title, f.final_url, f.redirects from fetches f"
            " join urls u on u.id = f.url_id where u.url = ?",
            url,
        )
        return rows[0] if rows else None


def _link_page(paths: list[str], title: str) -> Page:
    links = "".join(f'<a href="{p}">{p[:40]}</a>\n' for p in paths)
    return Page(f"<html><head><title>{title}</title></head><body>{links}</body></html>")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crawl]:
    site = Site()
    srv = SiteServer(site, [A, B, PRIVATE]).start()
    try:
        refused = refused_port(A)
        faults_a, faults_b = _faults_a(srv.port), _faults_b()
        links_a = [p for p in faults_a if p != LONG_PATH]
        links_a.append(f"http://{A}:{refused}/")  # nothing listens there
        for path, behaviour in faults_a.items():
            site.add(path, behaviour, host=A)
        for path, behaviour in faults_b.items():
            site.add(path, behaviour, host=B)
        site.add("/", _link_page(links_a, "root A"), host=A)
        site.add("/", _link_page(list(faults_b), "root B"), host=B)
        site.add("/secret", _title_page("must never be fetched"), host=PRIVATE)
        tmp = tmp_path_factory.mktemp("hostile")
        seeds = [f"http://{A}:{srv.port}/", f"http://{B}:{srv.port}/", "http://nothing.invalid/"]
        started = time.monotonic()
        code = crawl(tmp, seeds, settings=SETTINGS)
        yield Crawl(srv, tmp / "crawl.db", time.monotonic() - started, code)
    finally:
        srv.stop()


# --------------------------------------------------------------------------- the crawl survives


def test_healthy_pages_survive(hostile: Crawl) -> None:
    """Every fault's neighbour is stored: the crawl ran to its end, nothing was lost."""
    assert hostile.code == 0
    assert query(hostile.db, "select status from crawls") == [("finished",)]
    for i in range(6):
        url = hostile.url(f"/ok{i}")
        assert hostile.state(url) == "done"
        assert hostile.fetch(url) == (200, f"healthy {i}", url, 0)
    assert query(hostile.db, "select count(*) from urls where state in ('queued', 'fetching')") == [
        (0,)
    ]
    assert query(hostile.db, "pragma integrity_check") == [("ok",)]
    # Bounded: the slowest faults (drips, silence) each cost at most two total deadlines.
    assert hostile.seconds < 4 * TOTAL_TIMEOUT_S + 10
    assert hostile.srv.errors == []


def _records(srv: SiteServer, path: str, host: str, count: int) -> list[Any]:
    """The server's records of ``path``, waiting briefly for ``count`` of them: a handler
    logs its request when it notices the client left, which may be just after the crawl."""
    deadline = time.monotonic() + 3
    while len(found := srv.requests_for(path, host)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _assert_failed(c: Crawl, path: str, kind: str, fragment: str, *, attempts: int) -> None:
    url = path if "://" in path else c.url(path)
    rows = c.errors(url)
    assert [r[0] for r in rows] == [kind] * attempts, rows
    assert fragment in rows[-1][1], rows[-1]
    assert [bool(r[2]) for r in rows] == [False] * (attempts - 1) + [True]
    assert c.state(url) == "failed"


# --------------------------------------------------------------------------- transport


def test_connection_refused(hostile: Crawl) -> None:
    port = query(hostile.db, "select url from urls where url like ?", f"http://{A}:%/")
    refused = [u for (u,) in port if not u.endswith(f":{hostile.srv.port}/")]
    assert len(refused) == 1
    _assert_failed(hostile, refused[0], "connect", "Connection refused", attempts=2)


def test_dns_failure(hostile: Crawl) -> None:
    _assert_failed(hostile, "http://nothing.invalid/", "dns", "nothing.invalid", attempts=1)


def test_reset_mid_body_is_content(hostile: Crawl) -> None:
    _assert_failed(hostile, "/reset", "content", "Connection broken", attempts=2)


def test_never_answers_is_timeout(hostile: Crawl) -> None:
    _assert_failed(hostile, "/never", "timeout", "Read timed out", attempts=2)
    for record in _records(hostile.srv, "/never", A, 2):
        assert record.finished - record.started < READ_TIMEOUT_S + 2


def test_byte_per_second_body_is_cut_at_total_deadline(hostile: Crawl) -> None:
    _assert_failed(hostile, "/drip-body", "timeout", "total deadline of 3s", attempts=2)
    for record in _records(hostile.srv, "/drip-body", A, 2):
        assert 2 <= record.bytes_sent <= TOTAL_TIMEOUT_S + 2  # one byte a second, then cut


def test_dripping_headers_are_cut_at_total_deadline(hostile: Crawl) -> None:
    """requests' read timeout is per read; the fetcher's watchdog enforces the deadline."""
    _assert_failed(
        hostile, "/drip-headers", "timeout", "passed before the response headers", attempts=2
    )
    records = _records(hostile.srv, "/drip-headers", A, 2)
    assert len(records) == 2
    for record in records:
        assert record.finished - record.started < TOTAL_TIMEOUT_S + 1.5


def test_content_length_longer_than_body(hostile: Crawl) -> None:
    _assert_failed(hostile, "/short", "content", "IncompleteRead", attempts=2)


def test_broken_chunked_encoding(hostile: Crawl) -> None:
    _assert_failed(hostile, "/chunked", "content", "Connection broken", attempts=2)


@pytest.mark.parametrize(
    ("path", "fragment"), [("/http09", "nineteen-ninety"), ("/garbage", "SPDY/9 banana")]
)
def test_not_an_http_status_line_is_content(hostile: Crawl, path: str, fragment: str) -> None:
    """Decided: ``content`` (the server answered, with something that is not HTTP); final."""
    _assert_failed(hostile, path, "content", "BadStatusLine", attempts=1)
    assert fragment in hostile.errors(hostile.url(path))[0][1]


# --------------------------------------------------------------------------- bodies


def test_body_over_cap_is_too_large(hostile: Crawl) -> None:
    _assert_failed(hostile, "/big", "too_large", "1000000 bytes decoded", attempts=1)
    assert hostile.errors(hostile.url("/big"))[0][3] == 200


@pytest.mark.parametrize("path", ["/random", "/image"])
def test_binary_served_as_html_is_parsed_without_crash(hostile: Crawl, path: str) -> None:
    url = hostile.url(path)
    assert hostile.state(url) == "done"
    assert hostile.errors(url) == []
    fetch = hostile.fetch(url)
    assert fetch is not None
    assert fetch[0] == 200


# --------------------------------------------------------------------------- charsets


@pytest.mark.parametrize(
    ("path", "title"),
    [
        ("/cs-header", "café header"),  # header charset beats <meta charset>
        ("/cs-bad-utf8", "café \ufffd\ufffd ok"),  # bad bytes → U+FFFD, never mojibake
        ("/cs-utf16", "café 日本"),  # BOM
        ("/cs-1252", "café"),  # no declaration: windows-1252, as browsers do
    ],
)
def test_charsets_give_readable_titles(hostile: Crawl, path: str, title: str) -> None:
    fetch = hostile.fetch(hostile.url(path))
    assert fetch is not None
    assert fetch[1] == title
    assert "Ã" not in fetch[1]


# --------------------------------------------------------------------------- redirects


def test_redirect_loop(hostile: Crawl) -> None:
    _assert_failed(hostile, "/loop", "redirect", "redirect loop", attempts=1)


def test_redirect_chain_over_limit(hostile: Crawl) -> None:
    _assert_failed(hostile, "/chain0", "redirect", "more than 5 redirects", attempts=1)
    assert hostile.state(hostile.url("/chain3")) == "done"  # 5 hops from there: followed


@pytest.mark.parametrize(("path", "scheme"), [("/to-ftp", "ftp"), ("/to-file", "file")])
def test_redirect_to_other_scheme(hostile: Crawl, path: str, scheme: str) -> None:
    _assert_failed(hostile, path, "redirect", f"redirect to a {scheme}: URL refused", attempts=1)
    assert hostile.errors(hostile.url(path))[0][3] == 301


def test_redirect_to_private_address_is_not_requested(hostile: Crawl) -> None:
    """Issue 13: a redirect to another host is a link, never a hop of the same fetch; here
    the private host is out of scope, so it is recorded and never asked. (A followed one the
    guard refuses: test_polite_scope.)"""
    url = hostile.url("/to-private")
    assert hostile.fetch(url) == (301, None, url, 0)
    assert hostile.state(hostile.url("/secret", PRIVATE)) == "excluded"
    assert hostile.srv.requests_for("/secret") == []


def test_relative_location_is_followed(hostile: Crawl) -> None:
    url = hostile.url("/relative")
    assert hostile.state(url) == "done"
    assert hostile.fetch(url) == (200, "relative target", hostile.url("/rel/target.html"), 1)


# --------------------------------------------------------------------------- HTTP semantics


@pytest.mark.parametrize("path", ["/r429", "/r503-date"])
def test_retry_after_is_honoured(hostile: Crawl, path: str) -> None:
    url = hostile.url(path, B)
    assert hostile.state(url) == "done"
    fetch = hostile.fetch(url)
    assert fetch is not None
    assert fetch[0] == 200
    rows = hostile.errors(url)
    assert [(r[0], bool(r[2])) for r in rows] == [("http_status", False)]
    first, retry = hostile.srv.requests_for(path, B)
    assert first.status in (429, 503)
    assert retry.status == 200
    assert retry.started - first.responded >= RETRY_AFTER_S - 0.1  # the wait, on the wire


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_recorded_not_retried(hostile: Crawl, status: int) -> None:
    path = f"/r{status}"
    url = hostile.url(path, B)
    assert [(k, bool(f), s) for k, _m, f, s in hostile.errors(url)] == [
        ("http_status", True, status)
    ]
    assert hostile.errors(url)[0][1].startswith(f"HTTP {status} ")
    assert hostile.state(url) == "failed"
    assert len(hostile.srv.requests_for(path, B)) == 1


# --------------------------------------------------------------------------- HTML


def _links_from(c: Crawl, path: str) -> set[str]:
    return {
        u
        for (u,) in query(
            c.db,
            "select d.url from links l join urls s on s.id = l.src_url_id"
            " join urls d on d.id = l.dst_url_id where s.url = ?",
            c.url(path),
        )
    }


def test_unclosed_tags(hostile: Crawl) -> None:
    assert hostile.fetch(hostile.url("/unclosed"))[1] == "unclosed"  # type: ignore[index]
    assert _links_from(hostile, "/unclosed") == {hostile.url("/u1"), hostile.url("/u2")}


def test_nul_bytes(hostile: Crawl) -> None:
    assert hostile.state(hostile.url("/nul")) == "done"
    assert hostile.fetch(hostile.url("/nul"))[1] == "n\ufffdul"  # type: ignore[index]
    assert _links_from(hostile, "/nul") == {hostile.url("/ok0")}


def test_five_thousand_character_url(hostile: Crawl) -> None:
    url = hostile.url(LONG_PATH)
    assert len(LONG_PATH) == 5000
    assert hostile.state(url) == "done"
    assert hostile.fetch(url)[1] == "the long one"  # type: ignore[index]


def test_ten_thousand_levels_of_nesting(hostile: Crawl) -> None:
    assert hostile.state(hostile.url("/deep")) == "done"
    assert hostile.errors(hostile.url("/deep")) == []
    assert _links_from(hostile, "/deep") == {hostile.url("/deep-target")}


def test_base_href_elsewhere(hostile: Crawl) -> None:
    based = hostile.url("/based/x.html", B)
    assert _links_from(hostile, "/base") == {based}
    assert hostile.fetch(based)[1] == "based"  # type: ignore[index]


def test_fifty_thousand_links(site_server: Any, tmp_path: Path) -> None:
    srv = site_server(hosts=[A])
    srv.site.add("/", _link_page(["/many", *(f"/ok{i}" for i in range(5))], "root"))
    srv.site.add("/many", ManyLinks(50_000, "http://elsewhere.invalid/p"))
    for i in range(5):
        srv.site.add(f"/ok{i}", _title_page(f"ok {i}"))
    started = time.monotonic()
    assert crawl(tmp_path, [srv.url("/")]) == 0
    seconds = time.monotonic() - started
    db = tmp_path / "crawl.db"
    count = query(
        db,
        "select count(*) from links l join urls s on s.id = l.src_url_id where s.url = ?",
        srv.url("/many"),
    )
    assert count == [(50_000,)]
    assert query(db, "select count(*) from urls where state = 'excluded'") == [(50_000,)]
    assert query(db, "select count(*) from urls where state = 'done'") == [(7,)]
    assert seconds < 30, seconds


# --------------------------------------------------------------------------- gzip bomb


def test_gzip_bomb_is_too_large_in_bounded_memory(site_server: Any, tmp_path: Path) -> None:
    """1 GiB of zeros as ~1 MiB of gzip: cut at max_body_bytes decoded; the crawling process
    (a subprocess, measured by ``/usr/bin/time -v``) stays under 400 MB."""
    srv = site_server(hosts=[A])
    srv.site.add("/", _link_page(["/bomb", "/after"], "root"))
    srv.site.add("/bomb", GzipBomb(1 << 30))
    srv.site.add("/after", _title_page("after the bomb"))
    seed = write_seeds(tmp_path / "seed.txt", [srv.url("/")])
    cfg = write_settings(tmp_path / "settings.toml", FAST)  # default cap: 10 MiB decoded
    db = tmp_path / "crawl.db"
    cmd = [sys.executable, "-m", "crawler", "crawl", str(seed), "--db", str(db)]
    cmd += ["--config", str(cfg), "-q"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env = dnsguard.subprocess_env({**env, "PYTHONPATH": str(ROOT)})
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(
        [TIME_BIN, "-v", *cmd] if TIME_BIN else cmd,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    if TIME_BIN:
        peak = peak_rss_mb(done.stderr)
    else:  # an upper bound: the largest child this process has waited for
        peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(f"gzip bomb: peak RSS of the crawling process {peak:.1f} MiB")
    assert peak < 400
    bomb = query(
        db,
        "select e.kind, e.message, e.final, e.status_code from errors e"
        " join urls u on u.id = e.url_id where u.url = ?",
        srv.url("/bomb"),
    )
    assert bomb == [
        ("too_large", "TooLargeError: body over max_body_bytes (10485760 bytes decoded)", 1, 200)
    ]
    assert query(db, "select state from urls where url = ?", srv.url("/after")) == [("done",)]
    sent = srv.requests_for("/bomb")[0].bytes_sent
    assert sent < 1 << 20  # the crawler stopped reading long before the 1 GiB was inflated


# --------------------------------------------------------------------------- robots.txt


ROBOTS_HOSTS = [f"127.0.0.{i}" for i in range(10, 16)]
HUGE, GARBAGE, AS_HTML, SILENT, REDIRECTED, TOO_FAR = ROBOTS_HOSTS


def _huge_robots() -> bytes:
    head = b"User-agent: *\nDisallow: /private\n"
    filler = b"# " + b"x" * 97 + b"\n"
    body = head + filler * ((600 * 1024 - len(head)) // len(filler))
    return body + b"Disallow: /late\n"  # past 512 KiB: ignored


def test_hostile_robots_txt(site_server: Any, tmp_path: Path) -> None:
    srv = site_server(hosts=ROBOTS_HOSTS)
    site = srv.site
    site.add("/", _link_page(["/private", "/late", "/secret", "/page"], "root"))
    for path in ("/private", "/late", "/secret", "/page"):
        site.add(path, _title_page(path))
    text = "text/plain"
    site.add("/robots.txt", Page(_huge_robots(), content_type=text), host=HUGE)
    site.add("/robots.txt", RandomBytes(5000, content_type=text), host=GARBAGE)
    site.add(
        "/robots.txt",
        Page("<html><body><p>User-agent: * Disallow: /</p></body></html>"),
        host=AS_HTML,
    )
    site.add("/robots.txt", NeverAnswers(), host=SILENT)
    site.add("/robots.txt", Redirect("/r1"), host=REDIRECTED)
    for i in range(1, 4):
        site.add(f"/r{i}", Redirect(f"/r{i + 1}"), host=REDIRECTED)
    site.add("/r4", Page("User-agent: *\nDisallow: /secret\n", content_type=text), host=REDIRECTED)
    site.add("/robots.txt", Redirect("/t1"), host=TOO_FAR)
    for i in range(1, 7):
        site.add(f"/t{i}", Redirect(f"/t{i + 1}"), host=TOO_FAR)
    site.add("/t7", Page("User-agent: *\nDisallow: /\n", content_type=text), host=TOO_FAR)

    settings = {
        "politeness": {"obey_robots": True},
        "fetch": {"read_timeout_s": 1.0, "total_timeout": 2.0, "retries": 1},
        "crawl": {"max_time_s": 8.0},
    }
    crawl(tmp_path, [srv.url("/", h) for h in ROBOTS_HOSTS], settings=settings)
    db = tmp_path / "crawl.db"

    def state(host: str, path: str) -> str | None:
        rows = query(db, "select state from urls where url = ?", srv.url(path, host))
        return rows[0][0] if rows else None

    # Huge: the first 512 KiB are parsed (/private blocked), a rule past them is ignored.
    assert state(HUGE, "/private") == "blocked"
    assert state(HUGE, "/late") == "done"
    # Garbage and HTML: no rules found, everything allowed.
    for host in (GARBAGE, AS_HTML):
        assert {state(host, p) for p in ("/", "/private", "/page")} == {"done"}
    # Redirected through 4 hops: followed, its rules apply.
    assert state(REDIRECTED, "/secret") == "blocked"
    assert state(REDIRECTED, "/page") == "done"
    # 7 hops, over the 5 RFC 9309 asks for: unavailable, so allow all.
    assert state(TOO_FAR, "/secret") == "done"
    assert srv.requests_for("/t6", TOO_FAR) == []
    # Timing out: unreachable; the URL is put back, no page of the host is requested.
    assert state(SILENT, "/") == "queued"
    rows = query(
        db,
        "select e.kind, e.message, e.final from errors e join urls u on u.id = e.url_id"
        " where u.url = ?",
        srv.url("/", SILENT),
    )
    assert rows
    assert rows[0][0] == "timeout"  # the cause, not "robots" (issue 13)
    assert "robots.txt" in rows[0][1]
    assert "unreachable" in rows[0][1]
    assert rows[0][2] == 0
    assert len(_records(srv, "/robots.txt", SILENT, 2)) == 2  # one retry, then unreachable
    assert {r.path for r in srv.log if r.host == SILENT} == {"/robots.txt"}


# --------------------------------------------------------------------------- IPv6


def test_ipv6_literal_url(tmp_path: Path) -> None:
    site = Site()
    site.add("/", _link_page(["/v6"], "root six"))
    site.add("/v6", _title_page("six"))
    srv = IPv6SiteServer(site).start()
    try:
        root = f"http://[::1]:{srv.port}/"
        assert crawl(tmp_path, [root]) == 0
    finally:
        srv.stop()
    fetched = query(
        tmp_path / "crawl.db",
        "select u.url, f.status_code, f.title from fetches f join urls u on u.id = f.url_id"
        " order by u.url",
    )
    assert fetched == [(root, 200, "root six"), (root + "v6", 200, "six")]


# --------------------------------------------------------------------------- bugs found here


def test_two_redirects_in_one_batch(site_server: Any, tmp_path: Path) -> None:
    """Two redirects with in-scope targets stored in one writer batch must not stop the crawl
    (SQLAlchemy refuses an expanding IN parameter in an executemany). 40 redirects finishing
    together make it near certain that two share a batch."""
    srv = site_server(hosts=[A])
    n = 40
    srv.site.add("/", _link_page([f"/r{i}" for i in range(n)], "root"))
    for i in range(n):
        srv.site.add(f"/r{i}", Redirect(f"/t{i}"))
        srv.site.add(f"/t{i}", _title_page(f"target {i}"))
    assert crawl(tmp_path, [srv.url("/")], settings={"store": {"batch_ms": 1000}}) == 0
