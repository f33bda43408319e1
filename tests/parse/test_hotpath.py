"""The hot path (Lexbor) reads the same values whether or not an extraction rule also builds a
BeautifulSoup tree, so adding a rule never makes a page look changed. Conformance to the HTML
standard is tests/parse/test_oracle.py."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.parse.lexbor import TooDeep, squash
from crawler.parse.soup import parse_html
from tests.crawlkit import crawl_in_subprocess, query
from tests.mockserver.behaviours import Page
from tests.mockserver.site import Site

URL = "http://h.example/dir/page.html"


def _with_rules(body: bytes, charset: str | None = None, **kw: bool):
    # An extractor forces the BeautifulSoup path; it extracts nothing.
    return parse_html(body, URL, charset=charset, extract=lambda soup: (None, ()), **kw)


def _fields(page):
    return (
        page.title,
        page.links,
        page.canonical_url,
        page.noindex,
        page.nofollow,
        page.content_hash,
        page.text,
    )


def _generated(n: int) -> list[bytes]:
    rng = random.Random(4)
    words = ("alpha", "beta", "gamma", "delta", "café", "naïve", "東京", "<b>b</b>", "&amp;")
    pages = []
    for i in range(n):
        links = "".join(
            f'<a href="{rng.choice(["/", "../x", "y.html#f", "http://o.example/z", "mailto:a@b"])}'
            f'{i}" rel="{rng.choice(["", "nofollow", "external NoFollow"])}">l</a>'
            for _ in range(rng.randint(0, 12))
        )
        body = " ".join(rng.choices(words, k=80))
        head = rng.choice(
            [
                "",
                "<base href='/sub/'>",
                "<meta name=robots content='noindex'>",
                "<link rel=canonical href='/c'>",
                "<meta charset='utf-8'>",
            ]
        )
        extras = rng.choice(
            [
                "",
                "<script>var a='<a href=/no>';</script>",
                "<!-- c -->",
                "<noscript><p>n</p></noscript>",
                "<nav>menu</nav><footer>f</footer>",
            ]
        )
        pages.append(
            f"<html><head><title> T {i} </title>{head}</head><body>{extras}<p>{body}</p>"
            f"{links}</body></html>".encode()
        )
    return pages


HOSTILE = [
    b"<title>caf\xe9</title><p>windows-1252</p>",
    b"\xef\xbb\xbf<title>BOM</title><p>h\xc3\xa9</p>",
    b"\xff\xfe<\x00t\x00i\x00t\x00l\x00e\x00>\x00U\x00<\x00/\x00t\x00i\x00t\x00l\x00e\x00>\x00",
    b"<?xml version='1.0' encoding='utf-8'?><html><body><a href='/x'>x</a></body></html>",
    b"<p>unclosed <div><a href=a>a<a href=b>b",
    b"<title>a</title><title>b</title>",
    b"<meta name=ROBOTS content='NONE'><a href='/q'>q</a>",
]


@pytest.mark.parametrize("body", _generated(150) + HOSTILE)
def test_values_do_not_depend_on_extraction_rules(body: bytes) -> None:
    assert _fields(parse_html(body, URL, keep_text=True)) == _fields(
        _with_rules(body, keep_text=True)
    )


def test_header_charset_is_honoured_on_both_paths() -> None:
    body = "<title>Ärger</title>".encode("iso-8859-1")
    assert parse_html(body, URL, charset="iso-8859-1").title == "Ärger"
    assert _with_rules(body, "iso-8859-1").title == "Ärger"


def test_pages_lxml_could_not_read_are_read_whole() -> None:
    """What libxml2 dropped (below depth 256) or refused (NUL) the standard's parsing keeps."""
    deep = b"<div>" * 3000 + b"<a href='/deep'>d</a>" + b"</div>" * 3000
    assert [link.url for link in parse_html(deep, URL).links] == ["http://h.example/deep"]
    page = parse_html(b"<title>a\x00b</title><a href=/n\x00>x</a>", URL)
    assert page.title == "a\ufffdb"
    assert [link.url for link in page.links] == ["http://h.example/n%EF%BF%BD"]


