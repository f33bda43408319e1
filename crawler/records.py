"""The frozen values that pass between stages: frontier → fetcher → parser → writer.

Stages talk only through these (STYLE: never through shared mutable state). A worker thread
returns a :class:`PageResult`; the dispatcher hands it to the writer unchanged. Everything here is
cheap to build (``slots``) because one of each is made per page on the hot path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from crawler.errors import ErrorKind


class URLState(enum.StrEnum):
    """Stored by value in ``urls.state``: the public contract."""

    QUEUED = "queued"
    FETCHING = "fetching"
    DONE = "done"
    FAILED = "failed"
    BLOCKED = "blocked"
    GONE = "gone"
    EXCLUDED = "excluded"
    """Known only as a link target that is out of scope: recorded for ``links``, never fetched."""


class CrawlStatus(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class FetchTask:
    """A URL claimed from the frontier, with what the fetcher needs to know about it."""

    url_id: int
    url: str
    host_id: int
    host: str
    depth: int
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    """The hash stored at the previous fetch, so the worker can tell whether the page changed."""


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """One failed attempt; becomes one ``errors`` row."""

    kind: ErrorKind
    message: str
    attempt: int
    final: bool
    at: datetime
    status_code: int | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A completed HTTP exchange (any status), after redirects."""

    url: str
    final_url: str
    status_code: int
    fetched_at: datetime
    elapsed_ms: int
    redirects: int = 0
    content_type: str | None = None
    """The media type alone, lowercased, without parameters."""
    charset: str | None = None
    """The ``charset`` parameter of ``Content-Type``, if the server sent one."""
    content_length: int | None = None
    """Decoded bytes read, or the header's value when the body was not downloaded."""
    body: bytes | None = None
    """Only for HTML; ``None`` for other types, for a 304, and for a body cut at the size cap."""
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False
    retry_after_s: float | None = None
    """A ``Retry-After`` the server sent with this response, in seconds from ``fetched_at``."""
    redirect_chain: tuple[str, ...] = ()
    """Every URL requested before ``final_url``, in order (the first is ``url``)."""


@dataclass(frozen=True, slots=True)
class Link:
    """A link found on a page, already resolved, canonical and without fragment."""

    url: str
    nofollow: bool = False


@dataclass(frozen=True, slots=True)
class ParsedPage:
    title: str | None
    links: tuple[Link, ...]
    canonical_url: str | None = None
    noindex: bool = False
    nofollow: bool = False
    """``<meta name=robots content=nofollow>``: links are recorded but not followed."""
    content_hash: str | None = None


@dataclass(frozen=True, slots=True)
class NewLink:
    """A link ready for the writer: where it points, and whether the frontier should fetch it."""

    url: str
    host: str
    nofollow: bool
    follow: bool
    """In scope and followable: enters the frontier as ``queued``; otherwise ``excluded``."""


@dataclass(frozen=True, slots=True)
class PageResult:
    """Everything one worker learned about one URL; the writer stores it in one batch."""

    task: FetchTask
    state: URLState
    fetch: FetchResult | None = None
    parsed: ParsedPage | None = None
    errors: tuple[ErrorRecord, ...] = ()
    links: tuple[NewLink, ...] = field(default=())
    changed: bool | None = None
    next_fetch_at: datetime | None = None
    fetch_interval_s: float | None = None
