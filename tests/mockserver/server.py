"""A real HTTP server on loopback addresses for the crawler's integration tests.

One `SiteServer` serves one `Site` (a routing table of behaviours) on one or more loopback
addresses that share ONE port, so ``127.0.0.2:PORT`` and ``127.0.0.3:PORT`` are two "hosts" to
the crawler. Every request is logged as a frozen `RequestRecord`, and the server counts how many
requests it handles at once, overall and per host, so politeness limits can be asserted.

Behaviours are small callables, one class each (as in Scrapy's ``tests/mockserver``): they get a
`RequestContext` and write the response through it (`send` for a whole body, `start` + `write`
for a stream). A hostile behaviour is one more small class; it may use ``ctx.handler`` (the
``BaseHTTPRequestHandler``) and ``ctx.handler.connection`` (the raw socket), e.g.::

    class ResetMidBody:
        def __call__(self, ctx: RequestContext) -> None:
            ctx.start(200, length=1000)
            ctx.write(b"x" * 10)
            ctx.handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                              struct.pack("ii", 1, 0))
            ctx.close_connection()  # the close after the handler returns sends a RST

`generate_site` builds a deterministic multi-host site of linked HTML pages and knows the exact
set of URLs and links a correct crawler finds; ``GeneratedSite.add_linked`` adds extra
behaviours (404s, redirects, oversized pages, ...) and links to them.

The ``site_server`` pytest fixture (a factory) lives here too; load it with
``pytest_plugins = ["tests.siteserver"]``.

Must not: bind anything but the given (loopback) addresses, print to stderr, or outlive
`SiteServer.stop` (threads are daemons, and stop closes every socket and joins every thread).
Pure stdlib apart from the pytest fixture.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import html
import random
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urldefrag, urljoin

import pytest

__all__ = [
    "Behaviour",
    "Binary",
    "Drip",
    "ETagPage",
    "FailThenSucceed",
    "GeneratedPage",
    "GeneratedSite",
    "Gzip",
    "NotFound",
    "Oversized",
    "Page",
    "Redirect",
    "RequestContext",
    "RequestRecord",
    "Site",
    "SiteServer",
    "SiteServerFactory",
    "Slow",
    "generate_site",
    "loopback_hosts",
    "site_server",
]

CHUNK_BYTES = 64 * 1024
"""Streaming behaviours write at most this many bytes per ``write``."""

HTML = "text/html; charset=utf-8"


# --------------------------------------------------------------------------- records, context


@dataclass(frozen=True)
class RequestRecord:
    """One request the server handled, appended to `SiteServer.log` when it finished."""

    host: str
    """The address the request arrived on (the socket's local address), e.g. ``127.0.0.3``."""
    path: str
    """The request target as sent, query included (``/p/1.html?a=b``)."""
    method: str
    headers: dict[str, str]
    """Request headers with names as the client sent them (a repeated header keeps the first)."""
    started: float
    """``time.monotonic()`` when the request line had been read."""
    finished: float
    """``time.monotonic()`` when the response had been written (or the client had gone).
    The client may already have read it and sent its next request by then: to judge "B was
    sent after A's response", compare B's ``started`` with A's ``responded``."""
    status: int
    """The status sent; 0 if none was (a hostile behaviour writing raw bytes)."""
    bytes_sent: int = 0
    """Body bytes written through `RequestContext.write`/`send` (headers not counted)."""
    responded: float = 0.0
    """``time.monotonic()`` just before the first byte of the response was written; equal to
    ``finished`` if nothing was. No client can have read a byte of the response before it."""


class RequestContext:
    """What a behaviour sees of a request, and how it writes the response.

    ``hits`` counts requests for this (host, path) so far, this one included (1 on the first).
    ``base_url`` is ``http://HOST:PORT`` for the address the request arrived on.
    """

    def __init__(
        self,
        handler: _Handler,
        *,
        body: bytes,
        hits: int,
        stopping: threading.Event,
    ) -> None:
        self.handler = handler
        self.method: str = handler.command
        self.path: str = handler.path
        self.headers: Message = handler.headers
        """Case-insensitive: ``ctx.headers.get("if-none-match")``."""
        self.body = body
        self.host: str = handler.server.host
        self.port: int = handler.server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}"
        self.hits = hits
        self._stopping = stopping
        self.headers_sent = False

    @property
    def wants_body(self) -> bool:
        """False for HEAD: send the headers (with Content-Length) but no body."""
        return self.method != "HEAD"

    def start(
        self, status: int, headers: Mapping[str, str] | None = None, *, length: int | None
    ) -> None:
        """Send the status line and headers; ``length`` becomes ``Content-Length``.

        ``length=None`` sends no ``Content-Length``: the connection is then closed after the
        response (the body ends at EOF), except for 1xx/204/304, which have no body.
        """
        h = self.handler
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        if length is not None:
            h.send_header("Content-Length", str(length))
        elif not (status < 200 or status in (204, 304)):
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        self.headers_sent = True

    def write(self, data: bytes) -> bool:
        """Write body bytes now; False (and the connection is to close) if the client is gone."""
        if self.handler.responded is None:  # raw bytes with no status line (a hostile behaviour)
            self.handler.responded = time.monotonic()
        try:
            self.handler.wfile.write(data)
        except OSError:  # BrokenPipe, ConnectionReset, or our own shutdown on stop
            self.close_connection()
            return False
        self.handler.bytes_sent += len(data)
        return True

    def send(
        self,
        status: int,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        *,
        content_type: str | None = HTML,
    ) -> bool:
        """Send a whole response with ``Content-Length``; the body is skipped for HEAD."""
        data = body.encode() if isinstance(body, str) else body
        all_headers = {"Content-Type": content_type} if content_type else {}
        all_headers.update(headers or {})
        self.start(status, all_headers, length=len(data))
        return not (data and self.wants_body) or self.write(data)

    def sleep(self, seconds: float) -> bool:
        """Sleep, cut short when the server stops; True if the full time passed."""
        return not self._stopping.wait(seconds)

    def close_connection(self) -> None:
        """Close the connection after this response instead of keeping it alive."""
        self.handler.close_connection = True


