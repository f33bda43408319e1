"""``parse_html``: bytes in, values out; never raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.parse.soup import parse_html
from crawler.records import Link

PAGE = "http://example.com/dir/page.html"


def parse(html: str | bytes, url: str = PAGE, **kwargs: object) -> object:
    body = html.encode() if isinstance(html, str) else html
    return parse_html(body, url, **kwargs)  # type: ignore[arg-type]


def links(html: str, url: str = PAGE) -> list[str]:
    return [link.url for link in parse_html(html.encode(), url).links]


# -- title -------------------------------------------------------------------------------


def test_title_whitespace_collapsed() -> None:
    assert parse_html(b"<title>\n  Hello \t\n World  </title>", PAGE).title == "Hello World"


def test_title_missing_or_empty_is_none() -> None:
    assert parse_html(b"<p>no title</p>", PAGE).title is None
    assert parse_html(b"<title>  </title>", PAGE).title is None


def test_title_entities_decoded() -> None:
    assert parse_html(b"<title>Tom &amp; Jerry &eacute;&#233;</title>", PAGE).title == (
        "Tom & Jerry éé"
    )


# -- links -------------------------------------------------------------------------------


def test_links_resolved_against_the_page() -> None:
    html = '<a href="other.html">a</a><a href="/root">b</a><a href="../up">c</a>'
    assert links(html) == [
        "http://example.com/dir/other.html",
        "http://example.com/root",
        "http://example.com/up",
    ]


def test_links_from_a_and_area_only() -> None:
    html = (
        '<link rel="stylesheet" href="/style.css"><script src="/s.js"></script>'
        '<img src="/i.png"><a href="/a">a</a><map><area href="/area"></map><a>no href</a>'
    )
    assert links(html) == ["http://example.com/a", "http://example.com/area"]


def test_base_href_absolute() -> None:
    html = '<base href="http://other.example/base/"><a href="x">x</a>'
    assert links(html) == ["http://other.example/base/x"]


def test_base_href_relative_is_resolved_against_the_page() -> None:
    html = '<base href="/sub/"><a href="x">x</a>'
    assert links(html) == ["http://example.com/sub/x"]


def test_fragments_dropped_and_duplicates_collapsed_in_first_seen_order() -> None:
    html = '<a href="/b#one">b</a><a href="/a">a</a><a href="/b#two">b</a><a href="/a#x">a</a>'
    assert links(html) == ["http://example.com/b", "http://example.com/a"]


def test_fragment_only_link_is_the_page_itself() -> None:
    assert links('<a href="#top">top</a>') == [PAGE]


def test_only_http_and_https_kept() -> None:
    html = (
        '<a href="mailto:a@example.com">m</a><a href="javascript:void(0)">j</a>'
        '<a href="data:text/html,hi">d</a><a href="ftp://example.com/f">f</a>'
        '<a href="tel:+123">t</a><a href="https://secure.example/">s</a>'
    )
    assert links(html) == ["https://secure.example/"]


def test_links_are_canonical() -> None:
    assert links('<a href="HTTP://Example.COM:80/a/./b/../c">x</a>') == ["http://example.com/a/c"]


def test_query_options_are_passed_through() -> None:
    html = b'<a href="/p?b=2&utm_source=x&a=1">x</a>'
    page = parse_html(html, PAGE, sort_query=True, strip_tracking=True)
    assert [link.url for link in page.links] == ["http://example.com/p?a=1&b=2"]


def test_rel_nofollow_recorded() -> None:
    html = (
        '<a href="/f">f</a><a rel="nofollow" href="/n">n</a><a rel="external NoFollow" href="/e">'
    )
    assert parse_html(html.encode(), PAGE).links == (
        Link("http://example.com/f", nofollow=False),
        Link("http://example.com/n", nofollow=True),
        Link("http://example.com/e", nofollow=True),
    )


def test_linked_with_and_without_nofollow_is_followable() -> None:
    for html in (
        '<a rel="nofollow" href="/x">1</a><a href="/x">2</a>',
        '<a href="/x">1</a><a rel="nofollow" href="/x">2</a>',
    ):
        assert parse_html(html.encode(), PAGE).links == (Link("http://example.com/x", False),)


def test_no_links() -> None:
    assert parse_html(b"<p>plain</p>", PAGE).links == ()


# -- meta robots and canonical -----------------------------------------------------------


def test_meta_robots() -> None:
    cases = {
        '<meta name="robots" content="nofollow">': (False, True),
        '<meta name="robots" content="noindex">': (True, False),
        '<meta name="robots" content="none">': (True, True),
        '<meta name="ROBOTS" content="NOINDEX, nofollow">': (True, True),
        '<meta name="robots" content="index, follow">': (False, False),
        '<meta name="googlebot" content="noindex">': (False, False),
        "": (False, False),
    }
    for html, (noindex, nofollow) in cases.items():
        page = parse_html(html.encode(), PAGE)
        assert (page.noindex, page.nofollow) == (noindex, nofollow), html


def test_meta_nofollow_still_reports_links() -> None:
    page = parse_html(b'<meta name="robots" content="nofollow"><a href="/x">x</a>', PAGE)
    assert page.nofollow
    assert [link.url for link in page.links] == ["http://example.com/x"]


def test_canonical_resolved() -> None:
    page = parse_html(b'<link rel="canonical" href="/canon#frag">', PAGE)
    assert page.canonical_url == "http://example.com/canon"


def test_canonical_uses_base_and_is_none_when_missing() -> None:
    html = b'<base href="http://b.example/d/"><link rel="Canonical" href="c">'
    assert parse_html(html, PAGE).canonical_url == "http://b.example/d/c"
    assert parse_html(b'<link rel="alternate" href="/x">', PAGE).canonical_url is None


# -- content hash ------------------------------------------------------------------------


def digest(html: str) -> str | None:
    return parse_html(html.encode(), PAGE).content_hash


def test_hash_ignores_whitespace_comments_scripts_and_styles() -> None:
    plain = digest("<html><body><p>Hello world</p></body></html>")
    assert plain is not None
    assert len(plain) == 64
    for variant in (
        "<html><body>\n  <p>  Hello\n\n   world </p>\n</body></html>",
        "<html><body><!-- a comment --><p>Hello world</p></body></html>",
        "<html><body><p>Hello world</p><script>var x = 1;</script></body></html>",
        "<html><head><style>p { color: red }</style></head><body><p>Hello world</p></body></html>",
        "<html><body><p>Hello world</p><script>var y = '<p>other</p>';</script></body></html>",
    ):
        assert digest(variant) == plain, variant


def test_hash_ignores_noscript_and_template_content() -> None:
    plain = digest("<body><p>Hello</p></body>")
    assert digest("<body><p>Hello</p><noscript>Enable JavaScript</noscript></body>") == plain
    assert digest("<body><p>Hello</p><noscript><p>Enable JavaScript</p></noscript></body>") == plain
    assert digest("<body><p>Hello</p><template><div>later</div></template></body>") == plain


def test_hash_changes_with_visible_text() -> None:
    assert digest("<p>Hello world</p>") != digest("<p>Hello there</p>")
    assert digest("<p>Hello world</p>") != digest("<p>Hello world</p><p>!</p>")


def test_hash_ignores_the_script_but_not_the_text_around_it() -> None:
    assert digest("<p>a</p><script>x</script>") != digest("<p>b</p><script>x</script>")


# -- charset -----------------------------------------------------------------------------


def test_header_charset_used() -> None:
    body = "<title>café</title>".encode("windows-1252")
    assert parse_html(body, PAGE, charset="windows-1252").title == "café"


def test_header_charset_wins_over_meta() -> None:
    body = '<meta charset="windows-1252"><title>café</title>'.encode()
    assert parse_html(body, PAGE, charset="utf-8").title == "café"


def test_meta_charset_used_without_header_charset() -> None:
    body = '<meta charset="windows-1252"><title>café</title>'.encode("windows-1252")
    assert parse_html(body, PAGE).title == "café"
    body = '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"><title>café'
    assert parse_html(body.encode("latin-1"), PAGE).title == "café"


def test_utf8_bom() -> None:
    body = "\ufeff<title>café</title>".encode()
    assert parse_html(body, PAGE).title == "café"


def test_bom_wins_over_header_charset() -> None:
    body = "\ufeff<title>café</title>".encode()
    assert parse_html(body, PAGE, charset="windows-1252").title == "café"
    body16 = "\ufeff<title>café</title>".encode("utf-16-le")
    assert parse_html(body16, PAGE, charset="windows-1252").title == "café"


def test_unknown_header_charset_does_not_raise() -> None:
    page = parse_html("<title>café</title>".encode(), PAGE, charset="no-such-charset")
    assert page.title is not None


# -- garbage in, no exception out --------------------------------------------------------


def test_garbage_never_raises() -> None:
    for body in (
        b"",
        b"\x00\x00\x00",
        b"<a href='/x\x00y'>nul</a>\x00",
        b"<html><body><a href=/x><div><p><table><tr><td",
        b"<div>" * 2000 + b'<a href="/deep">deep</a>',
        b"\xff\xfe\x00\xd8",
        b"<a href='http://[::1'>bad ipv6</a><a href='http://exa mple.com/'>space</a>",
        b"<base href='javascript:alert(1)'><a href='x'>x</a>",
        b"<title>",
        b"<!--",
        b"<![CDATA[",
    ):
        parse_html(body, PAGE)


def test_deeply_nested_link_is_found() -> None:
    page = parse_html(b"<div>" * 2000 + b'<a href="/deep">deep</a>', PAGE)
    assert [link.url for link in page.links] == ["http://example.com/deep"]


def test_bad_page_url_does_not_raise() -> None:
    page = parse_html(b"<title>t</title><a href='/x'>x</a>", "not a url")
    assert page.title == "t"
    assert page.links == ()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(body: bytes) -> None:
    page = parse_html(body, PAGE)
    assert all(link.url.startswith(("http://", "https://")) for link in page.links)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(["<a href=", "'", '"', "/x", "#", "<base href=", ">", "</a>", "\x00", "é"])
        | st.text(max_size=5),
        max_size=40,
    ).map("".join),
    st.sampled_from([None, "utf-8", "windows-1252", "bogus"]),
)
def test_random_markup_never_raises(html: str, charset: str | None) -> None:
    parse_html(html.encode("utf-8", "surrogatepass"), PAGE, charset=charset)
