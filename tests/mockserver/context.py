"""What a behaviour is given: the request's context, and the record the server keeps of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Protocol

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
        handler: BaseHTTPRequestHandler,
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