_MARKUP = st.lists(
    st.sampled_from(
        [*"<>/=\"' abcpt!-&;#é東\n", "<a href='", "<p>", "<title>", "</a>", "<!--", "-->"]
    ),
    max_size=80,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(_MARKUP)
def test_rules_do_not_change_values_on_any_markup(markup: str) -> None:
    body = markup.encode("utf-8")
    assert _fields(parse_html(body, URL)) == _fields(_with_rules(body))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_never_raises_on_any_bytes(body: bytes) -> None:
    assert _fields(parse_html(body, URL)) == _fields(_with_rules(body))


def test_squash_is_the_regex_it_replaces() -> None:
    """``str.split`` and the regex ``\\s`` must agree on every code point, or stored content
    hashes would change and every page would look changed on the next recrawl."""
    ws = re.compile(r"\s")
    assert [
        c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace() != bool(ws.match(c))
    ] == []
    sample = " \u00a0a\u2003 b\n\x1c\x1fc\u3000 \u200bd  "
    assert squash(sample) == re.sub(r"\s+", " ", sample).strip()


def test_pathological_nesting_is_refused_not_parsed() -> None:
    """The standard's tree construction is quadratic in depth (100,000 ``<div>``: 22 s in
    Lexbor): such a page is refused before parsing; stray end tags cannot hide the depth, and
    many void elements are no depth at all."""
    with pytest.raises(TooDeep):
        parse_html(b"<div>" * 100_000, URL)
    with pytest.raises(TooDeep):
        parse_html(b"</x>" * 100_000 + b"<b>" * 30_000, URL)
    assert len(parse_html(b"<br><img src=x>" * 30_000 + b"<a href=/a>", URL).links) == 1
    assert len(parse_html(b"<p>a</p>" * 30_000 + b"<a href=/a>", URL).links) == 1
    assert len(parse_html(b"<div>" * 10_000 + b"<a href=/a>", URL).links) == 1


def test_a_crawl_records_a_too_deep_page_as_a_parse_error(site_server: Any, tmp_path: Path) -> None:
    site = Site()
    site.add(
        "/", Page('<title>Start</title><a href="/deep.html">deep</a><a href="/ok.html">ok</a>')
    )
    site.add("/deep.html", Page("<div>" * 100_000 + '<a href="/never.html">x</a>'))
    site.add("/ok.html", Page("<title>OK</title>"))
    srv = site_server(site)
    done = crawl_in_subprocess(tmp_path, [srv.url("/")])
    assert done.returncode == 0, done.stderr
    db = tmp_path / "crawl.db"
    rows = query(
        db,
        "select u.url, u.state, e.kind, e.message from urls u"
        " left join errors e on e.url_id = u.id",
    )
    assert sorted(rows) == [
        (srv.url("/"), "done", None, None),
        (
            srv.url("/deep.html"),
            "done",
            "parse",
            "TooDeep: page nests deeper than 20,000 elements: not parsed",
        ),
        (srv.url("/ok.html"), "done", None, None),
    ]


def test_a_crawl_of_the_news_page_stores_the_links_a_browser_shows(
    site_server: Any, tmp_path: Path
) -> None:
    """The theme writes ``</head></html>`` before ``<body>``: libxml2 dropped the body."""
    site = Site()
    site.add(
        "/",
        Page(
            "<!DOCTYPE html><html><head><title>News</title></head></html><body>"
            "<nav><a href=/a.html>a</a></nav><template><a href=/tpl.html>t</a></template>"
            "<svg><a href=/svg.html>s</a></svg><article><a href=/b.html>b</a></article></body>"
        ),
    )
    site.add("/a.html", Page("<title>A</title>"))
    site.add("/b.html", Page("<title>B</title>"))
    srv = site_server(site)
    done = crawl_in_subprocess(tmp_path, [srv.url("/")])
    assert done.returncode == 0, done.stderr
    rows = query(
        tmp_path / "crawl.db",
        "select d.url from links l join urls s on s.id = l.src_url_id"
        " join urls d on d.id = l.dst_url_id where s.url = ? order by d.url",
        srv.url("/"),
    )
    assert rows == [(srv.url("/a.html"),), (srv.url("/b.html"),)]
