"""HTML → title, links, canonical, meta robots, content hash: the one entry point. Pure: bytes
in, values out.

The bytes are decoded in the HTML standard's order (:mod:`crawler.parse.charset`), the text is
parsed by Lexbor as a browser parses it (:mod:`crawler.parse.lexbor`), and every value the
crawl needs is read from that tree. BeautifulSoup (lxml backend) builds a second tree only when
extraction rules or the hook need one (:mod:`crawler.parse.extract`): their CSS selectors run
on it. Links are resolved against ``<base href>`` (itself resolved against the page URL) per the
WHATWG URL Standard, canonicalized, fragments dropped and deduplicated; only http(s) links are
kept. The parser raises only for a page that nests deeper than
:data:`crawler.parse.lexbor.MAX_DEPTH` (a ``parse`` error row); any other input yields values.

``content_hash`` is the SHA-256 of the page's visible text, normalized so that changes nobody
sees do not count as changes: comments, ``<script>``, ``<style>``, ``<noscript>`` and
``<template>`` are left out, and every run of whitespace becomes one space.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning

from crawler.parse.charset import decode_html
from crawler.parse.common import content_hash
from crawler.parse.lexbor import Tree, read_page
from crawler.records import ParsedPage

warnings.filterwarnings("ignore", category=MarkupResemblesLocatorWarning)

Extract = Callable[[BeautifulSoup], tuple[dict[str, Any] | None, tuple[str, ...]]]


def parse_html(
    body: bytes,
    url: str,
    *,
    charset: str | None = None,
    sort_query: bool = False,
    strip_tracking: bool = False,
    keep_text: bool = False,
    extract: Extract | None = None,
) -> ParsedPage:
    """Parse one HTML page fetched from ``url`` (the final URL, after redirects).

    ``charset`` is the one the ``Content-Type`` header declared: a byte-order mark wins over
    it, it wins over ``<meta charset>`` (see :func:`crawler.parse.charset.decode_html`).
    ``keep_text`` adds the page's text; ``extract`` runs on a BeautifulSoup tree of the same
    text (see :mod:`crawler.parse.extract`).
    """
    text = decode_html(body, charset)
    if extract is None:
        return read_page(
            text, url, sort_query=sort_query, strip_tracking=strip_tracking, keep_text=keep_text
        )
    # Everything the crawler needs is read from the Lexbor tree before the extractor runs (a
    # hook may change the soup), so the values are the same with or without rules.
    tree = Tree(text)
    title, reader = tree.read(url, sort_query=sort_query, strip_tracking=strip_tracking)
    visible, kept = tree.texts(keep_text)
    data, problems = extract(BeautifulSoup(text, "lxml"))
    return reader.page(
        title=title, digest=content_hash(visible), text=kept, data=data, extract_errors=problems
    )
