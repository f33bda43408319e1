"""Fault injection: servers that misbehave on purpose, one small behaviour class per fault.

Every class here is a `tests.mockserver.Behaviour` (a callable taking a `RequestContext`), so it
is served like any page: ``site.add("/reset", ResetMidBody())``. Faults that live below HTTP
(a reset, a status line dripped a byte at a time, a broken chunked encoding, a garbage status
line) write raw bytes to ``ctx.handler.connection`` instead of going through ``ctx.start``; they
then mark the connection to close, so the server never parses what follows as a new request.

Besides the behaviours:

* `refused_port` -- a loopback port nothing listens on (connection refused);
* `IPv6SiteServer` -- a `SiteServer` on ``::1`` (``http://[::1]:PORT/``);
* `peak_rss_mb` -- a child process's peak RSS, from ``/usr/bin/time -v`` output.

Must not: bind anything but loopback, build a large body in memory (the gzip bomb is generated
while it is sent), or outlive `SiteServer.stop` (every sleep is ``ctx.sleep``, cut short on stop).
"""

from __future__ import annotations

import os
import random
import re
import select
import socket
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from tests.mockserver.context import RequestContext
from tests.mockserver.server import SiteServer, _HostServer

__all__ = [
    "BrokenChunked",
    "DripBody",
    "DripHeaders",
    "GarbageStatus",
    "GzipBomb",
    "Http09",
    "IPv6SiteServer",
    "ManyLinks",
    "NeverAnswers",
    "RandomBytes",
    "ResetMidBody",
    "RetryAfterDate",
    "ShortBody",
    "peak_rss_mb",
    "refused_port",
]


def _raw(ctx: RequestContext, data: bytes) -> bool:
    """Write ``data`` straight to the socket, bypassing the HTTP machinery; False if gone."""
    ctx.close_connection()
    try:
        ctx.handler.connection.sendall(data)
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- transport faults


