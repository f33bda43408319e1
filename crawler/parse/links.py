"""Which of a page's links the crawl follows: the one rule, shared by the fetcher threads and
the parser processes (:mod:`crawler.parse.processes`), so both decide alike.

Kept apart from :mod:`crawler.run.work` so a parser process imports only what parsing needs (no
requests, no database).
"""

from __future__ import annotations

from dataclasses import dataclass

from crawler.records import NewLink, ParsedPage
from crawler.urls import Scope, host_key


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """What the worker needs to decide which links to follow."""

    scope: Scope
    max_depth: int = 0
    sort_query: bool = False
    strip_tracking: bool = False
    follow_nofollow: bool = False


def follow_links(policy: LinkPolicy, depth: int, page: ParsedPage) -> tuple[NewLink, ...]:
    """The page's links, each with its host and whether the frontier should fetch it (in scope,
    not too deep, not nofollow unless the crawl follows those)."""
    depth_ok = policy.max_depth <= 0 or depth + 1 <= policy.max_depth
    may_follow = depth_ok and not page.nofollow
    follow_nofollow, allows = policy.follow_nofollow, policy.scope.allows
    out = []
    for url, nofollow in page.links:
        try:
            host = host_key(url)
        except ValueError:
            continue
        follow = may_follow and (follow_nofollow or not nofollow) and allows(url)
        out.append(NewLink(url, host, nofollow, follow))
    return tuple(out)
