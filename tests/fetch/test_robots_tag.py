"""X-Robots-Tag values as Google documents them: lists, several headers, agent prefixes."""

from __future__ import annotations

import pytest

from crawler.fetch.robots_tag import header_directives

BOTH = frozenset({"noindex", "nofollow"})
NOINDEX = frozenset({"noindex"})
NOFOLLOW = frozenset({"nofollow"})
NOTHING: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["noindex"], NOINDEX),
        (["NoFollow"], NOFOLLOW),
        (["none"], BOTH),
        (["noindex, nofollow"], BOTH),
        (["noarchive", "nofollow", "noindex,nosnippet"], BOTH),  # several headers add up
        (["all"], NOTHING),
        ([""], NOTHING),
        (["otherbot: noindex, nofollow"], NOTHING),  # another crawler's
        (["testbot: nofollow", "otherbot: noindex"], NOFOLLOW),
        (["TestBot: none"], BOTH),  # the agent is matched case-insensitively
        (["testbot:noindex"], NOINDEX),
        (["testbotx: noindex", "xtestbot: noindex"], NOTHING),  # whole tokens only
        (["otherbot: noindex, testbot: nofollow"], NOFOLLOW),  # a new agent inside one header
        (["testbot: noindex, otherbot: nofollow"], NOINDEX),
        (["noindex", "otherbot: nofollow"], NOINDEX),  # no agent: for every crawler
        # Directives with a value are not agent prefixes, and their colons change nothing.
        (["unavailable_after: 25 Jun 2010 15:00:00 PST"], NOTHING),
        (["unavailable_after: Friday, 25-Jun-10 15:00:00 PST, noindex"], NOINDEX),
        (["max-snippet: 20, nofollow"], NOFOLLOW),
        (["max-image-preview: large", "max-video-preview: -1, noindex"], NOINDEX),
        (["testbot: unavailable_after: 25 Jun 2010 15:00:00 PST, nofollow"], NOFOLLOW),
        (["otherbot: unavailable_after: 25 Jun 2010 15:00:00 PST, nofollow"], NOTHING),
    ],
)
def test_directives_for_testbot(values: list[str], expected: frozenset[str]) -> None:
    headers = [("X-Robots-Tag", v) for v in values]
    assert header_directives(headers, "testbot") == expected


def test_other_headers_and_names_in_any_case() -> None:
    headers = [("x-robots-tag", "noindex"), ("X-ROBOTS-TAG", "nofollow"), ("Robots", "none")]
    assert header_directives(headers, "testbot") == BOTH
    assert header_directives([("Link", "noindex")], "testbot") == NOTHING


def test_without_a_token_only_directives_for_everyone_apply() -> None:
    headers = [("X-Robots-Tag", "testbot: noindex"), ("X-Robots-Tag", "nofollow")]
    assert header_directives(headers, None) == NOFOLLOW
