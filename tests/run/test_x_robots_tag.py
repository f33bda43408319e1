"""Issue 15: ``X-Robots-Tag`` has the effect of ``<meta name=robots>``, for our user agent.

A real loopback server sends the headers (repeated ones too); the database and the server's
request log say what the crawl did: ``fetches.noindex``, links recorded, not followed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.crawlkit import crawl, query
from tests.fetch.test_politeness import links_page, url_states
from tests.mockserver.context import HTML, RequestContext

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Tagged:
    """A page with a link to ``<path>/next``, sent with one ``X-Robots-Tag`` per value."""

    title: str
    values: Sequence[str]
    meta: str = ""

    def __call__(self, ctx: RequestContext) -> None:
        body = links_page(self.title, [f"/{self.title}/next"], self.meta).body
        data = body.encode() if isinstance(body, str) else body
        h = ctx.handler
        h.send_response(200)
        h.send_header("Content-Type", HTML)
        for value in self.values:
            h.send_header("X-Robots-Tag", value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        ctx.headers_sent = True
        ctx.write(data)


# title -> (X-Robots-Tag values, noindex expected, its link followed); the user agent is
# the default "crawler/0.1", so the product token is "crawler".
CASES: dict[str, tuple[list[str], bool, bool]] = {
    "plain": ([], False, True),
    "noindex": (["noindex"], True, True),
    "nofollow": (["nofollow"], False, False),
    "none": (["none"], True, False),
    "list": (["noarchive, NOINDEX, NoFollow"], True, False),
    "several": (["noarchive", "noindex", "nofollow"], True, False),
    "otherbot": (["otherbot: noindex, nofollow"], False, True),
    "ours": (["Crawler: nofollow", "otherbot: noindex"], False, False),
    "split": (["otherbot: noindex, crawler: nofollow"], False, False),
    "valued": (["unavailable_after: 25 Jun 2010 15:00:00 PST", "max-snippet: 20"], False, True),
}


@pytest.mark.parametrize("parse_processes", [0, 1], ids=["in-thread", "parser-process"])
def test_x_robots_tag_is_the_meta_tag_in_a_header(
    site_server, tmp_path: Path, parse_processes: int
) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add("/", links_page("root", [f"/{t}" for t in [*CASES, "meta"]]))
    for title, (values, _, _) in CASES.items():
        srv.site.add(f"/{title}", Tagged(title, values))
        srv.site.add(f"/{title}/next", links_page(f"{title} next", []))
    # Header and meta tag add up: the meta's noindex and the header's nofollow.
    srv.site.add("/meta", Tagged("meta", ["nofollow"], '<meta name="robots" content="noindex">'))
    srv.site.add("/meta/next", links_page("meta next", []))
    settings = {"crawl": {"parse_processes": parse_processes}}
    assert crawl(tmp_path, [srv.url("/")], settings=settings) == 0
    db = tmp_path / "crawl.db"
    noindex = dict(query(db, "select url, noindex from pages"))
    states = url_states(db)
    links = set(
        query(
            db,
            "select s.url, d.url from links l join urls s on s.id = l.src_url_id "
            "join urls d on d.id = l.dst_url_id",
        )
    )
    expected = {**CASES, "meta": ([], True, False)}
    for title, (_, want_noindex, followed) in expected.items():
        page, target = srv.url(f"/{title}"), srv.url(f"/{title}/next")
        assert noindex[page] == want_noindex, title
        assert (page, target) in links, title  # recorded either way
        assert len(srv.requests_for(f"/{title}/next")) == (1 if followed else 0), title
        assert states[target] == ("done" if followed else "excluded"), title


def test_agent_prefix_matches_the_configured_user_agent(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add("/", Tagged("root", ["mybot: noindex, nofollow", "crawler: nofollow"]))
    srv.site.add("/root/next", links_page("next", []))
    settings = {"crawl": {"user_agent": "MyBot/2.0 (+https://example.com/bot)"}}
    assert crawl(tmp_path, [srv.url("/")], settings=settings) == 0
    db = tmp_path / "crawl.db"
    assert query(db, "select noindex from pages where url = ?", srv.url("/")) == [(1,)]
    assert srv.requests_for("/root/next") == []
    assert {r.headers.get("User-Agent") for r in srv.log} == {
        "MyBot/2.0 (+https://example.com/bot)"
    }


@dataclass(frozen=True)
class TaggedFile:
    """A PDF sent with ``X-Robots-Tag`` values: the header is all such a file can say."""

    values: Sequence[str]

    def __call__(self, ctx: RequestContext) -> None:
        data = b"%PDF-1.4\n%%EOF\n"
        h = ctx.handler
        h.send_response(200)
        h.send_header("Content-Type", "application/pdf")
        for value in self.values:
            h.send_header("X-Robots-Tag", value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        ctx.headers_sent = True
        ctx.write(data)


def test_x_robots_tag_noindex_on_a_file_nothing_parses(site_server, tmp_path: Path) -> None:
    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add("/", links_page("root", ["/hidden.pdf", "/other.pdf", "/theirs.pdf"]))
    srv.site.add("/hidden.pdf", TaggedFile(["noindex"]))
    srv.site.add("/other.pdf", TaggedFile([]))
    srv.site.add("/theirs.pdf", TaggedFile(["otherbot: noindex"]))
    assert crawl(tmp_path, [srv.url("/")]) == 0
    rows = query(
        tmp_path / "crawl.db",
        "select url, noindex, content_type from pages where url like '%.pdf' order by url",
    )
    assert rows == [
        (srv.url("/hidden.pdf"), 1, "application/pdf"),
        (srv.url("/other.pdf"), 0, "application/pdf"),
        (srv.url("/theirs.pdf"), 0, "application/pdf"),
    ]
