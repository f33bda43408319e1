"""The parser's fast path: lxml alone, for pages that need no BeautifulSoup document.

Building a BeautifulSoup tree is most of the CPU a crawler spends per page (docs/performance.md).
When no extraction rule or hook needs that tree, this module reads the same things from
lxml's own tree (the one BeautifulSoup's lxml backend is built from): title, ``<base>``,
meta robots, ``rel=canonical``, links, and the normalized visible text whose hash detects
changes. It decodes the bytes exactly as :func:`crawler.parse.soup.parse_html` does, and yields the
same values (a test compares the two on generated and hostile pages), so switching paths never
makes a page look changed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import lxml.html
from bs4.dammit import UnicodeDammit
from lxml import etree

from crawler.parse.common import BOILERPLATE, INVISIBLE, PageReader, content_hash
from crawler.records import ParsedPage
from crawler.urls import resolve

_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)


def decode(body: bytes, charset: str | None) -> str | None:
    """The page as text, decoded as BeautifulSoup decodes it (``charset`` first, then a BOM,
    a declaration, UTF-8 and windows-1252); None if nothing fits."""
    if charset:
        try:  # as bs4 does with a known encoding: bytes it cannot take become U+FFFD
            return body.decode(charset, errors="replace")
        except LookupError:
            pass  # a charset Python does not know: guess, as bs4 would
    dammit = UnicodeDammit(body, [], is_html=True)
    return dammit.unicode_markup


_local = threading.local()


def _parser() -> lxml.html.HTMLParser:
    """One lxml parser per thread (a parser is not safe to share between threads)."""
    parser: lxml.html.HTMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = lxml.html.HTMLParser()
    return parser


def _texts(root: etree._Element, skip: frozenset[str]) -> Iterator[str]:
    """Text nodes in document order, leaving out everything inside ``skip`` elements and
    comments (their tails, the text after them, stay)."""
    stack: list[tuple[etree._Element, bool]] = [(root, False)]
    while stack:
        node, tail_only = stack.pop()
        if tail_only:
            if node.tail:
                yield node.tail
            continue
        tag = node.tag if isinstance(node.tag, str) else None
        if node.tail and node is not root:
            stack.append((node, True))  # after the element and its children
        if tag is None or tag.lower() in skip:
            continue  # a comment or processing instruction, or an invisible element
        if node.text:
            yield node.text
        stack.extend((child, False) for child in reversed(node))


def squash(text: str) -> str:
    """Runs of whitespace as one space, none at the ends: ``re.sub(r"\\s+", " ", text).strip()``
    (``str.split`` and ``\\s`` agree on every code point; a test checks), several times faster
    on a page's worth of text."""
    return " ".join(text.split())


def normalized(root: etree._Element, skip: frozenset[str] = INVISIBLE) -> str:
    return squash(" ".join(_texts(root, skip)))


def _tree(body: bytes, charset: str | None) -> etree._Element | None:
    """lxml's tree of the page; None when lxml cannot read it as bs4 would."""
    text = decode(body, charset)
    if text is None:
        return None
    if "\x00" in text:
        return None  # lxml refuses NUL; bs4 has its own way with it
    text = _XML_DECL.sub("", text, count=1)
    if not text.strip():
        return None
    parser = _parser()
    try:
        root = lxml.html.document_fromstring(text, parser=parser)
    except (etree.ParserError, ValueError):
        return None
    if any("depth" in e.message.lower() for e in parser.error_log):
        return None  # libxml2 dropped what lies deeper than 256 levels; bs4's feed keeps it
    return root


def parse_fast(
    body: bytes,
    url: str,
    *,
    charset: str | None,
    sort_query: bool = False,
    strip_tracking: bool = False,
    keep_text: bool = False,
) -> tuple[ParsedPage, str] | None:
    """(page, normalized text) read with lxml alone; None when lxml cannot read the page (the
    caller then takes the BeautifulSoup path)."""
    root = _tree(body, charset)
    if root is None:
        return None
    title = None
    for node in root.iter("title"):
        title = squash(node.text_content()) or None
        break
    base = url
    for node in root.iter("base"):
        href = node.get("href")
        if href is not None:
            base = resolve(url, href) or url
            break
    reader = PageReader(base, sort_query=sort_query, strip_tracking=strip_tracking)
    for node in root.iter("meta", "link", "a", "area"):
        tag = node.tag
        if tag == "meta":
            reader.meta(node.get("name"), node.get("content"))
            continue
        href = node.get("href")
        if href is None:
            continue
        if tag == "link":
            reader.canonical_link(href, node.get("rel"))
        else:
            reader.link(href, node.get("rel"))

    visible = normalized(root)
    if "\x1a" in visible:
        return None  # libxml2 substituted characters it could not take: let bs4 read it
    page = reader.page(
        title=title,
        digest=content_hash(visible),
        text=normalized(root, BOILERPLATE) if keep_text else None,
    )
    return page, visible
