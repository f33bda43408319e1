"""Fetcher: retries, redirects, limits and conditional GET.

Unit tests use ``responses`` with an injected ``sleep`` that records the waits, so they take
milliseconds. A few tests talk to a real ``http.server`` on 127.0.0.1 for what ``responses`` cannot
fake: a drip-feeding server, a refused connection, a body shorter than its Content-Length,
connection reuse, and the private-network guard (which checks the socket's real peer).
"""

from __future__ import annotations

import gzip
import http.server
import io
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import urlsplit

import pytest
import requests
import requests.adapters
import responses

from crawler.config import FetchSettings
from crawler.errors import ErrorKind
from crawler.fetch.deadline import WATCH_LATE_S, WATCH_SLACK, Watchdog
from crawler.fetch.fetcher import ACCEPT, Fetcher
from crawler.fetch.netguard import (
    _POOL_CACHE_MAX,
    READ_BUFFER,
    GuardedAdapter,
    PrivateAddressError,
    WideBufferResponse,
    address_problem,
    guarded_pool_classes,
)
from crawler.fetch.proxies import ProxyRules
from crawler.fetch.response import FetchOutcome, parse_retry_after
from tests.mockserver import Page, Redirect, RequestContext, Site, SiteServerFactory

URL = "http://example.test/page"
HTML = {"Content-Type": "text/html; charset=utf-8"}
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SETTINGS = FetchSettings(
    retries=3, backoff_base_s=0.5, backoff_max_s=10.0, max_retry_after_s=60.0, max_redirects=5
)

_PROXY_VARS = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "requests_ca_bundle",
    "curl_ca_bundle",
)


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