class Behaviour(Protocol):
    """Anything that answers a request: a callable taking a `RequestContext`."""

    def __call__(self, ctx: RequestContext, /) -> None: ...


# --------------------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class Page:
    """A fixed body with ``Content-Length``."""

    body: bytes | str
    content_type: str = HTML
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, ctx: RequestContext) -> None:
        ctx.send(self.status, self.body, self.headers, content_type=self.content_type)


@dataclass(frozen=True)
class NotFound:
    """A 404 HTML page; also what an unknown path gets."""

    def __call__(self, ctx: RequestContext) -> None:
        title = "404 Not Found"
        body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        ctx.send(404, body)


@dataclass(frozen=True)
class Slow:
    """Sleep ``delay_s`` (counted as in flight), then delegate to ``inner``."""

    delay_s: float
    inner: Behaviour

    def __call__(self, ctx: RequestContext) -> None:
        if ctx.sleep(self.delay_s):
            self.inner(ctx)
        else:
            ctx.send(503, "server stopping")


@dataclass(frozen=True)
class FailThenSucceed:
    """The first ``failures`` hits per (host, path) get ``status`` (+ ``headers``, e.g.
    ``{"Retry-After": "1"}``); later hits go to ``inner``."""

    failures: int
    inner: Behaviour
    status: int = 500
    headers: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, ctx: RequestContext) -> None:
        if ctx.hits <= self.failures:
            ctx.send(self.status, f"failure {ctx.hits} of {self.failures}", self.headers)
        else:
            self.inner(ctx)


@dataclass(frozen=True)
class Redirect:
    """A redirect to ``location`` (relative or absolute, sent as given)."""

    location: str
    status: int = 301

    def __call__(self, ctx: RequestContext) -> None:
        # No <a> in the body, so a crawler that parses 3xx bodies does not invent links.
        ctx.send(self.status, "<html><body><p>Moved</p></body></html>", {"Location": self.location})


