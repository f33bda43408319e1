"""The content hash and the reading of meta robots, ``rel=canonical`` and links. A leaf of
:mod:`crawler.parse`: it imports only the values.

:class:`PageReader` takes the attributes of ``<meta>``, ``<link>``, ``<a>`` and ``<area>``
elements in document order, from whichever tree (Lexbor's on the hot path, the reference
parsers' in tests/parse/test_oracle.py), and answers the same values either way: so the
rules (a URL linked both ways is followable, ``none`` means ``noindex, nofollow``, the first
canonical wins) are written once.
"""

from __future__ import annotations

import hashlib
from typing import Any

from crawler.records import HTML_TYPES, Link, ParsedPage
from crawler.urls import resolve_link

INVISIBLE = frozenset({"script", "style", "noscript", "template", "head", "title"})
"""Elements whose text is not the page's visible text (the content hash leaves it out)."""

BOILERPLATE = INVISIBLE | {"nav", "header", "footer", "aside", "form", "button", "select"}
"""Left out of ``keep_text``'s page text as well: navigation and chrome, not content."""


__all__ = ["BOILERPLATE", "HTML_TYPES", "INVISIBLE", "PageReader", "content_hash", "is_html"]


def is_html(content_type: str | None) -> bool:
    return content_type in HTML_TYPES


def content_hash(text: str) -> str:
    """The SHA-256 of a page's normalized visible text: the one hash that says "changed"."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class PageReader:
    """Meta robots, the canonical URL and the links of one page, read element by element."""

    def __init__(self, base: str, *, sort_query: bool, strip_tracking: bool) -> None:
        self._base = base
        self._sort_query = sort_query
        self._strip_tracking = strip_tracking
        self.robots: set[str] = set()
        self.canonical: str | None = None
        self._nofollow_by_url: dict[str, bool] = {}

    def _resolve(self, href: str) -> str | None:
        return resolve_link(
            self._base, href, sort_query=self._sort_query, strip_tracking=self._strip_tracking
        )

    def meta(self, name: str | None, content: str | None) -> None:
        if (name or "").strip().lower() == "robots":
            self.robots.update(t.strip() for t in (content or "").lower().split(","))

    def canonical_link(self, href: str, rel: str | None) -> None:
        if self.canonical is None and "canonical" in _tokens(rel):
            self.canonical = self._resolve(href)

    def link(self, href: str, rel: str | None) -> None:
        target = self._resolve(href)
        if target is None:
            return
        nofollow = "nofollow" in _tokens(rel)
        # A URL linked both ways on one page is followable: nofollow only if every link says so.
        self._nofollow_by_url[target] = self._nofollow_by_url.get(target, True) and nofollow

    def page(self, *, title: str | None, digest: str, text: str | None, **extra: Any) -> ParsedPage:
        robots = self.robots | ({"noindex", "nofollow"} if "none" in self.robots else set())
        return ParsedPage(
            title=title,
            links=tuple(Link(u, nf) for u, nf in self._nofollow_by_url.items()),
            canonical_url=self.canonical,
            noindex="noindex" in robots,
            nofollow="nofollow" in robots,
            content_hash=digest,
            text=text,
            **extra,
        )


def _tokens(rel: str | None) -> set[str]:
    return {t.lower() for t in rel.split()} if rel else set()
