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

The parts: ``context`` (RequestContext, RequestRecord), ``behaviours``, ``hostile``, ``site``,
``server`` (this module: the handler and SiteServer), ``generated``, ``fixture`` (the
``site_server`` pytest fixture; ``pytest_plugins = ["tests.mockserver.fixture"]``), as
Scrapy's ``tests/mockserver/`` does.

Must not: bind anything but the given (loopback) addresses, print to stderr, or outlive
`SiteServer.stop` (threads are daemons, and stop closes every socket and joins every thread).
Pure stdlib apart from the pytest fixture.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.mockserver.behaviours import NotFound
from tests.mockserver.context import RequestContext, RequestRecord
from tests.mockserver.site import Site

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