def _stream(ctx: RequestContext, prefix: bytes, filler: bytes, size: int) -> None:
    """Write ``size`` bytes: ``prefix`` then ``filler`` repeated, in chunks, never all at once."""
    chunk = (filler * (CHUNK_BYTES // len(filler) + 1))[:CHUNK_BYTES]
    remaining = size
    head = prefix[:size]
    if head and not ctx.write(head):
        return
    remaining -= len(head)
    while remaining > 0:
        piece = chunk[: min(remaining, CHUNK_BYTES)]
        if not ctx.write(piece):
            return
        remaining -= len(piece)


@dataclass(frozen=True)
class Oversized:
    """An HTML(-ish) body of exactly ``size_bytes``, streamed in 64 KiB chunks."""

    size_bytes: int
    content_type: str = "text/html"

    def __call__(self, ctx: RequestContext) -> None:
        ctx.start(200, {"Content-Type": self.content_type}, length=self.size_bytes)
        if ctx.wants_body:
            prefix = b"<!doctype html><html><head><title>big</title></head><body>\n"
            _stream(
                ctx, prefix, b"<p>lorem ipsum dolor sit amet, consectetur</p>\n", self.size_bytes
            )


_MAGIC = {
    "pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    "zip": b"PK\x03\x04",
    "png": b"\x89PNG\r\n\x1a\n",
}


@dataclass(frozen=True)
class Binary:
    """``size_bytes`` of non-text bytes, starting with a magic number when the type has one
    (pdf, zip, png)."""

    size_bytes: int
    content_type: str = "application/octet-stream"

    def __call__(self, ctx: RequestContext) -> None:
        ctx.start(200, {"Content-Type": self.content_type}, length=self.size_bytes)
        if ctx.wants_body:
            magic = next((m for k, m in _MAGIC.items() if k in self.content_type), b"")
            _stream(ctx, magic, bytes(range(256)), self.size_bytes)


@dataclass(frozen=True)
class Drip:
    """``body`` one byte at a time, ``interval_s`` apart (full ``Content-Length`` up front).

    Stops as soon as a write fails (the client went away) or the server stops.
    """

    body: bytes
    interval_s: float
    content_type: str = HTML

    def __call__(self, ctx: RequestContext) -> None:
        ctx.start(200, {"Content-Type": self.content_type}, length=len(self.body))
        if not ctx.wants_body:
            return
        for i in range(len(self.body)):
            if (i and not ctx.sleep(self.interval_s)) or not ctx.write(self.body[i : i + 1]):
                ctx.close_connection()
                return


def _http_date(value: str | datetime) -> str:
    return (
        format_datetime(value.astimezone(UTC), usegmt=True)
        if isinstance(value, datetime)
        else value
    )


@dataclass(frozen=True)
class ETagPage:
    """A page with ``ETag`` (and ``Last-Modified``): 304 without a body when the request's
    ``If-None-Match`` matches (``*``, weak or strong), or, with no ``If-None-Match``, when
    ``If-Modified-Since`` is at or after ``last_modified``."""

    body: bytes | str
    etag: str
    """Quoted if given bare: ``v1`` is sent as ``"v1"``."""
    last_modified: str | datetime | None = None
    content_type: str = HTML

    def __call__(self, ctx: RequestContext) -> None:
        etag = self.etag if self.etag.startswith(('"', 'W/"')) else f'"{self.etag}"'
        headers = {"ETag": etag}
        if self.last_modified is not None:
            headers["Last-Modified"] = _http_date(self.last_modified)
        if self._not_modified(ctx.headers, etag, headers.get("Last-Modified")):
            ctx.start(304, headers, length=None)
        else:
            ctx.send(200, self.body, headers, content_type=self.content_type)

    @staticmethod
    def _not_modified(req: Message, etag: str, last_modified: str | None) -> bool:
        inm = req.get("If-None-Match")
        if inm is not None:
            tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
            return "*" in tags or etag.removeprefix("W/") in tags
        ims = req.get("If-Modified-Since")
        if ims is None or last_modified is None:
            return False
        try:
            return parsedate_to_datetime(ims) >= parsedate_to_datetime(last_modified)
        except (TypeError, ValueError):
            return False


@dataclass(frozen=True)
class Gzip:
    """``body`` sent with ``Content-Encoding: gzip`` (deterministic: mtime 0)."""

    body: bytes | str
    content_type: str = HTML
    status: int = 200

    def __call__(self, ctx: RequestContext) -> None:
        raw = self.body.encode() if isinstance(self.body, str) else self.body
        data = gzip.compress(raw, mtime=0)
        headers = {"Content-Encoding": "gzip"}
        ctx.send(self.status, data, headers, content_type=self.content_type)


# --------------------------------------------------------------------------- site


class Site:
    """A routing table: (arrival address, path with query) -> behaviour.

    A route added with ``host=None`` answers on every address; a host-specific route wins.
    Unknown paths get `NotFound`. Routes may be added while the server runs.
    """

    def __init__(self) -> None:
        self._routes: dict[tuple[str | None, str], Behaviour] = {}
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def add(self, path: str, behaviour: Behaviour, host: str | None = None) -> None:
        """Serve ``behaviour`` at ``path`` (``/a?b=c``) on ``host`` (None: on every host)."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        with self._lock:
            self._routes[(host, path)] = behaviour

    def lookup(self, host: str, path: str) -> Behaviour | None:
        """The behaviour for a request that arrived on ``host`` for ``path``, if any."""
        with self._lock:
            found = self._routes.get((host, path))
            return found if found is not None else self._routes.get((None, path))

    def paths(self, host: str) -> set[str]:
        """Paths served on ``host`` (its own routes and the every-host ones)."""
        with self._lock:
            return {p for h, p in self._routes if h in (host, None)}

    @property
    def hosts_seen(self) -> frozenset[str]:
        """Addresses that have received at least one request."""
        with self._lock:
            return frozenset(self._seen)

    def _saw(self, host: str) -> None:
        with self._lock:
            self._seen.add(host)


# --------------------------------------------------------------------------- server


_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; 35 before Python names it


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive; counts a request from its request line until its response is out."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # Drip's one-byte writes go out at once
    server: _HostServer

    rbufsize = 0  # unbuffered: no request of a pipelining client hides in a buffer (_arrival)
    started: float | None = None
    arrived: float | None = None
    responded: float | None = None
    status = 0
    bytes_sent = 0

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr logging
        pass

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):  # the kernel stamps each packet as it arrives
            self.connection.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)

    def _arrival(self) -> float | None:
        """When the next request's first bytes reached this machine, in ``time.monotonic()``
        terms, from the kernel's receive timestamp: a start time that does not depend on when
        this thread got the GIL (politeness tests judge gaps of a few milliseconds by it).
        ``rfile`` is unbuffered, so the next request's bytes are still in the socket."""
        try:
            _data, ancillary, _flags, _addr = self.connection.recvmsg(
                1, socket.CMSG_SPACE(16), socket.MSG_PEEK
            )
        except OSError:
            return None
        mono, real = time.monotonic(), time.time()
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack("qq", payload[:16])
                return mono - max(0.0, real - (sec + nsec / 1e9))
        return None

    def handle_one_request(self) -> None:
        self.started, self.responded, self.status, self.bytes_sent = None, None, 0, 0
        self.arrived = self._arrival()
        try:
            super().handle_one_request()
        finally:
            if self.started is not None:
                self.server.owner._finish(self)

    def parse_request(self) -> bool:
        # Called right after the request line is read: the request is in flight from here,
        # and it started when its first bytes arrived.
        self.started = self.arrived if self.arrived is not None else time.monotonic()
        self.server.owner._enter(self.server.host)
        for stale in ("path", "headers"):  # from the previous request on this connection
            self.__dict__.pop(stale, None)
        return super().parse_request()

    def send_response(self, code: int, message: str | None = None) -> None:
        self.status = code
        if self.responded is None:  # headers are buffered until end_headers: nothing is out yet
            self.responded = time.monotonic()
        super().send_response(code, message)

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        owner = self.server.owner
        host = self.server.host
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        owner.site._saw(host)
        behaviour = owner.site.lookup(host, self.path) or NotFound()
        ctx = RequestContext(
            self, body=body, hits=owner._hit(host, self.path), stopping=owner._stopping
        )
        try:
            behaviour(ctx)
        except OSError:
            self.close_connection = True
        except Exception as exc:
            owner._errors.append(exc)
            if ctx.headers_sent:
                self.close_connection = True
            else:
                ctx.send(500, f"behaviour raised {exc!r}", content_type="text/plain")


class _HostServer(ThreadingHTTPServer):
    """One listening address; connection threads are tracked by the owning `SiteServer`."""

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, host: str, port: int, owner: SiteServer) -> None:
        self.host = host
        self.owner = owner
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup: skip it.
        socketserver.TCPServer.server_bind(self)
        # Timestamps on the listening socket: an accepted connection inherits them, so even a
        # request that arrived before its connection thread ran carries the kernel's time
        # (set only in setup(), such a request was timed when the thread got to it: late).
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.server_name = self.host
        self.server_port = self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"siteserver-conn-{self.host}",
            daemon=True,
        )
        self.owner._track(thread, request)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)  # closes the socket
        finally:
            self.owner._untrack(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exception()
        if exc is not None and not isinstance(exc, OSError):
            self.owner._errors.append(exc)


class SiteServer:
    """Serve ``site`` on every address of ``hosts``, all on one port.

    Use as a context manager, or `start`/`stop`. ``log``, ``max_concurrent`` and
    ``max_concurrent_per_host`` are snapshots, safe to read while requests run. ``errors`` holds
    exceptions raised by behaviours (a test may assert it is empty).
    """

    def __init__(self, site: Site | None = None, hosts: Sequence[str] = ("127.0.0.1",)) -> None:
        if not hosts:
            raise ValueError("at least one host is needed")
        self.site = site if site is not None else Site()
        self.hosts: tuple[str, ...] = tuple(hosts)
        self.port = 0
        self._servers: list[_HostServer] = []
        self._loops: list[threading.Thread] = []
        self._conns: dict[threading.Thread, socket.socket] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._hits: Counter[tuple[str, str]] = Counter()
        self._active: Counter[str] = Counter()
        self._max: Counter[str] = Counter()
        self._max_total = 0
        self._connections = 0
        self._errors: list[BaseException] = []

    # -- lifecycle

    def start(self, *, attempts: int = 20) -> SiteServer:
        """Bind every address on one free port (retrying if taken) and start serving."""
        if self._servers:
            raise RuntimeError("already started")
        self._stopping.clear()
        for _ in range(attempts):
            servers = self._bind_all()
            if servers:
                break
        else:
            raise RuntimeError(f"no port free on all of {self.hosts} in {attempts} attempts")
        self._servers = servers
        self.port = servers[0].server_address[1]
        for server in servers:
            loop = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"siteserver-loop-{server.host}",
                daemon=True,
            )
            loop.start()
            self._loops.append(loop)
        return self

    def _bind_all(self) -> list[_HostServer]:
        """Servers for all hosts on one port, or [] if a later host's port was taken."""
        servers = [_HostServer(self.hosts[0], 0, self)]
        port = servers[0].server_address[1]
        try:
            for host in self.hosts[1:]:
                servers.append(_HostServer(host, port, self))
        except OSError as exc:
            for server in servers:
                server.server_close()
            if exc.errno != errno.EADDRINUSE:
                raise
            return []
        return servers

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, cut sleeping behaviours short, close every connection, join threads."""
        self._stopping.set()
        for server in self._servers:
            server.shutdown()  # returns once its serve_forever loop has exited
        with self._lock:
            conns = dict(self._conns)
        for sock in conns.values():
            with contextlib.suppress(OSError):  # wakes a handler blocked reading or writing
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout_s
        for thread in [*conns, *self._loops]:
            thread.join(max(0.0, deadline - time.monotonic()))
        for server in self._servers:
            server.server_close()
        self._servers, self._loops = [], []

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses

    def base_url(self, host: str | None = None) -> str:
        """``http://HOST:PORT`` (host defaults to the first)."""
        return f"http://{host or self.hosts[0]}:{self.port}"

    def url(self, path: str = "/", host: str | None = None) -> str:
        """``http://HOST:PORT/path`` (host defaults to the first)."""
        return self.base_url(host) + (path if path.startswith("/") else "/" + path)

    # -- observations

    @property
    def log(self) -> list[RequestRecord]:
        """Finished requests in order of finishing (a copy).

        A request is logged just after its response is out, so a client may read this a moment
        before the record exists: while any request is still being handled, wait a little (at
        most 0.25 s) for it to be logged."""
        deadline = time.monotonic() + 0.25
        while True:
            with self._lock:
                if not any(self._active.values()) or time.monotonic() >= deadline:
                    return list(self._log)
            time.sleep(0.002)

    @property
    def max_concurrent(self) -> int:
        """Most requests in flight at once over all hosts since start / `reset_log`."""
        with self._lock:
            return self._max_total

    @property
    def max_concurrent_per_host(self) -> dict[str, int]:
        """Most requests in flight at once per arrival address (hosts never hit are absent)."""
        with self._lock:
            return dict(self._max)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (keep-alive reuse keeps this low)."""
        with self._lock:
            return self._connections

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by behaviours (not client disconnects)."""
        return list(self._errors)

    def requests_for(self, path: str, host: str | None = None) -> list[RequestRecord]:
        """Logged requests for ``path`` (query included), on ``host`` or on any host."""
        return [r for r in self.log if r.path == path and host in (None, r.host)]

    def reset_log(self, *, hits: bool = False) -> None:
        """Clear the log, the concurrency maxima and the connection count.

        The per-(host, path) hit counts that `FailThenSucceed` uses persist unless ``hits``.
        """
        with self._lock:
            self._log.clear()
            self._max = Counter({h: n for h, n in self._active.items() if n})
            self._max_total = sum(self._active.values())
            self._connections = 0
            if hits:
                self._hits.clear()

    # -- called from handler threads

    def _track(self, thread: threading.Thread, sock: socket.socket) -> None:
        with self._lock:
            self._conns[thread] = sock
            self._connections += 1

    def _untrack(self, thread: threading.Thread) -> None:
        with self._lock:
            self._conns.pop(thread, None)

    def _hit(self, host: str, path: str) -> int:
        with self._lock:
            self._hits[(host, path)] += 1
            return self._hits[(host, path)]

    def _enter(self, host: str) -> None:
        with self._lock:
            self._active[host] += 1
            self._max[host] = max(self._max[host], self._active[host])
            self._max_total = max(self._max_total, sum(self._active.values()))

    def _finish(self, handler: _Handler) -> None:
        host = handler.server.host
        headers = getattr(handler, "headers", None)
        finished = time.monotonic()
        record = RequestRecord(
            host=host,
            path=getattr(handler, "path", "") or "",
            method=getattr(handler, "command", "") or "",
            headers=_first_headers(headers.items()) if headers is not None else {},
            started=handler.started or 0.0,
            finished=finished,
            status=handler.status,
            bytes_sent=handler.bytes_sent,
            responded=handler.responded if handler.responded is not None else finished,
        )
        with self._lock:
            self._active[host] -= 1
            self._log.append(record)


