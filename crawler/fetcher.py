"""One HTTP fetch with limits, conditional headers and a tenacity retry policy.

:meth:`Fetcher.fetch` turns a URL into a :class:`FetchOutcome`: the last HTTP response of the
last attempt (any status) and one :class:`~crawler.records.ErrorRecord` per failed attempt. It
never raises for a per-URL failure (DESIGN §2.3); only ``KeyboardInterrupt``/``SystemExit`` and
bugs in the arguments escape. It does not parse, store, decide politeness or scope, nor sleep for
long: a ``Retry-After`` above ``max_retry_after_s`` ends the fetch at once, for the engine to turn
into a host-level delay.

Threads: many workers call ``fetch`` at once. ``requests.Session`` is not thread-safe, so each
thread gets its own Session, created lazily, with a connection pool of its own (one connection per
host, since a thread has one request in flight; ``pool_hosts`` hosts kept warm per thread).

Decisions:

* **What is downloaded.** Only a 2xx response whose media type is in ``body_types`` (by default
  ``text/html`` and ``application/xhtml+xml``) -- or that has no ``Content-Type`` at all, since
  browsers sniff such pages and they are mostly HTML. ``body_types=None`` downloads any type (the
  robots.txt and sitemap fetchers). Other responses are closed unread (small bodies are drained
  so the connection can be reused); ``content_length`` then comes from the header.
* **Where the body goes.** Into ``FetchResult.body``, or, when ``fetch`` is given a ``sink`` (a
  seekable binary file, e.g. a spooled temp file for a sitemap), into the sink: ``body`` stays
  None and ``content_length`` counts the bytes written (bytes read, when ``truncate_body`` cut
  the body). Every attempt first rewinds the sink to where it
  was when ``fetch`` was called and truncates it there, and a failed attempt leaves it so: after
  ``fetch`` the sink holds the body of the result, or nothing.
* **Size cap.** Counted in *decoded* bytes, read in 64 KiB steps with urllib3's bounded
  decompression, so a gzip bomb never inflates past ``max_body_bytes`` + 64 KiB. Over the cap the
  attempt fails with ``too_large`` -- unless ``fetch`` is called with ``truncate_body=True``
  (robots.txt, RFC 9309 §2.5: parse the first part, ignore the rest): then the body (or sink)
  keeps exactly the first ``max_body_bytes`` bytes, the rest is not read, there is no error,
  and ``content_length`` (bytes read) is larger than ``max_body_bytes``, which tells it was cut.
* **Before every request** -- each attempt and each redirect hop -- ``before_request(url)`` is
  called in the calling thread (the engine's per-host politeness gate; it may block briefly).
  It may return a *release* callable: the connection calls it right after the request's bytes
  are written (:data:`crawler.netguard.sent_hook`), or the fetcher calls it when the request
  failed before that; either way exactly once, so the gate measures real send times.
  Time spent in it counts neither against ``total_timeout`` nor in ``elapsed_ms``. An exception
  from it ends the attempt as a final ``other`` error.
* **Private networks.** With ``allow_private`` set, every direct connection is checked once
  connected, before the request is sent (:mod:`crawler.netguard`): a non-public peer address
  whose host ``allow_private(host)`` refuses fails the attempt with
  :class:`~crawler.netguard.PrivateAddressError`, kind ``other``, or ``redirect`` on a redirect
  hop (then, as for other redirect failures, ``result`` is the 3xx that pointed there). Not
  retried. Proxied connections are not checked (the peer is the proxy).
* **Deadline.** ``total_timeout`` covers one attempt, all redirect hops and the body. It is
  checked after every chunk, and near the deadline the socket timeout is lowered to what is left.
  requests' read timeout is per read, so a server that drips its status line and headers (or a
  body) a byte at a time would never be cut by it: a watchdog thread (one per Fetcher) shuts the
  connection's socket down when the deadline passes (within 50 ms) while a request waits for
  its response or reads its body, and the attempt fails with ``timeout``. *Limit*: a proxied
  connection is not watched (the watchdog learns the connection from
  :data:`crawler.netguard.conn_hook`, which proxied connections do not call); its read timeout
  still bounds each read.
* **Retried:** connection errors, DNS ``EAI_AGAIN`` (a temporary lookup failure; a name that does
  not exist is final at once), timeouts (including the deadline), a connection broken mid-body
  (kind ``content``), and 429/500/502/503/504. **Not retried:** TLS, redirect, too_large, a body
  that fails to decode (``content``), ``other``, and any other status.
* **Redirects.** Each hop's target is resolved, stripped of fragment and userinfo, and
  checked *before* it is requested: an http(s) URL, not seen in this chain, and, when the
  caller passes ``follow_redirect(target)``, accepted by it (the worker follows only hops that
  stay on the host, in scope and allowed by robots.txt). A hop it declines is not requested:
  the fetch ends without error on that 3xx, ``final_url`` the URL that answered it and
  ``location`` the target, for the caller to treat as a link. The private-network guard
  still checks every hop that is requested.
* **Redirect failures** (loop, too many hops, refused target) return the 3xx response as
  ``result`` (its ``final_url`` is the URL that redirected) with a final ``redirect`` error.
* **What is requested** is the URL as given (for the crawl: the WHATWG serialization
  :mod:`crawler.urls` stores), byte for byte: a browser sends ``/foo%``, ``/p[1]``,
  ``?q={x}`` and ``%2f`` as they are, and so do we. requests (``requote_uri``) and urllib3
  (``_encode_target``) would re-escape them (``/foo%25``, ``%5B``, ``%2F``), so the prepared
  request keeps the URL given and the pools write the target they get (:class:`_VerbatimTarget`),
  on every attempt and redirect hop. A URL that is not printable ASCII without spaces (not
  from ada: the caller's own) goes out as requests escapes it. *Limit*: through an HTTP proxy
  (an absolute request target, requests' own proxy pools) urllib3 still re-escapes.
* **Credentials from a URL are never sent**: the ``user:password@`` of every URL (the one
  given, every redirect target) is dropped right before the request, so requests never derives
  an ``Authorization: Basic`` header from it, and ``final_url``, the redirect chain and the
  stored ``Location`` header never hold it.
* **Cookies** are neither stored nor sent: per-thread jars would make a crawl depend on which
  thread fetched which page.
* ``elapsed_ms`` and ``fetched_at`` describe the attempt that produced the result (all of its
  redirect hops), not earlier attempts nor the backoff waits between them.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import itertools
import logging
import math
import os
import random
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from http.cookiejar import Cookie
from typing import IO, Any
from urllib.parse import urlsplit

import ada_url
import requests
import requests.adapters
import requests.cookies
import tenacity
import urllib3.connectionpool
import urllib3.exceptions

from crawler import errors, httpheaders
from crawler.config import FetchSettings
from crawler.errors import DeadlineError, ErrorKind, RedirectError
from crawler.netguard import (
    GuardedAdapter,
    PrivateAddressError,
    conn_hook,
    guarded_pool_classes,
    sent_hook,
)
from crawler.records import ErrorRecord, FetchResult

__all__ = ["HTML_TYPES", "FetchOutcome", "Fetcher", "PrivateAddressError", "parse_retry_after"]

logger = logging.getLogger(__name__)

ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"
ACCEPT_ENCODING = "gzip, deflate"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_DRAIN_MAX = 64 * 1024
"""A body we won't use is read and dropped (to keep the connection) only up to this size."""
_WATCH_SLACK = 256
"""Disarmed watches the deadline heap may hold beyond twice the armed ones before a sweep."""
_WATCH_LATE_S = 0.05
"""How late the watchdog may act on a deadline rather than be woken early for it. A body's
watch ends a few microseconds before its request's watch: waking the watchdog thread for it
would cost a thread switch per page."""
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@]*@")
_AUTHORITY_USERINFO = re.compile(r"(?i)^([a-z][a-z0-9+.-]*://)[^/?#\\]*@")
"""The ``user:password@`` of a URL's authority (up to its last ``@``), to drop before a request."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """What one :meth:`Fetcher.fetch` learned."""

    result: FetchResult | None
    """The last HTTP response of the last attempt (any status), or None if it received none."""
    errors: tuple[ErrorRecord, ...] = ()
    """One per failed attempt; the last is ``final`` when the fetch failed for good."""

    @property
    def failed(self) -> bool:
        """True when the fetch failed for good (its last error is final)."""
        return bool(self.errors) and self.errors[-1].final


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One attempt: its response (if any), its failure (if any), and whether to try again."""

    number: int
    result: FetchResult | None
    kind: ErrorKind | None = None
    message: str = ""
    at: datetime | None = None
    status_code: int | None = None
    retryable: bool = False


