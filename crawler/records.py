"""The frozen values that pass between stages: frontier → fetcher → parser → writer.

Stages talk only through these (STYLE: never through shared mutable state). A worker thread
returns a :class:`PageResult`; the dispatcher hands it to the writer unchanged. Everything here is
cheap to build (``slots``, or a ``NamedTuple`` for the many links of a page) because one of
each is made per page on the hot path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from crawler.errors import ErrorKind

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
"""The media types fetched in full and parsed as HTML (other types: headers only)."""


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
    kind: str = "page"
    """``page`` or ``sitemap``."""
    interval: float | None = None
    """The URL's ``fetch_interval`` so far (recrawls)."""
    failures: int = 0
    not_found: int = 0
    changefreq: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """A URL's schedule after a fetch (``crawler.schedule.plan``)."""

    next_fetch_at: datetime | None
    """None: never again (gone)."""
    interval: float
    failures: int
    not_found: int
    gone: bool = False


class Claimed(list[FetchTask]):
    """What a claim hands out. ``more``: nothing could be handed out now, but other work
    exists (hosts waiting for their delay, or URLs other processes hold): claim again soon."""

    more: bool = False


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
    reason: str | None = None
    """The status line's reason phrase, as the server sent it."""
    headers: tuple[tuple[str, str], ...] = ()
    """The final response's headers as received (for WARC records)."""
    location: str | None = None
    """A redirect not followed in this fetch (the caller's ``follow_redirect`` declined it):
    the absolute target of this 3xx's ``Location``, without fragment or userinfo."""


class Link(NamedTuple):
    """A link found on a page, already resolved, canonical and without fragment. (Tuples, not
    dataclasses: twenty of these per page are built, and sent between processes, cheaply.)"""

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
    text: str | None = None
    """The page's visible text, boilerplate removed (only with ``[store] keep_text``)."""
    data: dict[str, Any] | None = None
    """Values of the extraction rules (``fetches.data``)."""
    extract_errors: tuple[str, ...] = ()
    """Extraction rules or the hook that failed on this page, as messages."""


class NewLink(NamedTuple):
    """A link ready for the writer: where it points, and whether the frontier should fetch it."""

    url: str
    host: str
    nofollow: bool
    follow: bool
    """In scope and followable: enters the frontier as ``queued``; otherwise ``excluded``."""


@dataclass(frozen=True, slots=True)
class RobotsRecord:
    """A robots.txt just fetched for the task's host: cached in ``hosts`` by the writer."""

    host_id: int
    body: str | None
    """The text to cache; None when robots.txt was unreachable (nothing is cached then)."""
    fetched_at: datetime
    crawl_delay: float | None
    sitemaps: tuple[str, ...] = ()
    """Sitemap URLs to queue (only when ``use_sitemaps`` is on, and only those in scope)."""


@dataclass(frozen=True, slots=True)
class SitemapEntry:
    """One URL a sitemap lists, ready for the frontier."""

    url: str
    host: str
    kind: str
    """``page`` for a <url>, ``sitemap`` for a <sitemap> of an index."""
    priority: int = 0
    lastmod: datetime | None = None
    changefreq: str | None = None


@dataclass(frozen=True, slots=True)
class SitemapChunk:
    """Part of a sitemap, streamed to the writer while the worker is still reading the rest."""

    source: FetchTask
    entries: tuple[SitemapEntry, ...]


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
    plan: Plan | None = None
    """When the URL is due again (None: leave its schedule as it is)."""
    robots: RobotsRecord | None = None
    retry_after_s: float | None = None
    """Push the host's next request back this far (a 429/503 ``Retry-After``, robots.txt down)."""
    noindex: bool = False
    """``X-Robots-Tag: noindex`` on a response nothing parsed (a PDF, an image): the header is
    the only way such a file can say it; a parsed page carries it in ``parsed.noindex``."""
    final_url: str | None = None
    """The canonical final URL when a redirect led elsewhere: the writer records it as known
    (``done``), so it does not become a second page."""
