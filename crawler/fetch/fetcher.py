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

Decisions (what is downloaded, where the body goes and the size cap: :mod:`crawler.fetch.body`;
the deadline: :mod:`crawler.fetch.deadline`; proxies: :mod:`crawler.fetch.proxies`):

* **Before every request** -- each attempt and each redirect hop -- ``before_request(url)`` is
  called in the calling thread (the engine's per-host politeness gate; it may block briefly).
  It may return a *release* callable: the connection calls it right after the request's bytes
  are written (:data:`crawler.fetch.netguard.sent_hook`), or the fetcher calls it when the request
  failed before that; either way exactly once, so the gate measures real send times.
  Time spent in it counts neither against ``total_timeout`` nor in ``elapsed_ms``. An exception
  from it ends the attempt as a final ``other`` error.
* **Private networks**: see :mod:`crawler.fetch.netguard`.
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
* **What is requested** is the URL as given, byte for byte: see :mod:`crawler.fetch.verbatim`.
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

import logging
import os
import random
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import IO

import ada_url
import requests
import requests.adapters
import requests.cookies
import tenacity

from crawler import errors
from crawler.clock import utc_now
from crawler.config import FetchSettings
from crawler.errors import DeadlineError, ErrorKind, RedirectError
from crawler.fetch.body import ACCEPT_ENCODING, deadline_error, discard, read_body
from crawler.fetch.deadline import Watchdog
from crawler.fetch.netguard import (
    GuardedAdapter,
    PrivateAddressError,
    conn_hook,
    guarded_pool_classes,
    sent_hook,
)
from crawler.fetch.proxies import ProxyRules
from crawler.fetch.response import (
    FetchOutcome,
    NoCookies,
    _Attempt,
    classify_attempt,
    conditional_headers,
    error_records,
    fetch_result,
    media_type,
    normalize_target,
)
from crawler.fetch.verbatim import verbatim_pools
from crawler.records import HTML_TYPES, FetchResult
from crawler.urls import drop_userinfo, mask_credentials

__all__ = ["Fetcher", "PrivateAddressError"]

logger = logging.getLogger(__name__)

ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class Fetcher:
    """Fetches one URL at a time per calling thread; safe to share between threads."""

    def __init__(
        self,
        settings: FetchSettings,
        user_agent: str,
        *,
        sleep: Callable[[float], object] = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
        now: Callable[[], datetime] = utc_now,
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
        self._settings = settings
        self._body_types = body_types
        self._before_request = before_request
        self._on_retry_after = on_retry_after
        # Always the guarded classes: they also tell the deadline watchdog their connection.
        self._pool_classes = verbatim_pools(
            guarded_pool_classes(allow_private or (lambda host: True))
        )
        self._watchdog = Watchdog()
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
        self._proxy = ProxyRules(urllib.request.getproxies())
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

    @property
    def sessions(self) -> tuple[requests.Session, ...]:
        """The per-thread sessions made so far (none after :meth:`close`)."""
        return tuple(self._sessions)

    @property
    def verify(self) -> str | bool:
        """The CA bundle read from the environment at construction (True: certifi's)."""
        return self._verify

    def proxies_for(self, url: str) -> dict[str, str] | None:
        """The proxies a request to ``url`` goes through (None: direct)."""
        return self._proxy.for_url(url)

    def _adapter(self) -> requests.adapters.HTTPAdapter:
        """This thread's connection pool, inside a Session created on the thread's first fetch."""
        adapter: requests.adapters.HTTPAdapter | None = getattr(self._local, "adapter", None)
        if adapter is None:
            session = requests.Session()
            session.trust_env = False
            session.headers = requests.structures.CaseInsensitiveDict(self._headers)
            session.cookies = NoCookies()
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
        headers = conditional_headers(etag, last_modified)
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
        return FetchOutcome(last.result, error_records(attempts, last, self._now))

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
                discard(response)
                if len(chain) >= self._settings.max_redirects:
                    result = self._result(url, current, response, chain, start, None)
                    raise RedirectError(
                        f"more than {self._settings.max_redirects} redirects",
                        status_code=response.status_code,
                    )
                if seen is None:
                    seen = {normalize_target(url)}
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
            kind, retryable = classify_attempt(exc)
            message = mask_credentials(errors.describe(exc))
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
            raise errors.FetchError(f"not an http(s) URL: {mask_credentials(url)[:200]}")
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
                raise deadline_error(self._settings.total_timeout, None) from exc
            raise
        finally:
            conn_hook.fn = None
        if watchdog.disarm(watch):  # headers cut short by the watchdog may still parse
            response.close()
            raise deadline_error(self._settings.total_timeout, None)
        return response

    def _redirect_target(
        self, current: str, location: str, seen: set[str], chain: list[str]
    ) -> str | RedirectError:
        """Resolve and check one hop; a RedirectError (returned, not raised) refuses it."""
        try:
            target = ada_url.join_url(current, location.strip())
        except ValueError:
            return RedirectError(f"invalid redirect Location: {mask_credentials(location)[:200]}")
        target = drop_userinfo(target.partition("#")[0])
        scheme = target.partition(":")[0].lower()
        if scheme not in ("http", "https"):
            return RedirectError(f"redirect to a {scheme}: URL refused")
        if target in seen:
            hops = " -> ".join([*chain, current, target])
            return RedirectError(mask_credentials(f"redirect loop: {hops}")[:500])
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
        media, _ = media_type(response.headers.get("Content-Type"))
        types = self._body_types
        if 200 <= status < 300 and (media is None or types is None or media in types):
            body, size = read_body(
                response,
                deadline,
                settings=self._settings,
                watchdog=self._watchdog,
                monotonic=self._monotonic,
                sink=sink,
                truncate=truncate,
            )
            result = self._result(url, final_url, response, chain, start, body, size)
            if sink is not None:
                result = replace(result, body=None)
            if body is None:
                cap = self._settings.max_body_bytes
                message = f"TooLargeError: body over max_body_bytes ({cap} bytes decoded)"
                return _Attempt(number, result, ErrorKind.TOO_LARGE, message, self._now(), status)
            return _Attempt(number, result)
        discard(response)
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
        fetched_at = self._now()
        elapsed_ms = int((self._monotonic() - start) * 1000)
        return fetch_result(url, final_url, response, chain, fetched_at, elapsed_ms, body, size)