def _first_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in items:
        out.setdefault(name, value)
    return out


# --------------------------------------------------------------------------- generated site

_WORDS = "river stone lantern orchard copper meadow harbor violet signal thunder ember quiet"

EXTERNAL_HOST = "external.invalid"
"""Generated pages link here; it is never served (``.invalid`` never resolves)."""


@dataclass
class GeneratedPage:
    """A generated HTML page, rendered per request so `GeneratedSite.add_linked` can add links."""

    title: str
    paragraphs: list[str]
    anchors: list[str]
    """Raw ``<a ...>...</a>`` elements, rendered as a list."""

    def render(self) -> str:
        title = html.escape(self.title)
        paras = "\n".join(f"<p>{html.escape(p)}</p>" for p in self.paragraphs)
        items = "\n".join(f"<li>{a}</li>" for a in self.anchors)
        return (
            '<!doctype html>\n<html><head><meta charset="utf-8">'
            f"<title>{title}</title></head>\n<body><h1>{title}</h1>\n{paras}\n"
            f"<ul>\n{items}\n</ul>\n</body></html>\n"
        )

    def __call__(self, ctx: RequestContext) -> None:
        ctx.send(200, self.render())


@dataclass
class GeneratedSite:
    """A generated site and what a correct crawl of it finds.

    ``expected_urls``: every URL reachable from the hosts' roots through followable links
    (canonical ``http://127.0.0.2:PORT/p/17.html``, roots as ``http://127.0.0.2:PORT/``);
    it excludes external URLs and pages linked only with ``rel="nofollow"``.
    ``links``: (src, dst) pairs of every followable ``<a href>``, fragments removed, external
    destinations included. ``nofollow_links`` / ``nofollow_urls``: the ``rel="nofollow"`` ones.
    ``external_urls``: the links' destinations on ``EXTERNAL_HOST``.
    """

    site: Site
    hosts: tuple[str, ...]
    port: int
    pages: dict[str, GeneratedPage]
    """Generated pages by absolute URL."""
    expected_urls: set[str] = field(default_factory=set)
    links: set[tuple[str, str]] = field(default_factory=set)
    nofollow_links: set[tuple[str, str]] = field(default_factory=set)
    nofollow_urls: set[str] = field(default_factory=set)
    external_urls: set[str] = field(default_factory=set)

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"http://{host or self.hosts[0]}:{self.port}{path}"

    @property
    def root_urls(self) -> list[str]:
        """The seeds: ``http://HOST:PORT/`` for every host."""
        return [self.url("/", h) for h in self.hosts]

    def add_linked(
        self,
        path: str,
        behaviour: Behaviour,
        from_path: str = "/",
        host: str | None = None,
        *,
        expected: bool = True,
        text: str | None = None,
    ) -> str:
        """Serve ``behaviour`` at ``path`` on ``host`` (default: the first host) and link to it
        (``<a href="path">``) from the generated page ``from_path`` on that host.

        The link goes into ``links``; the URL into ``expected_urls`` unless ``expected=False``
        (e.g. for a target a crawler should not record as fetched). Returns the absolute URL.
        """
        host = host or self.hosts[0]
        src = self.url(from_path, host)
        page = self.pages[src]  # KeyError: from_path is not a generated page
        self.site.add(path, behaviour, host=host)
        label = html.escape(text or f"extra {path}")
        page.anchors.append(f'<a href="{html.escape(path)}">{label}</a>')
        dst = urldefrag(urljoin(src, path)).url
        self.links.add((src, dst))
        if expected:
            self.expected_urls.add(dst)
        return dst