def refused_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` with nothing listening: bound then closed, so a connect is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class ResetMidBody:
    """Promise ``length`` bytes, send ``sent`` of them, then reset the connection (RST)."""

    length: int = 100_000
    sent: int = 1000

    def __call__(self, ctx: RequestContext) -> None:
        ctx.start(200, {"Content-Type": "text/html"}, length=self.length)
        ctx.write(b"<html><title>reset</title>" + b"x" * max(0, self.sent - 26))
        ctx.handler.wfile.flush()
        linger = struct.pack("ii", 1, 0)  # close() now sends a RST, not a FIN
        ctx.handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        ctx.close_connection()


@dataclass(frozen=True)
class NeverAnswers:
    """Read the request, then say nothing until the client goes away or the server stops."""

    def __call__(self, ctx: RequestContext) -> None:
        ctx.close_connection()
        conn = ctx.handler.connection
        while ctx.sleep(0.05):
            readable, _, _ = select.select([conn], [], [], 0)
            if readable:
                try:
                    if not conn.recv(1, socket.MSG_PEEK):
                        return  # EOF: the client gave up
                except OSError:
                    return


@dataclass(frozen=True)
class DripBody:
    """Headers at once (``Content-Length`` of ``size``), then one body byte every ``interval_s``."""

    size: int = 1000
    interval_s: float = 1.0

    def __call__(self, ctx: RequestContext) -> None:
        ctx.start(200, {"Content-Type": "text/html"}, length=self.size)
        for _ in range(self.size):
            if not ctx.write(b"x") or not ctx.sleep(self.interval_s):
                ctx.close_connection()
                return


@dataclass(frozen=True)
class DripHeaders:
    """The status line and headers one byte every ``interval_s`` -- an endless header block
    (``X-Drip: xxxx...``), so every read succeeds within a read timeout but never ends."""

    interval_s: float = 0.2

    def __call__(self, ctx: RequestContext) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Drip: "
        for byte in head:
            if not _raw(ctx, bytes([byte])) or not ctx.sleep(self.interval_s):
                return
        while _raw(ctx, b"x") and ctx.sleep(self.interval_s):
            pass


@dataclass(frozen=True)
class ShortBody:
    """``Content-Length: claimed`` but only ``body`` is sent before the connection closes."""

    body: bytes = b"<html><head><title>short</title></head><body>cut"
    claimed: int = 10_000

    def __call__(self, ctx: RequestContext) -> None:
        ctx.start(200, {"Content-Type": "text/html"}, length=self.claimed)
        ctx.write(self.body)
        ctx.close_connection()


@dataclass(frozen=True)
class BrokenChunked:
    """``Transfer-Encoding: chunked`` with one good chunk, then a chunk size that is not hex."""

    def __call__(self, ctx: RequestContext) -> None:
        _raw(
            ctx,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1a\r\n<html><title>ok</title>xx\r\nZZZ-not-hex\r\nmore body\r\n0\r\n\r\n",
        )


@dataclass(frozen=True)
class Http09:
    """An HTTP/0.9-style answer: the body alone, no status line, no headers."""

    def __call__(self, ctx: RequestContext) -> None:
        _raw(ctx, b"<html><head><title>nineteen-ninety</title></head><body>old</body></html>\n")


@dataclass(frozen=True)
class GarbageStatus:
    """A status line that is not HTTP at all, then headers and a body."""

    line: bytes = b"SPDY/9 banana OK"

    def __call__(self, ctx: RequestContext) -> None:
        _raw(ctx, self.line + b"\r\nContent-Length: 5\r\n\r\nhello")


# --------------------------------------------------------------------------- bodies


@dataclass(frozen=True)
class GzipBomb:
    """``Content-Encoding: gzip`` of ``inflated`` zero bytes, compressed while it is sent.

    1 GiB of zeros is about 1 MiB of gzip; nothing larger than one 1 MiB block of zeros is ever
    held in memory. Sent without ``Content-Length`` (the body ends when the connection closes).
    """

    inflated: int = 1 << 30
    content_type: str = "text/html"

    def __call__(self, ctx: RequestContext) -> None:
        ctx.start(200, {"Content-Type": self.content_type, "Content-Encoding": "gzip"}, length=None)
        gz = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
        block = bytes(1 << 20)
        if not ctx.write(gz.compress(b"<html><head><title>bomb</title></head><body>")):
            return
        left = self.inflated
        while left > 0:
            piece = block if left >= len(block) else block[:left]
            left -= len(piece)
            out = gz.compress(piece)
            if out and not ctx.write(out):
                return
        ctx.write(gz.flush())


@dataclass(frozen=True)
class RandomBytes:
    """``size`` random bytes (seeded), served with ``content_type`` (by default as HTML)."""

    size: int = 200_000
    content_type: str = "text/html"
    seed: int = 7
    prefix: bytes = b""

    def __call__(self, ctx: RequestContext) -> None:
        data = self.prefix + random.Random(self.seed).randbytes(self.size)
        ctx.send(200, data, content_type=self.content_type)


@dataclass(frozen=True)
class ManyLinks:
    """An HTML page with ``count`` links ``{target}{i}``, rendered per request."""

    count: int
    target: str
    title: str = "many links"

    def __call__(self, ctx: RequestContext) -> None:
        links = "".join(f'<a href="{self.target}{i}">{i}</a>\n' for i in range(self.count))
        ctx.send(200, f"<html><head><title>{self.title}</title></head><body>{links}</body></html>")


# --------------------------------------------------------------------------- HTTP semantics


@dataclass(frozen=True)
class RetryAfterDate:
    """The first ``failures`` hits get ``status`` with ``Retry-After`` as an HTTP date
    ``seconds`` from now (rounded up to a whole second); later hits get a small page."""

    seconds: float
    status: int = 503
    failures: int = 1

    def __call__(self, ctx: RequestContext) -> None:
        if ctx.hits > self.failures:
            ctx.send(200, "<html><head><title>after the wait</title></head></html>")
            return
        when = datetime.now(UTC) + timedelta(seconds=self.seconds + 1)
        when = when.replace(microsecond=0)
        header = format_datetime(when, usegmt=True)
        ctx.send(self.status, "come back later", {"Retry-After": header})


# --------------------------------------------------------------------------- IPv6


class _IPv6HostServer(_HostServer):
    address_family = socket.AF_INET6


class IPv6SiteServer(SiteServer):
    """A `SiteServer` on ``::1``: its URLs are ``http://[::1]:PORT/...``."""

    def __init__(self, site: object = None) -> None:
        super().__init__(site, hosts=("::1",))  # type: ignore[arg-type]

    def _bind_all(self) -> list[_HostServer]:
        return [_IPv6HostServer("::1", 0, self)]

    def base_url(self, host: str | None = None) -> str:
        return f"http://[::1]:{self.port}"


# --------------------------------------------------------------------------- measuring

_MAX_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def peak_rss_mb(time_v_stderr: str) -> float:
    """Peak RSS in MiB from the stderr of ``/usr/bin/time -v``."""
    match = _MAX_RSS.search(time_v_stderr)
    if match is None:
        raise ValueError("no 'Maximum resident set size' in /usr/bin/time -v output")
    return int(match[1]) / 1024


TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
"""GNU time, for a child's peak RSS; None when not installed."""
