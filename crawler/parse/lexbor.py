"""The hot path: the page as the HTML standard's parsing builds it (Lexbor, via selectolax),
read for title, ``<base>``, meta robots, ``rel=canonical``, links and the visible-text hash.

Every page is read here, whether or not an extraction rule also wants a BeautifulSoup tree, so
the values never depend on the path. Lexbor was chosen by measuring (docs/performance.md,
"Parser"): 99.94 % agreement with the consensus of html5lib, justhtml and html5ever on 4,749
generated documents, at lxml's CPU cost. ``scripting=True``: a browser runs JavaScript, so
``<noscript>`` is raw text, not markup. Template contents are a separate fragment in Lexbor, so
``css()`` never reaches them. Foreign content (``<svg><a>``, ``<svg><title>``) is told apart by
the tree's shape (:func:`_namespace`): selectolax does not expose an element's namespace.

What this module must not do: decode bytes (:mod:`crawler.parse.charset` does, the parser is
handed ``str``), or parse a page deeper than :data:`MAX_DEPTH` (the standard's tree
construction is quadratic in depth: 100,000 nested ``<div>`` take 22 s).
"""

from __future__ import annotations

import re
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from crawler.parse.common import BOILERPLATE, INVISIBLE, PageReader, content_hash
from crawler.records import ParsedPage
from crawler.urls import resolve

__all__ = ["MAX_DEPTH", "TooDeep", "Tree", "ascii_collapse", "read_page", "squash"]

MAX_DEPTH = 20_000
"""Open elements beyond which a page is not parsed: 10,000 levels parse in 0.14 s, 20,000 in
0.54 s, 100,000 in 22 s (Lexbor; html5ever and Gumbo alike)."""


class TooDeep(ValueError):
    """A page nests deeper than :data:`MAX_DEPTH`: recorded as a ``parse`` error."""


_TAG = re.compile(r"<(/?)([a-zA-Z][^\t\n\f\r />]*)")
_VOID = frozenset(
    {
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr", "basefont", "bgsound", "frame", "keygen", "param",
    }
)  # fmt: skip


def check_depth(text: str) -> None:
    """Raise :class:`TooDeep` for a page that would nest deeper than :data:`MAX_DEPTH`.

    The cheap bound first (``str.count`` runs in C): a document cannot open more elements than
    it has start tags. Only a page with that many is walked, start and end tags counted as a
    stack (stray end tags never take it below zero, so they cannot hide depth)."""
    if text.count("<") - text.count("</") <= MAX_DEPTH:
        return
    depth = 0
    for m in _TAG.finditer(text):
        if m.group(1):
            depth = max(0, depth - 1)
        elif m.group(2).lower() not in _VOID:
            depth += 1
            if depth > MAX_DEPTH:
                raise TooDeep(f"page nests deeper than {MAX_DEPTH:,} elements: not parsed")


_ASCII_WS = re.compile(r"[\t\n\f\r ]+")


def ascii_collapse(text: str) -> str:
    """``document.title``'s rule: ASCII whitespace stripped and collapsed; ``&nbsp;`` and other
    Unicode spaces stay."""
    return _ASCII_WS.sub(" ", text).strip("\t\n\f\r ")


def squash(text: str) -> str:
    """Runs of any whitespace as one space, none at the ends (``str.split`` and ``\\s`` agree
    on every code point; a test checks): the normalization of the hashed text."""
    return " ".join(text.split())


# -- namespaces, from the tree's shape ---------------------------------------------------------

_SVG_HTML_POINTS = frozenset({"foreignobject", "desc", "title"})
_MATH_TEXT_POINTS = frozenset({"mi", "mo", "mn", "ms", "mtext"})


def _namespace(node: LexborNode, cache: dict[int, str]) -> str:
    """'html', 'svg' or 'math', as the parser decided it: children of an HTML element or of an
    integration point are HTML (``<svg>``/``<math>`` there start foreign content); inside
    foreign content an element takes its parent's namespace (``<math><svg>`` is MathML), except
    ``<svg>`` in ``annotation-xml``. Iterative (10,000 levels of ``<svg>`` must not recurse)."""
    chain: list[LexborNode] = []
    current: LexborNode | None = node
    ns = "html"
    while current is not None:
        got = cache.get(current.mem_id)
        if got is not None:
            ns = got
            break
        parent = current.parent
        if parent is None or parent.tag in (None, "-undef") or parent.tag.startswith("#"):
            cache[current.mem_id] = ns = _child_namespace("html", "html", current)
            break
        chain.append(current)
        current = parent
    while chain:
        child = chain.pop()
        parent = child.parent
        assert parent is not None
        ns = _child_namespace(ns, (parent.tag or "").lower(), child, parent)
        cache[child.mem_id] = ns
    return ns