def _page_path(i: int) -> str:
    return f"/p/{i}.html"


def _href(rng: random.Random, src_path: str, dst_path: str, base: str) -> str:
    """One of several spellings of a same-host link from ``src_path`` to ``dst_path``."""
    if dst_path == "/":
        return rng.choice(["/", "../", base + "/"]) if src_path != "/" else "/"
    name = dst_path.rsplit("/", 1)[1]
    if src_path.startswith("/p/"):
        forms = [name, dst_path, f"./{name}#s{rng.randint(1, 9)}", base + dst_path, f"../p/{name}"]
    else:
        forms = [f"p/{name}", dst_path, f"./p/{name}#s{rng.randint(1, 9)}", base + dst_path]
    return rng.choice(forms)


def generate_site(
    hosts: Sequence[str],
    pages_per_host: int,
    *,
    port: int,
    seed: int = 0,
    links_per_page: tuple[int, int] = (3, 8),
    cross_host_links: bool = True,
    site: Site | None = None,
) -> GeneratedSite:
    """Generate linked HTML pages ``/p/0.html`` .. on every host, into ``site`` (or a new one).

    The port is needed for absolute links, so start the server first and generate into its
    site: ``generate_site(srv.hosts, 20, port=srv.port, site=srv.site)``. The structure
    depends only on ``seed`` and the arguments (``random.Random(seed)``).

    Each host's ``/`` links to page 0 (and a few more), page i links to page i+1, so every
    page is reachable from its root; other same-host links use mixed spellings (``17.html``,
    ``/p/17.html``, ``./17.html#s3``, ``http://HOST:PORT/p/17.html``, ``../p/17.html``, ``/``).
    ``links_per_page`` bounds the same-host + cross-host links of a page; some pages add a link
    to ``EXTERNAL_HOST``; every root has one such link and one ``rel="nofollow"`` link to
    ``/nofollow.html`` (served, linked from nowhere else).
    """
    if pages_per_host < 1:
        raise ValueError("pages_per_host must be >= 1")
    rng = random.Random(seed)
    gen = GeneratedSite(
        site=site if site is not None else Site(), hosts=tuple(hosts), port=port, pages={}
    )
    lo, hi = links_per_page
    for host in gen.hosts:
        base = f"http://{host}:{port}"
        others = [h for h in gen.hosts if h != host] if cross_host_links else []
        paths = ["/", *(_page_path(i) for i in range(pages_per_host))]
        for index, src_path in enumerate(paths):
            src = base + src_path
            anchors: list[tuple[str, str, str]] = []  # (href, dst, rel)
            chain = paths[index + 1] if index + 1 < len(paths) else None
            candidates = [p for p in paths if p not in (src_path, chain)]
            wanted = rng.randint(lo, hi)
            if others and rng.random() < 0.3:
                other = rng.choice(others)
                dst_path = rng.choice(["/", _page_path(rng.randrange(pages_per_host))])
                dst = f"http://{other}:{port}{dst_path}"
                anchors.append((dst, dst, ""))
            targets = [chain] if chain else []
            extra = max(0, min(len(candidates), wanted - len(anchors) - len(targets)))
            targets += rng.sample(candidates, extra)
            anchors += [(_href(rng, src_path, t, base), base + t, "") for t in targets]
            if src_path == "/" or rng.random() < 0.15:
                ext = f"http://{EXTERNAL_HOST}/x/{rng.randrange(1000)}"
                anchors.append((ext, ext, ""))
            if src_path == "/":
                anchors.append(("/nofollow.html", base + "/nofollow.html", "nofollow"))
            rng.shuffle(anchors)
            page = GeneratedPage(
                title=f"{host} {src_path}",
                paragraphs=[" ".join(rng.choices(_WORDS.split(), k=rng.randint(8, 30)))],
                anchors=[],
            )
            for n, (href, dst, rel) in enumerate(anchors):
                resolved = urldefrag(urljoin(src, href)).url
                assert resolved == dst, (src, href, dst)
                rel_attr = f' rel="{rel}"' if rel else ""
                page.anchors.append(f'<a href="{html.escape(href)}"{rel_attr}>link {n}</a>')
                if rel == "nofollow":
                    gen.nofollow_links.add((src, dst))
                    gen.nofollow_urls.add(dst)
                else:
                    gen.links.add((src, dst))
                if dst.startswith(f"http://{EXTERNAL_HOST}/"):
                    gen.external_urls.add(dst)
            gen.pages[src] = page
            gen.expected_urls.add(src)
            gen.site.add(src_path, page, host=host)
        gen.site.add("/nofollow.html", Page("<title>nofollow</title><p>hidden</p>"), host=host)
    return gen


# --------------------------------------------------------------------------- pytest fixture


class SiteServerFactory(Protocol):
    """The ``site_server`` fixture: start a server; it is stopped at teardown."""

    def __call__(
        self, site: Site | None = None, hosts: Sequence[str] = ("127.0.0.1",)
    ) -> SiteServer: ...


@pytest.fixture
def site_server() -> Iterator[SiteServerFactory]:
    """Factory: ``srv = site_server(site, hosts=["127.0.0.2", "127.0.0.3"])`` is started;
    every server made is stopped after the test."""
    servers: list[SiteServer] = []

    def start(site: Site | None = None, hosts: Sequence[str] = ("127.0.0.1",)) -> SiteServer:
        server = SiteServer(site, hosts).start()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.stop()


def loopback_hosts(count: int, first: int = 2) -> list[str]:
    """``count`` loopback addresses ``127.0.0.<first>`` ... (Linux binds all of 127/8)."""
    return [f"127.0.0.{first + i}" for i in range(count)]
