"""The tables of the public schema. Every column has a docstring: docs/schema.md mirrors them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

# Enum values are the public contract (stored by value, as plain text, checked by constraints).
URL_STATES = ("queued", "fetching", "done", "failed", "blocked", "gone", "excluded")
URL_KINDS = ("page", "sitemap")
CRAWL_STATUSES = ("running", "finished", "interrupted", "failed")
ERROR_KINDS = (
    "dns",
    "connect",
    "timeout",
    "tls",
    "http_status",
    "too_large",
    "redirect",
    "robots",
    "content",
    "parse",
    "other",
)


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=name)


class Crawl(Base):
    """One row per run of the crawler (crawl, resume, recrawl, worker)."""

    __tablename__ = "crawls"
    __table_args__ = (_one_of("status", CRAWL_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[dt.datetime]
    """When the run started (UTC)."""
    finished_at: Mapped[dt.datetime | None]
    """When it ended; NULL while running, or when the process died or its database writer
    failed (then status stays running until the next run on this SQLite database marks it
    interrupted)."""
    status: Mapped[str] = mapped_column(String(16))
    """running, finished, interrupted or failed."""
    seed_file: Mapped[str | None] = mapped_column(Text)
    """The seed file given on the command line, if any."""
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    """Every setting in force for the run, as JSON."""
    pages_fetched: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Completed fetches (any status) stored by this run."""
    errors: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Error rows (failed attempts) stored by this run."""
    bytes_fetched: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    """Decoded body bytes downloaded by this run."""
    pid: Mapped[int | None] = mapped_column(Integer)
    """Process id of the run, for telling which process ran it."""
    hostname: Mapped[str | None] = mapped_column(String(255))
    """Machine the run ran on."""
    command: Mapped[str] = mapped_column(
        String(16), default="crawl", server_default=text("'crawl'")
    )
    """What the run was: crawl or recrawl."""


class Host(Base):
    """One row per origin (scheme://host:port): politeness and robots.txt state."""

    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(300), unique=True)
    """The origin, with the port always explicit: ``https://example.com:443``."""
    robots_txt: Mapped[str | None] = mapped_column(Text)
    """The robots.txt body last fetched for this host."""
    robots_fetched_at: Mapped[dt.datetime | None]
    """When robots.txt was last fetched."""
    crawl_delay: Mapped[float | None] = mapped_column(Float)
    """Seconds between requests in force for this host (Crawl-delay or the setting)."""
    next_allowed_at: Mapped[dt.datetime | None]
    """No request to this host may start before this time (Retry-After, shared politeness)."""


