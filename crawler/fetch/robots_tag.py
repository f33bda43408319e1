"""``X-Robots-Tag``: the header form of ``<meta name=robots>``, read as Google documents it.

Each header's value is a comma-separated list of directives (``noindex``, ``nofollow``,
``none`` = both; the rest, ``all``, ``noarchive``, ``max-snippet: 20``, ... change nothing for
a crawler and are ignored). A header may start with a user agent and a colon
(``X-Robots-Tag: otherbot: noindex``): its directives then apply only to that crawler. Ours is
matched on the user agent's product token (:func:`crawler.checks.robots_product_token`, as for
robots.txt), case-insensitively; directives without an agent apply to every crawler. Several
headers add up, and so do conflicting ones: the more restrictive wins (Google: "in case of
conflicting robots rules, the more restrictive rule applies").

An agent prefix is a token followed by ``:`` *before* a directive, and not a directive's own
name: ``unavailable_after: 25 Jun 2010 15:00:00 PST`` and ``max-snippet: 20`` are directives
with a value, not agents. An element of the list may start a new agent's part
(``googlebot: noindex, otherbot: nofollow``), as a second header would.

Pure: no I/O. Must not: decide anything else about the page (the worker combines this with the
parsed meta robots).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["HEADER", "header_directives"]

HEADER = "x-robots-tag"

_AGENT = re.compile(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*:(.*)\Z", re.DOTALL)
_VALUED = frozenset({"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"})
"""Directives written ``name: value``: their name before a colon is not a user agent."""


def header_directives(headers: Iterable[tuple[str, str]], token: str | None) -> frozenset[str]:
    """The ``noindex``/``nofollow`` directives that ``headers`` (name, value pairs, repeated
    names kept) give the crawler whose product token is ``token`` (``None``: only the ones
    for every crawler)."""
    found: set[str] = set()
    ours = None if token is None else token.lower()
    for name, value in headers:
        if name.lower() == HEADER:
            found |= _value_directives(value, ours)
    if "none" in found:
        found |= {"noindex", "nofollow"}
    return frozenset(found & {"noindex", "nofollow"})


def _value_directives(value: str, token: str | None) -> set[str]:
    """One header value's directives that apply to ``token``."""
    found: set[str] = set()
    applies = True  # no agent yet: for everyone
    for element in value.split(","):
        match = _AGENT.match(element)
        if match is not None and match[1].lower() not in _VALUED:
            applies = match[1].lower() == token
            element = match[2]
        if applies:
            found.add(element.strip().lower())
    return found