class Sleeps(list[float]):
    """An injectable ``sleep`` that records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make(sleeps: Sleeps) -> Iterator[Callable[..., Fetcher]]:
    made: list[Fetcher] = []

    def factory(settings: FetchSettings = SETTINGS, **kwargs: object) -> Fetcher:
        kwargs.setdefault("sleep", sleeps)
        kwargs.setdefault("now", lambda: NOW)
        fetcher = Fetcher(settings, "testbot/1.0", **kwargs)  # type: ignore[arg-type]
        made.append(fetcher)
        return fetcher

    yield factory
    for fetcher in made:
        fetcher.close()


def kinds(outcome: FetchOutcome) -> list[tuple[ErrorKind, int, bool]]:
    return [(e.kind, e.attempt, e.final) for e in outcome.errors]


# -- retries --------------------------------------------------------------------------------


@responses.activate
def test_500_500_200_recovers_with_two_non_final_errors(make, sleeps) -> None:
    responses.get(URL, status=500)
    responses.get(URL, status=500)
    responses.get(URL, body="<p>ok</p>", headers=HTML)
    outcome = make().fetch(URL)
    assert outcome.result is not None
    assert outcome.result.status_code == 200
    assert outcome.result.body == b"<p>ok</p>"
    assert kinds(outcome) == [(ErrorKind.HTTP_STATUS, 1, False), (ErrorKind.HTTP_STATUS, 2, False)]
    assert outcome.errors[0].message == "HTTP 500 Internal Server Error"
    assert outcome.errors[0].status_code == 500
    assert not outcome.failed
    # Backoff: min(max, base·2ⁿ⁻¹) scaled by a jitter in [0.5, 1].
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


@responses.activate
def test_backoff_is_capped(make, sleeps) -> None:
    for _ in range(4):
        responses.get(URL, status=502)
    settings = replace(SETTINGS, backoff_base_s=4.0, backoff_max_s=5.0)
    make(settings).fetch(URL)
    assert len(sleeps) == 3
    assert all(2.0 <= s <= 5.0 for s in sleeps)
    assert 2.5 <= sleeps[1] <= 5.0


@responses.activate
def test_persistent_503_is_a_final_http_status_with_the_last_response(make, sleeps) -> None:
    for _ in range(4):
        responses.get(URL, status=503)
    outcome = make().fetch(URL)
    assert len(responses.calls) == 4
    assert outcome.result is not None
    assert outcome.result.status_code == 503
    assert kinds(outcome) == [
        (ErrorKind.HTTP_STATUS, 1, False),
        (ErrorKind.HTTP_STATUS, 2, False),
        (ErrorKind.HTTP_STATUS, 3, False),
        (ErrorKind.HTTP_STATUS, 4, True),
    ]
    assert outcome.failed
    assert len(sleeps) == 3


@responses.activate
def test_429_retry_after_seconds_is_the_wait(make, sleeps) -> None:
    responses.get(URL, status=429, headers={"Retry-After": "7"})
    responses.get(URL, body="ok", headers=HTML)
    outcome = make().fetch(URL)
    assert sleeps == [7.0]
    assert outcome.result is not None
    assert outcome.result.status_code == 200
    assert kinds(outcome) == [(ErrorKind.HTTP_STATUS, 1, False)]
    assert outcome.errors[0].message == "HTTP 429 Too Many Requests"


@responses.activate
def test_retry_after_http_date(make, sleeps) -> None:
    when = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    responses.get(URL, status=503, headers={"Retry-After": when})
    responses.get(URL, body="ok", headers=HTML)
    make().fetch(URL)
    assert sleeps == [30.0]


@responses.activate
def test_retry_after_over_the_cap_is_final_at_once(make, sleeps) -> None:
    responses.get(URL, status=503, headers={"Retry-After": "120"})
    outcome = make().fetch(URL)
    assert len(responses.calls) == 1
    assert sleeps == []
    assert outcome.result is not None
    assert outcome.result.retry_after_s == 120.0
    assert kinds(outcome) == [(ErrorKind.HTTP_STATUS, 1, True)]
    assert "max_retry_after_s" in outcome.errors[0].message


def test_parse_retry_after() -> None:
    assert parse_retry_after("7", NOW) == 7.0
    assert parse_retry_after(" 1.5 ", NOW) == 1.5
    assert parse_retry_after("-3", NOW) is None
    assert parse_retry_after("soon", NOW) is None
    past = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(past, NOW) == 0.0


@responses.activate
def test_404_is_not_retried_and_not_an_error(make, sleeps) -> None:
    responses.get(URL, status=404, body="<p>gone</p>", headers=HTML)
    outcome = make().fetch(URL)
    assert len(responses.calls) == 1
    assert outcome.errors == ()
    assert outcome.result is not None
    assert outcome.result.status_code == 404
    assert outcome.result.body is None  # only 2xx bodies are downloaded


@responses.activate
def test_connection_error_is_connect_and_retried(make, sleeps) -> None:
    responses.get(URL, body=requests.exceptions.ConnectionError("Connection refused"))
    responses.get(URL, body="ok", headers=HTML)
    outcome = make().fetch(URL)
    assert kinds(outcome) == [(ErrorKind.CONNECT, 1, False)]
    assert outcome.errors[0].message == "ConnectionError: Connection refused"
    assert outcome.result is not None
    assert outcome.result.status_code == 200


@responses.activate
def test_dns_failure_is_dns_and_final_at_once(make, sleeps) -> None:
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    exc = requests.exceptions.ConnectionError(gai)
    responses.get(URL, body=exc)
    outcome = make().fetch(URL)
    assert len(responses.calls) == 1
    assert kinds(outcome) == [(ErrorKind.DNS, 1, True)]
    assert outcome.result is None


@responses.activate
def test_temporary_dns_failure_is_retried(make, sleeps) -> None:
    gai = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    responses.get(URL, body=requests.exceptions.ConnectionError(gai))
    responses.get(URL, body="ok", headers=HTML)
    outcome = make().fetch(URL)
    assert kinds(outcome) == [(ErrorKind.DNS, 1, False)]
    assert outcome.result is not None


@responses.activate
def test_timeouts_are_timeout_and_retried(make, sleeps) -> None:
    responses.get(URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    responses.get(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    responses.get(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    responses.get(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    outcome = make().fetch(URL)
    assert kinds(outcome) == [
        (ErrorKind.TIMEOUT, 1, False),
        (ErrorKind.TIMEOUT, 2, False),
        (ErrorKind.TIMEOUT, 3, False),
        (ErrorKind.TIMEOUT, 4, True),
    ]
    assert outcome.result is None


@responses.activate
def test_tls_error_is_not_retried(make, sleeps) -> None:
    responses.get(URL, body=requests.exceptions.SSLError("certificate verify failed"))
    outcome = make().fetch(URL)
    assert kinds(outcome) == [(ErrorKind.TLS, 1, True)]


@responses.activate
def test_should_stop_stops_retries(make, sleeps) -> None:
    for _ in range(4):
        responses.get(URL, status=500)
    stop = threading.Event()

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        stop.set()  # shutdown arrives during the first backoff

    outcome = make(sleep=sleep, should_stop=stop.is_set).fetch(URL)
    assert len(responses.calls) == 1
    assert kinds(outcome) == [(ErrorKind.HTTP_STATUS, 1, True)]


@responses.activate
def test_should_stop_before_a_retry(make, sleeps) -> None:
    responses.get(URL, status=500)
    outcome = make(should_stop=lambda: True).fetch(URL)
    assert len(responses.calls) == 1
    assert sleeps == []
    assert kinds(outcome) == [(ErrorKind.HTTP_STATUS, 1, True)]


@responses.activate
def test_keyboard_interrupt_escapes(make) -> None:
    def interrupt(request: object) -> tuple[int, dict[str, str], bytes]:
        raise KeyboardInterrupt

    responses.add_callback(responses.GET, URL, callback=interrupt)
    with pytest.raises(KeyboardInterrupt):
        make().fetch(URL)


@responses.activate
def test_unexpected_exception_is_other_and_final(make, sleeps) -> None:
    responses.get(URL, body=ValueError("boom"))
    outcome = make().fetch(URL)
    assert kinds(outcome) == [(ErrorKind.OTHER, 1, True)]
    assert outcome.errors[0].message == "ValueError: boom"
    assert outcome.errors[0].at == NOW


# -- credentials ----------------------------------------------------------------------------


@responses.activate
def test_credentials_never_in_messages(make, sleeps) -> None:
    secret_url = "http://alice:s3cret@example.test/page"
    exc = requests.exceptions.ConnectionError(f"cannot reach {secret_url}")
    # Userinfo is dropped before every request (issue 13), so the mocks answer the bare URLs.
    responses.get("http://example.test/page", body=exc)
    responses.get(
        "http://example.test/page",
        status=301,
        headers={"Location": "http://bob:hunter2@example.test/a"},
    )
    responses.get("http://example.test/a", status=302, headers={"Location": "/a"})
    outcome = make(replace(SETTINGS, retries=1)).fetch(secret_url)
    assert [e.kind for e in outcome.errors] == [ErrorKind.CONNECT, ErrorKind.REDIRECT]
    assert "loop" in outcome.errors[1].message
    for error in outcome.errors:
        assert "s3cret" not in error.message
        assert "hunter2" not in error.message
        assert "alice" not in error.message
    assert "***@" in outcome.errors[0].message


# -- redirects ------------------------------------------------------------------------------


@responses.activate
def test_redirect_chain_of_three(make) -> None:
    responses.get(URL, status=301, headers={"Location": "http://example.test/a"})
    responses.get("http://example.test/a", status=302, headers={"Location": "/b"})
    responses.get("http://example.test/b", status=307, headers={"Location": "https://other.test/c"})
    responses.get("https://other.test/c", body="<p>c</p>", headers=HTML)
    outcome = make().fetch(URL)
    result = outcome.result
    assert result is not None
    assert outcome.errors == ()
    assert result.url == URL
    assert result.final_url == "https://other.test/c"
    assert result.redirects == 3
    assert result.redirect_chain == (URL, "http://example.test/a", "http://example.test/b")
    assert result.body == b"<p>c</p>"


@responses.activate
def test_relative_location_resolved_per_whatwg(make) -> None:
    responses.get("http://example.test/x/y", status=303, headers={"Location": "../z?q=1#frag"})
    responses.get("http://example.test/z?q=1", body="ok", headers=HTML)
    result = make().fetch("http://example.test/x/y").result
    assert result is not None
    assert result.final_url == "http://example.test/z?q=1"
    assert result.redirects == 1


@responses.activate
def test_3xx_without_location_is_a_plain_response(make) -> None:
    responses.get(URL, status=302)
    outcome = make().fetch(URL)
    assert outcome.errors == ()
    assert outcome.result is not None
    assert outcome.result.status_code == 302


@responses.activate
def test_redirect_loop(make, sleeps) -> None:
    responses.get(URL, status=301, headers={"Location": "/other"})
    responses.get("http://example.test/other", status=301, headers={"Location": "/page"})
    outcome = make().fetch(URL)
    assert kinds(outcome) == [(ErrorKind.REDIRECT, 1, True)]
    assert outcome.errors[0].message.startswith("RedirectError: redirect loop: ")
    assert outcome.errors[0].status_code == 301
    assert len(responses.calls) == 2
    assert outcome.result is not None
    assert outcome.result.status_code == 301
    assert outcome.result.final_url == "http://example.test/other"


@responses.activate
def test_too_many_redirects(make, sleeps) -> None:
    for i in range(10):
        responses.get(f"http://example.test/{i}", status=302, headers={"Location": f"/{i + 1}"})
    outcome = make(replace(SETTINGS, max_redirects=3)).fetch("http://example.test/0")
    assert kinds(outcome) == [(ErrorKind.REDIRECT, 1, True)]
    assert "more than 3 redirects" in outcome.errors[0].message
    assert len(responses.calls) == 4
    assert outcome.result is not None
    assert outcome.result.redirects == 3


@pytest.mark.parametrize(
    "location", ["ftp://example.test/file", "file:///etc/passwd", "javascript:alert(1)"]
)
@responses.activate
def test_redirect_to_other_schemes_is_refused(make, sleeps, location: str) -> None:
    responses.get(URL, status=302, headers={"Location": location})
    outcome = make().fetch(URL)
    assert kinds(outcome) == [(ErrorKind.REDIRECT, 1, True)]
    assert "refused" in outcome.errors[0].message
    assert len(responses.calls) == 1


@responses.activate
def test_follow_redirect_declines_a_hop_before_it_is_requested(make, sleeps) -> None:
    """Issue 13: the hook replaces ``redirect_filter``; a declined hop ends the fetch on the
    3xx, without error, its target in ``location`` (no userinfo), and is never requested."""
    responses.get(URL, status=302, headers={"Location": "http://eve:pw@blocked.test/x#f"})
    seen: list[str] = []
    outcome = make().fetch(URL, follow_redirect=lambda url: seen.append(url) or False)
    assert outcome.errors == ()
    assert outcome.result is not None
    assert (outcome.result.status_code, outcome.result.final_url) == (302, URL)
    assert outcome.result.location == seen[0] == "http://blocked.test/x"
    assert len(responses.calls) == 1


# -- conditional GET, content types, size ---------------------------------------------------


@responses.activate
def test_304_with_validators_sent(make) -> None:
    responses.get(URL, status=304, headers={"ETag": '"v2"'})
    outcome = make().fetch(URL, etag='"v1"', last_modified="Wed, 01 Jan 2025 00:00:00 GMT")
    sent = responses.calls[0].request.headers
    assert sent["If-None-Match"] == '"v1"'
    assert sent["If-Modified-Since"] == "Wed, 01 Jan 2025 00:00:00 GMT"
    result = outcome.result
    assert result is not None
    assert result.not_modified
    assert result.body is None
    assert result.etag == '"v2"'
    assert outcome.errors == ()


@responses.activate
def test_default_headers_and_validators_stored(make) -> None:
    headers = {**HTML, "ETag": 'W/"abc"', "Last-Modified": "Tue, 31 Dec 2024 00:00:00 GMT"}
    responses.get(URL, body="<p>x</p>", headers=headers)
    result = make().fetch(URL).result
    sent = responses.calls[0].request.headers
    assert sent["User-Agent"] == "testbot/1.0"
    assert sent["Accept"] == ACCEPT
    assert sent["Accept-Encoding"] == "gzip, deflate, br, zstd"
    assert "If-None-Match" not in sent
    assert result is not None
    assert result.etag == 'W/"abc"'
    assert result.last_modified == "Tue, 31 Dec 2024 00:00:00 GMT"
    assert result.content_type == "text/html"
    assert result.charset == "utf-8"
    assert result.content_length == 8
    assert result.fetched_at == NOW
    assert not result.not_modified


@responses.activate
def test_non_html_is_not_downloaded(make) -> None:
    responses.get(
        URL,
        body=b"\x89PNG" + b"\0" * 996,
        headers={"Content-Type": "Image/PNG; q=1", "Content-Length": "1000"},
    )
    outcome = make().fetch(URL)
    result = outcome.result
    assert result is not None
    assert result.body is None
    assert result.content_type == "image/png"
    assert result.content_length == 1000  # from the header
    assert outcome.errors == ()


@responses.activate
def test_missing_content_type_is_treated_as_html(make) -> None:
    responses.get(URL, body=b"<p>no type</p>", content_type=None)
    result = make().fetch(URL).result
    assert result is not None
    assert result.content_type is None
    assert result.body == b"<p>no type</p>"


@responses.activate
def test_xhtml_is_downloaded(make) -> None:
    responses.get(
        URL, body=b"<html/>", headers={"Content-Type": 'application/xhtml+xml;charset="latin-1"'}
    )
    result = make().fetch(URL).result
    assert result is not None
    assert result.body == b"<html/>"
    assert result.charset == "latin-1"


@responses.activate
def test_body_over_cap_is_too_large_and_not_retried(make, sleeps) -> None:
    responses.get(URL, body=b"x" * 300_000, headers=HTML)
    outcome = make(replace(SETTINGS, max_body_bytes=100_000)).fetch(URL)
    assert len(responses.calls) == 1
    assert kinds(outcome) == [(ErrorKind.TOO_LARGE, 1, True)]
    result = outcome.result
    assert result is not None
    assert result.status_code == 200
    assert result.body is None
    assert result.content_length is not None
    assert 100_000 < result.content_length <= 100_000 + 64 * 1024


@responses.activate
def test_body_exactly_at_cap_is_kept(make) -> None:
    responses.get(URL, body=b"x" * 1000, headers=HTML)
    outcome = make(replace(SETTINGS, max_body_bytes=1000)).fetch(URL)
    assert outcome.result is not None
    assert outcome.result.body == b"x" * 1000
    assert outcome.errors == ()


@responses.activate
def test_gzip_body_is_decoded(make) -> None:
    page = b"<p>" + b"hello " * 1000 + b"</p>"
    responses.get(URL, body=gzip.compress(page), headers={**HTML, "Content-Encoding": "gzip"})
    result = make().fetch(URL).result
    assert result is not None
    assert result.body == page
    assert result.content_length == len(page)


@responses.activate
def test_gzip_bomb_is_cut_by_decoded_size(make) -> None:
    bomb = gzip.compress(b"\0" * 50_000_000, compresslevel=9)  # about 50 KB on the wire
    assert len(bomb) < 100_000
    responses.get(URL, body=bomb, headers={**HTML, "Content-Encoding": "gzip"})
    outcome = make(replace(SETTINGS, max_body_bytes=1_000_000)).fetch(URL)
    assert kinds(outcome) == [(ErrorKind.TOO_LARGE, 1, True)]
    assert outcome.result is not None
    assert outcome.result.content_length is not None
    assert 1_000_000 < outcome.result.content_length <= 1_000_000 + 64 * 1024


@responses.activate
def test_broken_gzip_is_content_and_not_retried(make, sleeps) -> None:
    responses.get(URL, body=b"not gzip at all", headers={**HTML, "Content-Encoding": "gzip"})
    outcome = make().fetch(URL)
    assert kinds(outcome) == [(ErrorKind.CONTENT, 1, True)]
    assert outcome.result is None


# -- sessions and proxies -------------------------------------------------------------------


@responses.activate
def test_one_session_per_thread_all_closed(make) -> None:
    responses.get(URL, body="ok", headers=HTML)
    fetcher = make()
    results: list[FetchOutcome] = []
    threads = [
        threading.Thread(target=lambda: results.append(fetcher.fetch(URL))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fetcher.fetch(URL)
    fetcher.fetch(URL)
    assert len(fetcher.sessions) == 5
    assert all(s.trust_env is False for s in fetcher.sessions)
    assert all(r.result is not None and r.result.body == b"ok" for r in results)
    fetcher.close()
    assert fetcher.sessions == ()


def test_proxy_rules() -> None:
    rules = ProxyRules(
        {
            "http": "http://proxy:3128",
            "https": "http://proxy:3128",
            "no": "localhost, .corp.test,10.0.0.0/8,a.test:8080",
        }
    )
    proxied = {"http": "http://proxy:3128", "https": "http://proxy:3128"}
    assert rules.for_url("http://example.com/") == proxied
    assert rules.for_url("http://localhost:8000/") is None
    assert rules.for_url("https://x.corp.test/") is None
    assert rules.for_url("https://corp.test/") is None
    assert rules.for_url("https://notcorp.test/") == proxied
    assert rules.for_url("http://10.1.2.3/") is None
    assert rules.for_url("http://11.1.2.3/") == proxied
    assert rules.for_url("http://a.test:8080/") is None
    assert rules.for_url("http://a.test/") == proxied
    assert ProxyRules({"http": "http://p:1", "no": "*"}).for_url("http://x/") is None
    assert ProxyRules({}).for_url("http://x/") is None


def test_proxy_env_is_read_once_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.test:3128")
    monkeypatch.setenv("no_proxy", "internal.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp-ca.pem")
    fetcher = Fetcher(SETTINGS, "bot")
    monkeypatch.delenv("http_proxy")
    assert fetcher.verify == "/etc/corp-ca.pem"
    assert fetcher.proxies_for("http://example.com/") == {"http": "http://proxy.test:3128"}
    assert fetcher.proxies_for("http://internal.test/") is None
    fetcher.close()


# -- a real server on 127.0.0.1 -------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set[int]  # set per server class below

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connections.add(id(self.connection))

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)
        elif self.path == "/short":
            self._send(200, b"only ten b", {"Content-Type": "text/html", "Content-Length": "1000"})
            self.close_connection = True
        elif self.path == "/page":
            self._send(200, b"x" * 10_240, {"Content-Type": "text/html", "Content-Length": "10240"})
        elif self.path == "/moved":
            self._send(301, b"moved", {"Location": "/page", "Content-Length": "5"})
        else:
            self._send(404, b"<p>nope</p>", {"Content-Type": "text/html", "Content-Length": "11"})


@pytest.fixture
def server() -> Iterator[tuple[str, set[int]]]:
    connections: set[int] = set()
    handler = type("Handler", (_Handler,), {"connections": connections})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", connections
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.mark.timeout(10)
def test_drip_server_is_cut_at_the_deadline(make, server) -> None:
    base, _ = server
    settings = replace(SETTINGS, total_timeout=1.0, read_timeout_s=5.0, retries=0)
    started = time.monotonic()
    outcome = make(settings).fetch(f"{base}/drip")
    took = time.monotonic() - started
    assert kinds(outcome) == [(ErrorKind.TIMEOUT, 1, True)]
    assert "deadline" in outcome.errors[0].message
    assert 0.9 <= took < 1.5


@pytest.mark.timeout(10)
def test_connection_refused_is_connect(make, sleeps) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = make(replace(SETTINGS, retries=1)).fetch(f"http://127.0.0.1:{port}/")
    assert kinds(outcome) == [(ErrorKind.CONNECT, 1, False), (ErrorKind.CONNECT, 2, True)]
    assert len(sleeps) == 1
    assert outcome.result is None


@pytest.mark.timeout(10)
def test_body_shorter_than_content_length_is_content_and_retried(make, server, sleeps) -> None:
    """A transfer cut short is kind ``content`` (urllib3's ProtocolError), retried as transient."""
    base, _ = server
    outcome = make(replace(SETTINGS, retries=1)).fetch(f"{base}/short")
    assert kinds(outcome) == [(ErrorKind.CONTENT, 1, False), (ErrorKind.CONTENT, 2, True)]
    assert "IncompleteRead" in outcome.errors[0].message
    assert outcome.result is None


@pytest.mark.timeout(10)
def test_keep_alive_survives_redirects_and_errors(make, server) -> None:
    base, connections = server
    fetcher = make()
    page = fetcher.fetch(f"{base}/page").result
    moved = fetcher.fetch(f"{base}/moved").result
    missing = fetcher.fetch(f"{base}/missing").result
    assert page is not None
    assert page.body == b"x" * 10_240
    assert moved is not None
    assert moved.final_url == f"{base}/page"
    assert moved.elapsed_ms >= 0
    assert missing is not None
    assert missing.status_code == 404
    assert len(connections) == 1


# -- body types, sinks, truncation ----------------------------------------------------------


@responses.activate
def test_body_types_none_downloads_any_type(make) -> None:
    responses.get(URL, body=b"User-agent: *\n", headers={"Content-Type": "text/plain"})
    result = make(body_types=None).fetch(URL).result
    assert result is not None
    assert result.body == b"User-agent: *\n"


@responses.activate
def test_body_types_chooses_what_is_downloaded(make) -> None:
    responses.get(URL, body=b"<urlset/>", headers={"Content-Type": "application/xml"})
    responses.get(URL + "2", body=b"<p>html</p>", headers=HTML)
    fetcher = make(body_types=frozenset({"application/xml"}))
    xml = fetcher.fetch(URL).result
    page = fetcher.fetch(URL + "2").result
    assert xml is not None
    assert xml.body == b"<urlset/>"
    assert page is not None
    assert page.body is None


@responses.activate
def test_sink_receives_the_body(make) -> None:
    responses.get(URL, body=b"x" * 200_000, headers=HTML)
    sink = io.BytesIO()
    outcome = make().fetch(URL, sink=sink)
    assert outcome.errors == ()
    assert outcome.result is not None
    assert outcome.result.body is None
    assert outcome.result.content_length == 200_000
    assert sink.getvalue() == b"x" * 200_000


@responses.activate
def test_sink_is_untouched_when_no_body_is_downloaded(make) -> None:
    responses.get(URL, body=b"\x89PNG", headers={"Content-Type": "image/png"})
    sink = io.BytesIO()
    outcome = make().fetch(URL, sink=sink)
    assert outcome.result is not None
    assert sink.getvalue() == b""


@responses.activate
def test_sink_over_the_cap_is_too_large_and_emptied(make) -> None:
    responses.get(URL, body=b"x" * 300_000, headers=HTML)
    sink = io.BytesIO()
    outcome = make(replace(SETTINGS, max_body_bytes=100_000)).fetch(URL, sink=sink)
    assert kinds(outcome) == [(ErrorKind.TOO_LARGE, 1, True)]
    assert sink.getvalue() == b""


@responses.activate
def test_truncate_body_keeps_the_first_bytes_without_error(make) -> None:
    responses.get(URL, body=b"a" * 1000 + b"b" * 299_000, headers=HTML)
    fetcher = make(replace(SETTINGS, max_body_bytes=1000))
    outcome = fetcher.fetch(URL, truncate_body=True)
    assert outcome.errors == ()
    assert outcome.result is not None
    assert outcome.result.body == b"a" * 1000
    assert outcome.result.content_length is not None
    assert outcome.result.content_length > 1000  # bytes read: tells the body was cut
    sink = io.BytesIO()
    outcome = fetcher.fetch(URL, sink=sink, truncate_body=True)
    assert outcome.errors == ()
    assert sink.getvalue() == b"a" * 1000


class _CutThenWhole:
    """First hit: 7 of 1000 promised bytes, then the connection closes; later hits: the page."""

    def __call__(self, ctx: RequestContext) -> None:
        if ctx.hits == 1:
            ctx.start(200, {"Content-Type": "text/html"}, length=1000)
            ctx.write(b"partial")
            ctx.close_connection()
        else:
            ctx.send(200, b"<p>whole</p>")


@pytest.mark.timeout(10)
def test_sink_is_rewound_and_truncated_on_a_retry(make, site_server) -> None:
    site = Site()
    site.add("/page", _CutThenWhole())
    server = site_server(site)
    sink = io.BytesIO(b"kept:")
    sink.seek(0, io.SEEK_END)
    outcome = make(replace(SETTINGS, retries=1)).fetch(server.url("/page"), sink=sink)
    assert kinds(outcome) == [(ErrorKind.CONTENT, 1, False)]
    assert sink.getvalue() == b"kept:<p>whole</p>"
    assert outcome.result is not None
    assert outcome.result.content_length == len(b"<p>whole</p>")


# -- before_request -------------------------------------------------------------------------


@responses.activate
def test_before_request_runs_before_every_attempt_and_hop(make) -> None:
    other = "http://other.test/b"
    responses.get(URL, status=302, headers={"Location": other})
    responses.get(other, status=500)
    responses.get(other, body="<p>ok</p>", headers=HTML)
    seen: list[tuple[str, int, str]] = []

    def gate(url: str) -> None:
        seen.append((url, len(responses.calls), threading.current_thread().name))

    outcome = make(replace(SETTINGS, retries=1), before_request=gate).fetch(URL)
    assert outcome.result is not None
    assert outcome.result.status_code == 200
    me = threading.current_thread().name
    assert seen == [(URL, 0, me), (other, 1, me), (URL, 2, me), (other, 3, me)]


@responses.activate
def test_time_in_before_request_does_not_count_against_the_deadline(make) -> None:
    responses.get(URL, body="<p>ok</p>", headers=HTML)
    clock = [1000.0]

    def slow_gate(url: str) -> None:
        clock[0] += 120.0  # twice total_timeout

    fetcher = make(monotonic=lambda: clock[0], before_request=slow_gate)
    outcome = fetcher.fetch(URL)
    assert outcome.errors == ()
    assert outcome.result is not None
    assert outcome.result.elapsed_ms == 0


@responses.activate
def test_before_request_raising_ends_the_fetch_unsent(make) -> None:
    responses.get(URL, body="<p>ok</p>", headers=HTML)

    def refuse(url: str) -> None:
        raise RuntimeError("shutting down")

    outcome = make(before_request=refuse).fetch(URL)
    assert kinds(outcome) == [(ErrorKind.OTHER, 1, True)]
    assert "shutting down" in outcome.errors[0].message
    assert len(responses.calls) == 0


# -- private-network guard ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "problem"),
    [
        ("127.0.0.2", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("192.168.0.1", "a private address"),
        ("::ffff:192.168.0.1", "a private address"),
        ("fd00::1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("240.0.0.1", "a reserved address"),
        ("100.64.0.1", "a non-global address"),
        ("93.184.216.34", None),
        ("2606:4700::1", None),
    ],
)
def test_address_problem(ip: str, problem: str | None) -> None:
    assert address_problem(ip) == problem


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.timeout(10)
def test_private_peer_is_refused_before_any_request(make, site_server) -> None:
    site = Site()
    site.add("/page", Page("<p>secret</p>"))
    server = site_server(site)
    asked: list[str] = []

    def allow(host: str) -> bool:
        asked.append(host)
        return False

    outcome = make(allow_private=allow).fetch(server.url("/page"))
    assert kinds(outcome) == [(ErrorKind.OTHER, 1, True)]  # not retried
    message = outcome.errors[0].message
    assert message.startswith("PrivateAddressError: refused: 127.0.0.1 is a loopback address")
    assert "allow_private_networks = true" in message
    assert outcome.result is None
    assert asked == ["127.0.0.1"]
    assert _wait_for(lambda: server.connections >= 1)  # the connection was made...
    time.sleep(0.05)
    assert server.log == []  # ...but no request line was sent


@pytest.mark.timeout(10)
def test_private_peer_allowed_for_its_host_works(make, site_server) -> None:
    site = Site()
    site.add("/page", Page("<p>mine</p>"))
    server = site_server(site)
    fetcher = make(allow_private=lambda host: host == "127.0.0.1")
    for _ in range(2):  # the second fetch reuses the checked connection
        outcome = fetcher.fetch(server.url("/page"))
        assert outcome.errors == ()
        assert outcome.result is not None
        assert outcome.result.body == b"<p>mine</p>"
    assert server.connections == 1


@pytest.mark.timeout(10)
def test_redirect_to_a_refused_private_host_is_a_redirect_error(make, site_server) -> None:
    site = Site()
    server = site_server(site, hosts=["127.0.0.2", "127.0.0.3"])
    target = server.url("/page", host="127.0.0.3")
    site.add("/go", Redirect(target), host="127.0.0.2")
    site.add("/page", Page("<p>inside</p>"), host="127.0.0.3")
    start = server.url("/go", host="127.0.0.2")
    outcome = make(allow_private=lambda host: host == "127.0.0.2").fetch(start)
    assert kinds(outcome) == [(ErrorKind.REDIRECT, 1, True)]
    assert "refused: 127.0.0.3 is a loopback address" in outcome.errors[0].message
    assert outcome.errors[0].status_code == 301
    result = outcome.result
    assert result is not None
    assert (result.status_code, result.final_url, result.redirects) == (301, start, 0)
    deadline = time.monotonic() + 2  # the server logs a request just after its response is out
    while not server.log and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r.host for r in server.log] == ["127.0.0.2"]


def test_private_address_error_is_a_fetch_error() -> None:
    from crawler.errors import FetchError, classify

    exc = PrivateAddressError("refused")
    assert isinstance(exc, FetchError)
    assert classify(exc) is ErrorKind.OTHER


@pytest.mark.timeout(10)
def test_proxied_connections_are_not_checked(
    make, site_server: SiteServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The peer of a proxied connection is the proxy: the guard does not apply (a limit)."""
    proxy = site_server(Site())  # answers 404 to the forwarded "GET http://..." request
    monkeypatch.setenv("http_proxy", proxy.base_url())
    outcome = make(allow_private=lambda host: False).fetch("http://example.test/page")
    assert outcome.errors == ()
    assert outcome.result is not None
    assert outcome.result.status_code == 404
    assert [r.path for r in proxy.log] == ["http://example.test/page"]


# -- per-request shortcuts ------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_plain_gets_never_carry_another_requests_headers(make, site_server) -> None:
    """Plain GETs share one header mapping; validators stay with theirs. URL credentials are
    never sent (issue 13: no credentials from a URL, ever)."""
    site = Site()
    site.add("/page", Page("<p>x</p>"))
    server = site_server(site)
    fetcher = make(allow_private=lambda host: True)
    plain = server.url("/page")
    fetcher.fetch(plain, etag='"v1"', last_modified="Wed, 01 Jan 2025 00:00:00 GMT")
    fetcher.fetch(plain)
    fetcher.fetch(plain.replace("http://", "http://bob:pw@"))
    fetcher.fetch(plain)
    sent = [{k.lower(): v for k, v in r.headers.items()} for r in server.log]
    assert [sorted(set(h) - {"host", "user-agent", "accept", "accept-encoding"}) for h in sent] == [
        ["if-modified-since", "if-none-match"],
        [],
        [],
        [],
    ]
    assert {h["user-agent"] for h in sent} == {"testbot/1.0"}
    assert {h["accept"] for h in sent} == {ACCEPT}


_ORIGINS = [
    "http://127.0.0.2:8080/a",
    "http://127.0.0.2:8080/b?q=1#f",
    "HTTP://Example.TEST/x",
    "http://example.test:80/y",
    "http://example.test?q",
    "http://user:pw@example.test:81/z",
    "http://[::1]:8080/v6",
    "https://example.test/s",
    "https://example.test:8443/s",
]


@pytest.mark.parametrize("verify", [True, False, "/etc/ssl/certs"])
def test_adapter_picks_the_pool_requests_would(verify: bool | str) -> None:
    """The remembered pool parameters give the very pool ``requests`` itself would pick, and
    the request target ``requests`` would send, for every spelling of an origin."""
    adapter = GuardedAdapter(guarded_pool_classes(lambda host: True))
    plain = requests.adapters.HTTPAdapter
    try:
        prepared = []
        for _ in range(2):  # the first round fills the cache, the second reads it
            for url in _ORIGINS:
                request = requests.Request("GET", url).prepare()
                prepared.append(request.url)
                ours = adapter.get_connection_with_tls_context(request, verify, {}, None)
                theirs = plain.get_connection_with_tls_context(adapter, request, verify, {}, None)
                assert ours is theirs, url
                assert adapter.request_url(request, {}) == plain.request_url(adapter, request, {})
        origins = {"{}://{}".format(*urlsplit(u)) for u in prepared}
        assert len(origins) == 7  # /a and /b share one origin, and so do the example.test ones
        assert {origin for origin, _ in adapter._pool_params} == origins
    finally:
        adapter.close()


def test_adapter_cache_stays_small_over_many_hosts() -> None:
    adapter = GuardedAdapter(guarded_pool_classes(lambda host: True))
    try:
        for i in range(3 * _POOL_CACHE_MAX):
            request = requests.Request("GET", f"http://h{i}.test/").prepare()
            pool = adapter.get_connection_with_tls_context(request, True, {}, None)
            assert pool.host == f"h{i}.test"
            assert len(adapter._pool_params) <= _POOL_CACHE_MAX
    finally:
        adapter.close()


def test_adapter_with_proxies_asks_requests_every_time() -> None:
    adapter = GuardedAdapter(guarded_pool_classes(lambda host: True))
    proxies = {"http": "http://proxy.test:3128"}
    request = requests.Request("GET", "http://example.test/p?q=1").prepare()
    try:
        pool = adapter.get_connection_with_tls_context(request, True, proxies, None)
        assert (pool.host, pool.port) == ("proxy.test", 3128)
        assert adapter.request_url(request, proxies) == "http://example.test/p?q=1"
        assert adapter._pool_params == {}
    finally:
        adapter.close()


def test_bad_urls_fail_as_in_requests() -> None:
    adapter = GuardedAdapter(guarded_pool_classes(lambda host: True))
    request = requests.PreparedRequest()
    request.method = "GET"
    request.url = "http://example.test:99999/"  # a port prepare_url would have refused
    with pytest.raises(requests.exceptions.InvalidURL):
        adapter.get_connection_with_tls_context(request, True, {}, None)
    assert adapter._pool_params == {}
    adapter.close()


def test_responses_read_the_socket_in_wide_steps() -> None:
    class Sock:
        def makefile(self, mode: str, buffering: int = -1) -> io.BytesIO:
            self.made = (mode, buffering)
            return io.BytesIO(b"")

    sock = Sock()
    WideBufferResponse(sock, method="GET")
    assert sock.made == ("rb", READ_BUFFER)
    for pool in guarded_pool_classes(lambda host: True).values():
        assert pool.ConnectionCls.response_class is WideBufferResponse  # type: ignore[attr-defined]


@pytest.mark.timeout(10)
def test_a_body_larger_than_the_read_buffer_arrives_whole(make, site_server) -> None:
    body = bytes(range(256)) * (3 * READ_BUFFER // 256 + 7)
    site = Site()
    site.add("/big", Page(body, content_type="text/html"))
    site.add("/small", Page("<p>after</p>"))
    server = site_server(site)
    fetcher = make(allow_private=lambda host: True)
    big = fetcher.fetch(server.url("/big")).result
    small = fetcher.fetch(server.url("/small")).result  # the same connection, read cleanly
    assert big is not None
    assert big.body == body
    assert small is not None
    assert small.body == b"<p>after</p>"
    assert server.connections == 1


class _Sock:
    def __init__(self) -> None:
        self.shut = threading.Event()

    def shutdown(self, how: int) -> None:
        self.shut.set()


class _Conn:
    def __init__(self) -> None:
        self.sock = _Sock()


@pytest.mark.timeout(10)
def test_deadline_heap_sheds_disarmed_watches_and_still_fires() -> None:
    dog = Watchdog()
    try:
        kept = dog.arm(60.0)
        for _ in range(5_000):
            assert not dog.disarm(dog.arm(60.0))
        assert dog.held <= 2 * 2 + WATCH_SLACK
        conn = _Conn()
        soon = dog.arm(0.05)
        dog.attach(soon, conn)
        assert conn.sock.shut.wait(5)
        assert dog.disarm(soon)
        assert not kept.fired
        assert not dog.disarm(kept)
    finally:
        dog.close()


@pytest.mark.timeout(10)
def test_watchdog_sleeps_through_a_watch_ending_just_before_its_wake() -> None:
    """The watch armed for a body ends microseconds before its request's: no thread switch for
    it, yet it is still acted on, at most ``WATCH_LATE_S`` late."""
    dog = Watchdog()
    try:
        first = dog.arm(0.3)
        assert _wait_for(lambda: dog.asleep_until < math.inf)  # asleep until ``first`` ends
        assert dog.wakeups == 1
        conn = _Conn()
        second = dog.arm(0.3 - WATCH_LATE_S / 2)
        dog.attach(second, conn)
        assert dog.wakeups == 1
        started = time.monotonic()
        assert conn.sock.shut.wait(5)
        assert time.monotonic() - started < 0.3 + WATCH_LATE_S + 0.2
        assert dog.disarm(second)
        assert dog.disarm(first)
        assert _wait_for(lambda: dog.asleep_until == math.inf)  # nothing left: asleep for good
        dog.arm(0.01)  # well before the next wake: the thread is woken for it
        assert dog.wakeups == 2
    finally:
        dog.close()