class _VerbatimTarget(urllib3.connectionpool.HTTPConnectionPool):
    """A pool that writes the request target it is given, not urllib3's re-escaping of it.

    ``urlopen`` runs a path through ``_encode_target``, which escapes what RFC 3986 leaves out
    but browsers send (``/foo%`` → ``/foo%25``, ``[`` → ``%5B``) and uppercases escapes
    (``%2f`` → ``%2F``). The target as given travels to ``_make_request`` as a keyword (a
    request's own, so a pool could even be shared between threads) and is written as it is.
    http.client still refuses controls and spaces in it, and the fetcher only hands over
    printable ASCII (see "What is requested" in the module docstring).
    """

    def urlopen(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith("/"):
            kwargs["_verbatim_target"] = url
        else:  # an absolute URL (a proxy's request) is left to urllib3
            kwargs.pop("_verbatim_target", None)
        return super().urlopen(method, url, *args, **kwargs)

    def _make_request(self, conn: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        target = kwargs.pop("_verbatim_target", None)
        return super()._make_request(conn, method, target or url, *args, **kwargs)


def _verbatim_pools(
    pools: Mapping[str, type[urllib3.connectionpool.HTTPConnectionPool]],
) -> dict[str, type[urllib3.connectionpool.HTTPConnectionPool]]:
    """``pools`` (``PoolManager.pool_classes_by_scheme``), each sending targets verbatim."""
    return {
        scheme: type(f"Verbatim{cls.__name__}", (_VerbatimTarget, cls), {})
        for scheme, cls in pools.items()
    }


class _NoCookies(requests.cookies.RequestsCookieJar):
    """A jar that keeps nothing: cookies are neither stored nor sent (see module docstring)."""

    def set_cookie(self, cookie: Cookie, *args: Any, **kwargs: Any) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


class _Watch:
    """One armed deadline: the connection to shut when it passes, and whether it did."""

    __slots__ = ("conn", "done", "fired")

    def __init__(self) -> None:
        self.conn: Any = None
        self.fired = False
        self.done = False


class _Watchdog:
    """Shuts down the socket of a request still running at its deadline (see "Deadline").

    One daemon thread, started on first use, waits on a heap of armed watches (by real
    ``time.monotonic``, whatever clock the Fetcher was given). It is woken only for a watch
    that ends more than :data:`_WATCH_LATE_S` before it would wake anyway, so a deadline may be
    acted on that much late. Disarmed watches are dropped lazily when they reach the top of the
    heap, or all at once when they outnumber the armed ones (else a crawl would keep two per
    page of the last ``total_timeout`` seconds).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._armed = 0
        self._wake_at = math.inf  # when the thread wakes by itself (inf: not before notified)
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> _Watch:
        """A watch that fires ``seconds`` from now, unless disarmed first."""
        watch = _Watch()
        at = time.monotonic() + max(0.0, seconds)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="fetch-watchdog", daemon=True
                )
                self._thread.start()
            heap = self._heap
            self._armed += 1
            if len(heap) >= 2 * self._armed + _WATCH_SLACK:
                heap[:] = [entry for entry in heap if not entry[2].done]
                heapq.heapify(heap)
            heapq.heappush(heap, (at, next(self._order), watch))
            if at < self._wake_at - _WATCH_LATE_S:
                self._cond.notify()
        return watch

    def attach(self, watch: _Watch, conn: Any) -> None:
        """The connection ``watch`` guards; shut at once if the watch already fired."""
        with self._cond:
            if watch.done:
                return
            watch.conn = conn
            if watch.fired:
                _shut(conn)

    def disarm(self, watch: _Watch) -> bool:
        """Stop watching; True if the deadline had already fired (the socket was shut)."""
        with self._cond:
            if not watch.done:
                watch.done = True
                self._armed -= 1
            watch.conn = None
            return watch.fired

    def close(self) -> None:
        with self._cond:
            thread, self._thread = self._thread, None
            for _, _, watch in self._heap:
                watch.done = True
            self._heap.clear()
            self._armed = 0
            self._wake_at = math.inf
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _run(self) -> None:
        me = threading.current_thread()
        with self._cond:
            while self._thread is me:
                heap = self._heap
                while heap and heap[0][2].done:
                    heapq.heappop(heap)
                if not heap:
                    self._wake_at = math.inf
                    self._cond.wait()
                    continue
                at = heap[0][0]
                delay = at - time.monotonic()
                if delay > 0:
                    self._wake_at = at
                    self._cond.wait(delay)
                    continue
                watch = heapq.heappop(heap)[2]
                watch.fired = True
                if watch.conn is not None:
                    _shut(watch.conn)


def _shut(conn: Any) -> None:
    """Wake a thread blocked reading ``conn``: shut its socket down (the owner closes it)."""
    sock = getattr(conn, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def mask_userinfo(text: str) -> str:
    """Replace the ``user:password@`` of every URL in ``text`` with ``***@``."""
    return _USERINFO.sub(r"\1***@", text) if "@" in text else text


def drop_userinfo(url: str) -> str:
    """``url`` without the ``user:password@`` of its authority.

    Applied to every URL right before it is requested and to every redirect target, whatever
    the caller passed: requests would turn URL userinfo into an ``Authorization: Basic``
    header, and a server's ``Location`` must never make us send (or store) credentials.
    """
    return _AUTHORITY_USERINFO.sub(r"\1", url) if "@" in url else url


def parse_retry_after(value: str, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delay-seconds or an HTTP date; None if invalid.

    A date in the past gives 0. Fractional seconds are accepted although RFC 9110 says integer.
    """
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds else None  # rejects NaN
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class _ProxyRules:
    """The proxy environment read once (``urllib.request.getproxies``), applied per URL.

    ``no_proxy`` follows curl/requests: comma-separated hosts (a leading ``.`` or ``*.`` is
    ignored, and each entry matches the host and its subdomains), ``host:port`` entries, IP
    addresses and CIDR networks, and ``*`` for everything.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.proxies = {k: v for k, v in environ.items() if k in ("http", "https", "all") and v}
        entries = [e.strip().lower() for e in environ.get("no", "").split(",") if e.strip()]
        self.bypass_all = "*" in entries
        self.names = tuple(e.removeprefix("*").lstrip(".") for e in entries if e != "*")
        self.networks = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue

    def for_url(self, url: str) -> dict[str, str] | None:
        if not self.proxies or self.bypass_all:
            return None
        if not self.names:
            return self.proxies
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port
        except ValueError:
            port = None
        with_port = f"{host}:{port}" if port else host
        for name in self.names:
            for candidate in (host, with_port):
                if candidate == name or candidate.endswith("." + name):
                    return None
        if self.networks:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                return self.proxies
            if any(address in net for net in self.networks):
                return None
        return self.proxies


def _dns_is_temporary(exc: BaseException) -> bool:
    """True when a ``socket.gaierror`` in the chain is ``EAI_AGAIN`` (try again later)."""
    for current in errors.chain(exc):
        if isinstance(current, socket.gaierror):
            return current.errno == socket.EAI_AGAIN
    return False


def _classify(exc: BaseException) -> tuple[ErrorKind, bool]:
    """The kind of a failed attempt, and whether it is worth another attempt."""
    kind = errors.classify(exc)
    if kind is ErrorKind.CONTENT:
        # A transfer cut short (reset, IncompleteRead) is transient; a body that will not
        # decode will not decode next time either.
        broken = isinstance(
            exc, urllib3.exceptions.ProtocolError | requests.exceptions.ChunkedEncodingError
        )
        return kind, broken
    if kind is ErrorKind.DNS:
        return kind, _dns_is_temporary(exc)
    return kind, kind in (ErrorKind.CONNECT, ErrorKind.TIMEOUT)


def _media_type(header: str | None) -> tuple[str | None, str | None]:
    """``Content-Type`` → (bare lowercased media type, charset parameter)."""
    if not header:
        return None, None
    media, _, params = header.partition(";")
    charset = None
    if params:
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset":
                charset = value.strip().strip("\"'") or None
                break
    return media.strip().lower() or None, charset


def _header_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


class Fetcher:
    """Fetches one URL at a time per calling thread; safe to share between threads."""

    def __init__(
        self,
        settings: FetchSettings,
        user_agent: str,
        *,
        sleep: Callable[[float], object] = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
        now: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        pool_hosts: int = 32,
        body_types: frozenset[str] | None = HTML_TYPES,
        before_request: Callable[[str], Callable[[], object] | None] | None = None,
        allow_private: Callable[[str], bool] | None = None,
        on_retry_after: Callable[[str, float], object] | None = None,
    ) -> None:
        """``pool_hosts`` is how many hosts each thread keeps a keep-alive connection to.
        ``body_types``: the media types whose body is downloaded (``None``: any).
        ``before_request(url)`` runs right before every HTTP request (attempts and hops).
        ``allow_private(host)``: when given, refuse non-public peers unless it returns True.
        ``on_retry_after(url, seconds)``: called when a ``Retry-After`` is about to be honoured,
        so the engine can hold every request to that host, not only this URL's retry.
        See the module docstring for each.
        """
        httpheaders.install()  # same headers, parsed without the email package (its docstring)
        self._settings = settings
        self._body_types = body_types
        self._before_request = before_request
        self._on_retry_after = on_retry_after
        # Always the guarded classes: they also tell the deadline watchdog their connection.
        self._pool_classes = _verbatim_pools(
            guarded_pool_classes(allow_private or (lambda host: True))
        )
        self._watchdog = _Watchdog()
        self._sleep = sleep
        self._should_stop = should_stop
        self._now = now
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._pool_hosts = pool_hosts
        self._headers = {
            "User-Agent": user_agent,
            "Accept": ACCEPT,
            "Accept-Encoding": ACCEPT_ENCODING,
        }
        # trust_env is off (its per-call lookups cost ~40% of requests' overhead), so what it
        # would read from the environment is read here, once: proxies and the CA bundle.
        self._verify: str | bool = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        self._prepared_headers = requests.structures.CaseInsensitiveDict(self._headers)
        self._proxy = _ProxyRules(urllib.request.getproxies())
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._retrying = tenacity.Retrying(
            sleep=self._nap,
            stop=self._stop,
            wait=self._wait,
            retry=tenacity.retry_if_result(lambda attempt: attempt.retryable),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )

    # -- sessions ----------------------------------------------------------------------------

    def _adapter(self) -> requests.adapters.HTTPAdapter:
        """This thread's connection pool, inside a Session created on the thread's first fetch."""
        adapter: requests.adapters.HTTPAdapter | None = getattr(self._local, "adapter", None)
        if adapter is None:
            session = requests.Session()
            session.trust_env = False
            session.headers = requests.structures.CaseInsensitiveDict(self._headers)
            session.cookies = _NoCookies()
            adapter = GuardedAdapter(
                self._pool_classes,
                pool_connections=self._pool_hosts,
                pool_maxsize=1,
                max_retries=0,
            )
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.adapter = adapter
            with self._lock:
                self._sessions.append(session)
        return adapter

    def close(self) -> None:
        """Close every thread's session (and its connections)."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()
        self._watchdog.close()

    # -- retry policy (tenacity strategies) --------------------------------------------------

    def _nap(self, seconds: float) -> None:
        self._sleep(seconds)

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        return state.attempt_number > self._settings.retries or self._should_stop()

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """``Retry-After`` when the server sent one, else ``min(max, base·2ⁿ⁻¹)·U(0.5, 1)``."""
        if state.outcome is not None and not state.outcome.failed:
            attempt: _Attempt = state.outcome.result()
            if attempt.result is not None and attempt.result.retry_after_s is not None:
                if self._on_retry_after is not None:  # hold the whole host, not just this URL
                    self._on_retry_after(attempt.result.final_url, attempt.result.retry_after_s)
                return attempt.result.retry_after_s
        s = self._settings
        ceiling = min(s.backoff_max_s, s.backoff_base_s * 2.0 ** (state.attempt_number - 1))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    # -- fetch -------------------------------------------------------------------------------

    def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        sink: IO[bytes] | None = None,
        truncate_body: bool = False,
        follow_redirect: Callable[[str], bool] | None = None,
    ) -> FetchOutcome:
        """Fetch ``url`` with retries; never raises for a per-URL failure.

        With ``sink``, a downloaded body is written there instead of ``result.body``. With
        ``truncate_body``, a body over ``max_body_bytes`` is cut to it instead of failing.
        ``follow_redirect(target)`` decides each hop before it is requested (see "Redirects"
        in the module docstring); without it every valid hop is followed.
        """
        headers: dict[str, str] | None = None
        if etag or last_modified:
            headers = {}
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
        attempts: list[_Attempt] = []
        sink_start = sink.tell() if sink is not None else 0

        def attempt() -> _Attempt:
            if attempts and self._should_stop():  # shutdown cut the backoff short
                return replace(attempts[-1], retryable=False)
            if sink is not None:
                sink.seek(sink_start)
                sink.truncate()
            done = self._attempt(
                url, headers, len(attempts) + 1, sink, truncate_body, follow_redirect
            )
            if sink is not None and done.kind is not None:
                sink.seek(sink_start)
                sink.truncate()
            attempts.append(done)
            if done.retryable:
                logger.debug("attempt %d failed (%s), may retry", done.number, done.message)
            return done

        last: _Attempt = self._retrying(attempt)
        records = [
            ErrorRecord(a.kind, a.message, a.number, False, a.at or self._now(), a.status_code)
            for a in attempts
            if a.kind is not None
        ]
        if last.kind is not None and records:
            records[-1] = replace(records[-1], final=True)
        return FetchOutcome(last.result, tuple(records))

    def _attempt(
        self,
        url: str,
        headers: dict[str, str] | None,
        number: int,
        sink: IO[bytes] | None = None,
        truncate: bool = False,
        follow: Callable[[str], bool] | None = None,
    ) -> _Attempt:
        """One attempt: every redirect hop and the body, under one deadline. Never raises."""
        start = self._monotonic()
        deadline = start + self._settings.total_timeout
        chain: list[str] = []
        seen: set[str] | None = None
        current = url
        response: requests.Response | None = None
        hop: requests.Response | None = None  # the 3xx that led to ``current``
        result: FetchResult | None = None
        try:
            adapter = self._adapter()
            while True:
                release: Callable[[], object] | None = None
                if self._before_request is not None:
                    gate = self._monotonic()
                    release = self._before_request(current)
                    waited = self._monotonic() - gate  # the gate's wait is not the server's
                    start += waited
                    deadline += waited
                sent_hook.fn = release
                try:
                    response = self._send(adapter, current, headers, deadline)
                except PrivateAddressError as exc:
                    if hop is not None:  # refused on a redirect hop: a redirect failure
                        exc.kind = ErrorKind.REDIRECT
                        exc.status_code = hop.status_code
                        result = self._result(url, chain[-1], hop, chain[:-1], start, None)
                    raise
                finally:
                    # Normally the connection fired it right after writing the request; if it
                    # never did (no connection, a proxy), the gate is released now.
                    sent_hook.fn = None
                    if release is not None:
                        release()
                location = response.headers.get("Location")
                if response.status_code not in REDIRECT_STATUSES or not location:
                    break
                self._discard(response)
                if len(chain) >= self._settings.max_redirects:
                    result = self._result(url, current, response, chain, start, None)
                    raise RedirectError(
                        f"more than {self._settings.max_redirects} redirects",
                        status_code=response.status_code,
                    )
                if seen is None:
                    seen = {_normalize(url)}
                target = self._redirect_target(current, location, seen, chain)
                if isinstance(target, RedirectError):
                    result = self._result(url, current, response, chain, start, None)
                    target.status_code = response.status_code
                    raise target
                if follow is not None and not follow(target):  # checked before it is requested
                    result = self._result(url, current, response, chain, start, None)
                    return _Attempt(number, replace(result, location=target))
                chain.append(current)
                current = target
                hop, response = response, None
            return self._finish(
                url, current, response, chain, start, deadline, number, sink, truncate
            )
        except Exception as exc:
            if response is not None:
                response.close()
            kind, retryable = _classify(exc)
            message = mask_userinfo(errors.describe(exc))
            status = exc.status_code if isinstance(exc, errors.FetchError) else None
            return _Attempt(number, result, kind, message, self._now(), status, retryable)

    def _send(
        self,
        adapter: requests.adapters.HTTPAdapter,
        url: str,
        headers: dict[str, str] | None,
        deadline: float,
    ) -> requests.Response:
        """One GET, straight to this thread's adapter.

        ``Session.request`` would merge settings, environment, cookies and hooks on every call
        (about a fifth of the CPU of a small fetch); everything it would merge is fixed here, so
        the request is prepared by hand: URL (IDNA, quoting), the default headers plus the
        conditional ones. Userinfo in the URL is dropped, never sent as Basic auth.
        """
        remaining = deadline - self._monotonic()
        if remaining <= 0:
            raise DeadlineError(f"total deadline of {self._settings.total_timeout:g}s passed")
        if not url[:8].lower().startswith(("http://", "https://")):
            raise errors.FetchError(f"not an http(s) URL: {mask_userinfo(url)[:200]}")
        request = requests.PreparedRequest()
        request.method = "GET"
        exact = drop_userinfo(url)  # never credentials from a URL
        request.prepare_url(exact, None)  # validates (InvalidURL...) and IDNA-encodes
        if exact.isascii() and exact.isprintable() and " " not in exact:
            request.url = exact  # sent as it is, not re-escaped (see "What is requested")
        if headers:
            request.headers = self._prepared_headers.copy()
            request.headers.update(headers)
        else:  # shared by every plain GET: nothing below the adapter writes to a request's headers
            request.headers = self._prepared_headers
        s = self._settings
        watchdog = self._watchdog
        watch = watchdog.arm(remaining)
        conn_hook.fn = partial(watchdog.attach, watch)
        response: requests.Response | None = None
        try:
            response = adapter.send(
                request,
                stream=True,
                timeout=(min(s.connect_timeout_s, remaining), min(s.read_timeout_s, remaining)),
                verify=self._verify,
                cert=None,
                proxies=self._proxy.for_url(url) or {},
            )
        except Exception as exc:
            if watchdog.disarm(watch):
                raise self._deadline_error(None) from exc
            raise
        finally:
            conn_hook.fn = None
        if watchdog.disarm(watch):  # headers cut short by the watchdog may still parse
            response.close()
            raise self._deadline_error(None)
        return response

    def _redirect_target(
        self, current: str, location: str, seen: set[str], chain: list[str]
    ) -> str | RedirectError:
        """Resolve and check one hop; a RedirectError (returned, not raised) refuses it."""
        try:
            target = ada_url.join_url(current, location.strip())
        except ValueError:
            return RedirectError(f"invalid redirect Location: {mask_userinfo(location)[:200]}")
        target = drop_userinfo(target.partition("#")[0])
        scheme = target.partition(":")[0].lower()
        if scheme not in ("http", "https"):
            return RedirectError(f"redirect to a {scheme}: URL refused")
        if target in seen:
            hops = " -> ".join([*chain, current, target])
            return RedirectError(mask_userinfo(f"redirect loop: {hops}")[:500])
        seen.add(target)
        return target

    def _finish(
        self,
        url: str,
        final_url: str,
        response: requests.Response,
        chain: list[str],
        start: float,
        deadline: float,
        number: int,
        sink: IO[bytes] | None = None,
        truncate: bool = False,
    ) -> _Attempt:
        """The last hop's response → its result, reading the body when it is wanted."""
        status = response.status_code
        media, _ = _media_type(response.headers.get("Content-Type"))
        types = self._body_types
        if 200 <= status < 300 and (media is None or types is None or media in types):
            body, size = self._read_body(response, deadline, sink, truncate)
            result = self._result(url, final_url, response, chain, start, body, size)
            if sink is not None:
                result = replace(result, body=None)
            if body is None:
                cap = self._settings.max_body_bytes
                message = f"TooLargeError: body over max_body_bytes ({cap} bytes decoded)"
                return _Attempt(number, result, ErrorKind.TOO_LARGE, message, self._now(), status)
            return _Attempt(number, result)
        self._discard(response)
        result = self._result(url, final_url, response, chain, start, None)
        if status not in RETRY_STATUSES:
            return _Attempt(number, result)
        message = errors.http_status_message(status, response.reason)
        retry_after = result.retry_after_s
        retryable = True
        if retry_after is not None and retry_after > self._settings.max_retry_after_s:
            retryable = False
            message += (
                f"; Retry-After {retry_after:g}s is over max_retry_after_s"
                f" ({self._settings.max_retry_after_s:g}s), not retried"
            )
        return _Attempt(
            number, result, ErrorKind.HTTP_STATUS, message, self._now(), status, retryable
        )

    def _read_body(
        self,
        response: requests.Response,
        deadline: float,
        sink: IO[bytes] | None = None,
        truncate: bool = False,
    ) -> tuple[bytes | None, int]:
        """(decoded body, bytes read), or (None, bytes read) when it passed the size cap.

        The cap and the deadline are checked after every chunk of at most 64 KiB decoded. With a
        ``sink`` the chunks are written there and the body returned is ``b""``. With
        ``truncate`` a body over the cap is cut to it, and the rest is not read.
        """
        raw = response.raw
        cap = self._settings.max_body_bytes
        read_timeout = self._settings.read_timeout_s
        chunks: list[bytes] = []
        size = 0
        clamped = False
        watch = self._watchdog.arm(deadline - self._monotonic())
        self._watchdog.attach(watch, raw.connection)

        def keep(chunk: bytes) -> None:
            if sink is not None:
                sink.write(chunk)
            else:
                chunks.append(chunk)

        try:
            while True:
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    raise self._deadline_error(size)
                if (
                    remaining < read_timeout
                ):  # near the deadline, a silent socket must not outlast it
                    sock = getattr(raw.connection, "sock", None)
                    if sock is not None:
                        sock.settimeout(remaining)
                        clamped = True
                try:
                    chunk = raw.read1(_CHUNK, decode_content=True)
                except urllib3.exceptions.ReadTimeoutError as exc:
                    if watch.fired or (clamped and deadline - self._monotonic() < 0.05):
                        raise self._deadline_error(size) from exc
                    raise
                except Exception as exc:
                    if watch.fired:  # the watchdog shut the socket: a deadline, not a reset
                        raise self._deadline_error(size) from exc
                    raise
                if not chunk:
                    if self._watchdog.disarm(watch):  # EOF because the watchdog shut it
                        raise self._deadline_error(size)
                    return b"".join(chunks), size
                size += len(chunk)
                if size > cap:
                    if not truncate:
                        return None, size
                    keep(chunk[: len(chunk) - (size - cap)])
                    return b"".join(chunks), size
                keep(chunk)
        finally:
            self._watchdog.disarm(watch)
            response.close()

    def _deadline_error(self, size: int | None) -> DeadlineError:
        """``size`` bytes of body read; None: still waiting for the status line and headers."""
        where = "before the response headers" if size is None else f"after {size} bytes of body"
        return DeadlineError(f"total deadline of {self._settings.total_timeout:g}s passed {where}")

    def _discard(self, response: requests.Response) -> None:
        """Drop a body we won't use; drain a small one first so the connection can be reused."""
        length = _header_int(response.headers.get("Content-Length"))
        if length is not None and length <= _DRAIN_MAX:
            response.raw.drain_conn()
        response.close()

    def _result(
        self,
        url: str,
        final_url: str,
        response: requests.Response,
        chain: list[str],
        start: float,
        body: bytes | None,
        size: int | None = None,
    ) -> FetchResult:
        headers = response.headers
        media, charset = _media_type(headers.get("Content-Type"))
        fetched_at = self._now()
        retry_after = headers.get("Retry-After")
        status = response.status_code
        if size is None:
            size = len(body) if body is not None else _header_int(headers.get("Content-Length"))
        return FetchResult(
            url=url,
            final_url=final_url,
            status_code=status,
            fetched_at=fetched_at,
            elapsed_ms=int((self._monotonic() - start) * 1000),
            redirects=len(chain),
            content_type=media,
            charset=charset,
            content_length=size if status != 304 else None,
            body=body,
            etag=headers.get("ETag"),
            last_modified=headers.get("Last-Modified"),
            not_modified=status == 304,
            retry_after_s=parse_retry_after(retry_after, fetched_at) if retry_after else None,
            redirect_chain=tuple(chain),
            reason=response.reason,
            headers=_stored_headers(response),
        )


def _stored_headers(response: requests.Response) -> tuple[tuple[str, str], ...]:
    """The response headers as received, with credentials in ``Location`` masked (kept for
    WARC records: a server's ``user:password@`` must not end up in the database)."""
    if response.raw is None:
        return ()
    return tuple(
        (name, mask_userinfo(value) if name.lower() == "location" else value)
        for name, value in response.raw.headers.items()
    )


def _normalize(url: str) -> str:
    """The form redirect targets take (ada's href, no fragment), for loop detection."""
    try:
        return ada_url.URL(url).href.partition("#")[0]
    except ValueError:
        return url
