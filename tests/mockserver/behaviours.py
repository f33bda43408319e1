"""The catalogue of ordinary behaviours, one small class each (the hostile ones: ``hostile.py``)."""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import format_datetime, parsedate_to_datetime

from tests.mockserver.context import CHUNK_BYTES, HTML, Behaviour, RequestContext

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