def _child_namespace(
    pns: str, ptag: str, node: LexborNode, parent: LexborNode | None = None
) -> str:
    tag = (node.tag or "").lower()
    if pns == "html":
        html_context = True
    elif pns == "svg":
        html_context = ptag in _SVG_HTML_POINTS
    elif ptag in _MATH_TEXT_POINTS:
        html_context = tag not in ("mglyph", "malignmark")
    elif ptag == "annotation-xml":
        if tag == "svg":
            return "svg"
        encoding = (parent.attributes.get("encoding") or "") if parent is not None else ""
        html_context = encoding.lower() in ("text/html", "application/xhtml+xml")
    else:
        html_context = False
    if html_context:
        return "svg" if tag == "svg" else "math" if tag == "math" else "html"
    return pns


# -- reading the tree ---------------------------------------------------------------------------

_SELECTOR = "a[href], area[href], base[href], link[href], title, meta, svg, math"
_INVISIBLE = ", ".join(sorted(INVISIBLE))
"""Removed before the visible text is read (template contents are never in the tree's text)."""
_BOILERPLATE = ", ".join(sorted(BOILERPLATE - INVISIBLE))


class Tree:
    """One page parsed; the values a crawl reads from it."""

    def __init__(self, text: str) -> None:
        check_depth(text)
        self.tree = LexborHTMLParser(text, scripting=True)

    def read(
        self, url: str, *, sort_query: bool, strip_tracking: bool
    ) -> tuple[str | None, PageReader]:
        """(title, reader with robots, canonical and links), in tree order; the first ``<base
        href>`` and the first HTML ``<title>`` win."""
        base: str | None = None
        title: str | None = None
        foreign = False
        cache: dict[int, str] = {}
        found: list[tuple[str, Any]] = []
        for node in self.tree.css(_SELECTOR):
            tag = node.tag
            if tag == "svg" or tag == "math":
                foreign = True  # css() returns these before their descendants
                continue
            if foreign and _namespace(node, cache) != "html":
                continue
            attrs = node.attributes
            if tag == "base":
                if base is None:
                    base = attrs.get("href") or ""
            elif tag == "title":
                if title is None:
                    title = ascii_collapse(node.text(deep=True))
            else:
                found.append((tag or "", attrs))
        page_base = url if base is None else (resolve(url, base) or url)
        reader = PageReader(page_base, sort_query=sort_query, strip_tracking=strip_tracking)
        for tag, attrs in found:
            if tag == "meta":
                reader.meta(attrs.get("name"), attrs.get("content"))
            elif tag == "link":
                reader.canonical_link(attrs.get("href") or "", attrs.get("rel"))
            else:
                reader.link(attrs.get("href") or "", attrs.get("rel"))
        return title or None, reader

    def texts(self, keep_text: bool) -> tuple[str, str | None]:
        """(visible text, the reader's text without boilerplate if ``keep_text``). Removes
        nodes: read links first."""
        for node in self.tree.css(_INVISIBLE):
            node.decompose()
        root = self.tree.root
        visible = squash(root.text(separator=" ")) if root is not None else ""
        if not keep_text:
            return visible, None
        for node in self.tree.css(_BOILERPLATE):
            node.decompose()
        return visible, squash(root.text(separator=" ")) if root is not None else ""


def read_page(
    text: str, url: str, *, sort_query: bool = False, strip_tracking: bool = False,
    keep_text: bool = False, **extra: Any,
) -> ParsedPage:  # fmt: skip
    """The page's values from the Lexbor tree; :class:`TooDeep` for a pathological page."""
    tree = Tree(text)
    title, reader = tree.read(url, sort_query=sort_query, strip_tracking=strip_tracking)
    visible, kept = tree.texts(keep_text)
    return reader.page(title=title, digest=content_hash(visible), text=kept, **extra)