class Url(Base):
    """The frontier and the schedule: one row per canonical URL ever seen."""

    __tablename__ = "urls"
    __table_args__ = (
        _one_of("state", URL_STATES, "state"),
        _one_of("kind", URL_KINDS, "kind"),
        Index("ix_urls_host_id_state", "host_id", "state"),
        Index("ix_urls_next_fetch_at", "next_fetch_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text, unique=True)
    """The canonical URL (see docs/schema.md); the dedup key."""
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"))
    """The URL's origin in ``hosts``."""
    depth: Mapped[int] = mapped_column(Integer)
    """Links followed from a seed to reach it; seeds are 0."""
    discovered_from: Mapped[int | None] = mapped_column(ForeignKey("urls.id"))
    """The page it was first found on; NULL for seeds."""
    state: Mapped[str] = mapped_column(String(16))
    """queued, fetching, done, failed, blocked, gone, or excluded (out of scope: never fetched)."""
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Higher is fetched first, before depth order; 0 for every URL until sitemaps and user
    rules set it."""
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Fetches of this URL that completed or failed for good, over all runs."""
    first_seen_at: Mapped[dt.datetime]
    """When the URL was first discovered."""
    last_fetched_at: Mapped[dt.datetime | None]
    """When it was last fetched (any outcome)."""
    next_fetch_at: Mapped[dt.datetime | None]
    """When a recrawl should fetch it again."""
    fetch_interval: Mapped[float | None] = mapped_column(Float)
    """Seconds between fetches, for recrawls."""
    etag: Mapped[str | None] = mapped_column(Text)
    """The last ETag the server sent, for conditional GET."""
    last_modified: Mapped[str | None] = mapped_column(Text)
    """The last Last-Modified the server sent, for conditional GET."""
    content_hash: Mapped[str | None] = mapped_column(String(64))
    """Hash of the page's normalized text at its last fetch."""
    lease_until: Mapped[dt.datetime | None]
    """While state is fetching: when the claim expires and the URL may be handed out again."""
    kind: Mapped[str] = mapped_column(String(16), default="page", server_default=text("'page'"))
    """page (parsed for links) or sitemap (read for the URLs it lists)."""
    lastmod: Mapped[dt.datetime | None]
    """The <lastmod> a sitemap gave for this URL."""
    changefreq: Mapped[str | None] = mapped_column(String(16))
    """The <changefreq> a sitemap gave for this URL (hourly, daily, ...)."""
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Failed fetches in a row (reset by a success): the back-off of the schedule."""
    not_found: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """404/410 answers in a row; at [schedule] gone_after the URL is gone."""


class Fetch(Base):
    """One row per completed HTTP fetch; history is kept across recrawls."""

    __tablename__ = "fetches"
    __table_args__ = (Index("ix_fetches_url_id_id", "url_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    url_id: Mapped[int] = mapped_column(ForeignKey("urls.id"))
    """The URL requested."""
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"), index=True)
    """The run that fetched it."""
    fetched_at: Mapped[dt.datetime]
    """When the response was complete."""
    status_code: Mapped[int] = mapped_column(Integer)
    """HTTP status of the final response (after redirects)."""
    final_url: Mapped[str] = mapped_column(Text)
    """The URL that answered, after redirects."""
    redirects: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Redirect hops followed."""
    content_type: Mapped[str | None] = mapped_column(String(255))
    """The media type, without parameters."""
    content_length: Mapped[int | None] = mapped_column(BigInteger)
    """Decoded body bytes (or the Content-Length header when the body was not downloaded)."""
    elapsed_ms: Mapped[int] = mapped_column(Integer)
    """Milliseconds from the first request to the end of the body, redirects included."""
    title: Mapped[str | None] = mapped_column(Text)
    """The page's <title>, whitespace collapsed."""
    content_hash: Mapped[str | None] = mapped_column(String(64))
    """Hash of the normalized visible text (see docs/schema.md)."""
    changed: Mapped[bool | None] = mapped_column(Boolean)
    """True when content_hash differs from the URL's previous fetch (true on the first fetch)."""
    not_modified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The server answered 304 Not Modified to a conditional request."""
    canonical_url: Mapped[str | None] = mapped_column(Text)
    """The page's <link rel=canonical>, resolved."""
    noindex: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The page carries <meta name=robots content=noindex>."""
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    """Values from extraction rules, as a JSON object."""
    text: Mapped[str | None] = mapped_column(Text)
    """The page's visible text, navigation and scripts left out ([store] keep_text)."""


class Link(Base):
    """One row per distinct (source page, target URL) pair, in or out of scope."""

    __tablename__ = "links"
    __table_args__ = (Index("ix_links_dst_url_id", "dst_url_id"),)

    src_url_id: Mapped[int] = mapped_column(ForeignKey("urls.id"), primary_key=True)
    """The page the link is on."""
    dst_url_id: Mapped[int] = mapped_column(ForeignKey("urls.id"), primary_key=True)
    """The URL it points to (canonical, fragment dropped)."""
    nofollow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The link carries rel=nofollow."""
    first_seen_at: Mapped[dt.datetime]
    """When the link was first stored (the batch of the first fetch that found it)."""
    last_seen_at: Mapped[dt.datetime]
    """When the link was last stored (the batch of the latest fetch that found it)."""


class Error(Base):
    """One row per failed attempt (DESIGN §2.3: failures are data)."""

    __tablename__ = "errors"
    __table_args__ = (
        _one_of("kind", ERROR_KINDS, "kind"),
        Index("ix_errors_url_id", "url_id"),
        Index("ix_errors_crawl_id_kind", "crawl_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    url_id: Mapped[int] = mapped_column(ForeignKey("urls.id"))
    """The URL whose fetch failed."""
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"))
    """The run it failed in."""
    at: Mapped[dt.datetime]
    """When the attempt failed."""
    attempt: Mapped[int] = mapped_column(Integer)
    """1 for the first attempt, 2 for the first retry, ..."""
    kind: Mapped[str] = mapped_column(String(16))
    """One of ERROR_KINDS: dns, connect, timeout, tls, http_status, too_large, redirect, robots,
    content, parse, other."""
    status_code: Mapped[int | None] = mapped_column(Integer)
    """The HTTP status of the response the attempt ended with, if any (the 3xx of a redirect
    error, the 200 of a too_large body)."""
    message: Mapped[str] = mapped_column(Text)
    """What went wrong, in one line; URL credentials in fetch errors are masked."""
    final: Mapped[bool] = mapped_column(Boolean)
    """True when no retry followed this attempt."""


class Body(Base):
    """The response of a fetch, as received ([store] keep_html): for WARC export and re-parsing."""

    __tablename__ = "bodies"

    fetch_id: Mapped[int] = mapped_column(ForeignKey("fetches.id"), primary_key=True)
    """The fetch this body belongs to."""
    encoding: Mapped[str] = mapped_column(String(16))
    """How ``body`` is compressed: zlib."""
    body: Mapped[bytes] = mapped_column(LargeBinary)
    """The decoded (not transfer-encoded) body, compressed."""
    length: Mapped[int] = mapped_column(BigInteger)
    """Bytes of the body before compression."""
    reason: Mapped[str | None] = mapped_column(Text)
    """The status line's reason phrase."""
    headers: Mapped[list[Any]] = mapped_column(JSON)
    """The response headers as received: a JSON list of [name, value] pairs."""


# The frontier's claim walks this index in hand-out order: highest priority, then shallowest.
Index("ix_urls_frontier", Url.state, Url.priority.desc(), Url.depth, Url.id)
