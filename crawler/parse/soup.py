"""HTML → title, links, canonical, meta robots, content hash. Pure: bytes in, values out.

BeautifulSoup on the lxml backend builds the tree once; everything is read from that one tree
(no document is parsed twice). Links are resolved against ``<base href>`` (itself resolved against
the page URL) per the WHATWG URL Standard, canonicalized, fragments dropped and deduplicated; only
http(s) links are kept. The parser never raises on any input: a page it cannot make sense of
yields no links, and the caller records nothing worse than an empty page.

``content_hash`` is the SHA-256 of the page's visible text, normalized so that changes nobody
sees do not count as changes: comments, ``<script>``, ``<style>``, ``<noscript>`` and
``<template>`` are left out, and every run of whitespace becomes one space.
"""

from __future__ import annotations

import codecs
import re
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from bs4 import BeautifulSoup, Comment, MarkupResemblesLocatorWarning, Tag
from bs4.dammit import EncodingDetector
from bs4.element import NavigableString

from crawler.parse.common import BOILERPLATE, INVISIBLE, PageReader, content_hash
from crawler.parse.fast import parse_fast
from crawler.records import ParsedPage
from crawler.urls import resolve

_WS = re.compile(r"\s+")
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE)

warnings.filterwarnings("ignore", category=MarkupResemblesLocatorWarning)


def _attr(tag: Tag, name: str) -> str | None:
    value = tag.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        return " ".join(value)
    return str(value)


def _visible_text(soup: BeautifulSoup, skip: frozenset[str] = INVISIBLE) -> Iterable[str]:
    # Strings anywhere inside an invisible element, not only its direct children: lxml parses
    # ``<noscript><p>...</p></noscript>`` into elements.
    hidden: set[int] = set()
    for tag in soup.find_all(skip):
        if id(tag) not in hidden:  # nested inside one already seen: walk each subtree once
            hidden.update(id(node) for node in tag.descendants)
    for node in soup.find_all(string=True):
        if isinstance(node, Comment) or not isinstance(node, NavigableString):
            continue
        if type(node) is not NavigableString:  # CData, Doctype, ProcessingInstruction, ...
            continue
        if id(node) in hidden:
            continue
        yield str(node)


def normalized_text(soup: BeautifulSoup) -> str:
    return _WS.sub(" ", " ".join(_visible_text(soup))).strip()


def page_text(soup: BeautifulSoup) -> str:
    """What a reader reads: visible text without navigation, headers, footers and forms."""
    return _WS.sub(" ", " ".join(_visible_text(soup, BOILERPLATE))).strip()


_NON_ASCII_DECODED = re.compile("[^\x00-\x7f\ufffd]")


def sniff_charset(body: bytes) -> str | None:
    """The charset of a page that neither a header nor a BOM names, as browsers guess it.

    A ``<meta charset>`` (or XML) declaration in the first bytes: None, bs4 reads it. Otherwise
    UTF-8 when the bytes hold at least one valid non-ASCII UTF-8 sequence (or are plain ASCII):
    a few invalid bytes among them become U+FFFD, never mojibake. Otherwise windows-1252, the
    browsers' fallback for Western pages (``caf\\xe9`` is ``café``). bs4's own guess is not used:
    on short or mixed input it picks exotic codecs (windows-1250 for UTF-8 with one bad byte).
    """
    if EncodingDetector.find_declared_encoding(body, is_html=True):
        return None
    text = body.decode("utf-8", errors="replace")
    if text.count("\ufffd") == body.count(b"\xef\xbf\xbd"):  # valid UTF-8 (or ASCII)
        return "utf-8"
    return "utf-8" if _NON_ASCII_DECODED.search(text) else "windows-1252"


def usable_charset(charset: str | None) -> str | None:
    """A header's charset if Python can decode text with it; None (sniff instead) for a name it
    does not know, a non-text codec (``idna``, ``base64``) or one with control characters."""
    if not charset or not charset.isprintable():
        return None
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _UNUSABLE_CODECS:
        return None
    return info.name


_UNUSABLE_CODECS = frozenset(
    {"idna", "punycode", "undefined", "raw_unicode_escape", "unicode_escape"}
)


def _charset(body: bytes, declared: str | None) -> str | None:
    """The charset to decode with: a BOM's (None: bs4 reads it), the header's, or a guess."""
    if body.startswith(_BOMS):
        return None  # bs4 would let from_encoding override the BOM
    return usable_charset(declared) or sniff_charset(body)


def parse_html(
    body: bytes,
    url: str,
    *,
    charset: str | None = None,
    sort_query: bool = False,
    strip_tracking: bool = False,
    keep_text: bool = False,
    extract: Callable[[BeautifulSoup], tuple[dict[str, Any] | None, tuple[str, ...]]] | None = None,
) -> ParsedPage:
    """Parse one HTML page fetched from ``url`` (the final URL, after redirects).

    ``charset`` is the one the ``Content-Type`` header declared; per the HTML standard it wins
    over ``<meta charset>`` (a byte-order mark wins over both); with neither, see
    :func:`sniff_charset`. ``keep_text`` adds the page's text; ``extract`` runs on the same
    document (see :mod:`crawler.parse.extract`).
    """
    charset = _charset(body, charset)
    links = {"sort_query": sort_query, "strip_tracking": strip_tracking}
    if extract is None:  # nothing needs a BeautifulSoup tree: lxml alone, same values
        fast = parse_fast(body, url, charset=charset, keep_text=keep_text, **links)
        if fast is not None:
            return fast[0]
    soup = BeautifulSoup(body, "lxml", from_encoding=charset)
    title_tag = soup.find("title")
    title = _WS.sub(" ", title_tag.get_text()).strip() if isinstance(title_tag, Tag) else None
    base = url
    base_tag = soup.find("base", href=True)
    if isinstance(base_tag, Tag):
        base = resolve(url, _attr(base_tag, "href") or "") or url
    reader = PageReader(base, **links)
    for meta in soup.find_all("meta"):
        reader.meta(_attr(meta, "name"), _attr(meta, "content"))
    for tag in soup.find_all("link", href=True):
        reader.canonical_link(_attr(tag, "href") or "", _attr(tag, "rel"))
    for tag in soup.find_all(("a", "area"), href=True):
        reader.link(_attr(tag, "href") or "", _attr(tag, "rel"))
    # Read everything the crawler needs before the extractor runs: a hook may change the soup.
    digest = content_hash(normalized_text(soup))
    text = page_text(soup) if keep_text else None
    data, problems = extract(soup) if extract is not None else (None, ())
    return reader.page(
        title=title or None, digest=digest, text=text, data=data, extract_errors=problems
    )
