"""robots.txt: RFC 9309's own examples against Protego, our reading of each answer, and
``fetch_robots`` against a real server on 127.0.0.1.

The RFC examples are quoted from RFC 9309 (§2.2.1, §2.2.2, §2.2.3, §5.1, §5.2); where Protego
disagrees with the RFC, a test says so and pins what this project does about it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from crawler.config import FetchSettings
from crawler.errors import ErrorKind
from crawler.fetch.fetcher import Fetcher
from crawler.fetch.robots import (
    ROBOTS_MAX_BYTES,
    RobotsPolicy,
    fetch_robots,
    policy_from_cache,
    policy_from_response,
    product_token,
    robots_fetch_settings,
)
from tests.mockserver import Oversized, Page, Redirect, Site, SiteServerFactory, Slow

UA = "crawler/0.1"
BASE = "https://www.example.com"


def policy(text: str, user_agent: str = UA) -> RobotsPolicy:
    return policy_from_cache(user_agent, text)


def allowed(text: str, path: str, user_agent: str = UA) -> bool:
    return policy(text, user_agent).can_fetch(BASE + path)


# -- RFC 9309 examples ------------------------------------------------------------------------

RFC_5_1 = """\
User-Agent: *
Disallow: *.gif$
Disallow: /example/
Allow: /publications/

User-Agent: foobot
Disallow:/
Allow:/example/page.html
Allow:/example/allowed.gif

User-Agent: barbot
User-Agent: bazbot
Disallow: /example/page.html

User-Agent: quxbot
"""


@pytest.mark.parametrize(
    ("agent", "path", "expected"),
    [
        # foobot: its own group only.
        ("foobot/2", "/", False),
        ("foobot/2", "/example/page.html", True),
        ("foobot/2", "/example/allowed.gif", True),
        ("foobot/2", "/example/other.gif", False),
        ("foobot/2", "/publications/", False),
        # barbot and bazbot share one group.
        ("barbot", "/example/page.html", False),
        ("bazbot", "/example/page.html", False),
        ("bazbot", "/example/other.html", True),
        ("bazbot", "/a.gif", True),
        # quxbot: an empty group, so nothing is disallowed (and it does not fall back to *).
        ("quxbot", "/example/page.html", True),
        ("quxbot", "/a.gif", True),
        # anyone else: the * group.
        ("otherbot", "/a.gif", False),
        ("otherbot", "/a.gif?x", True),  # $ anchors the end
        ("otherbot", "/example/x", False),
        ("otherbot", "/publications/x", True),
        ("otherbot", "/", True),
    ],
)
def test_rfc_5_1_simple_example(agent: str, path: str, expected: bool) -> None:
    assert allowed(RFC_5_1, path, agent) is expected


def test_rfc_5_2_longest_match() -> None:
    text = "User-Agent: foobot\nAllow: /example/page/\nDisallow: /example/page/disallowed.gif\n"
    assert allowed(text, "/example/page/", "foobot")
    assert allowed(text, "/example/page/ok.gif", "foobot")
    assert not allowed(text, "/example/page/disallowed.gif", "foobot")


@pytest.mark.parametrize(
    "text",
    ["User-agent: *\nAllow: /p\nDisallow: /p\n", "User-agent: *\nDisallow: /p\nAllow: /p\n"],
)
def test_rfc_2_2_2_equivalent_allow_and_disallow_allow_wins(text: str) -> None:
    assert allowed(text, "/p")
    assert allowed(text, "/page")


def test_rfc_2_2_1_groups_for_one_agent_are_merged() -> None:
    text = (
        "user-agent: ExampleBot\ndisallow: /foo\ndisallow: /bar\n\n"
        "user-agent: ExampleBot\ndisallow: /baz\n"
    )
    for path in ("/foo", "/bar", "/baz"):
        assert not allowed(text, path, "ExampleBot/1.0")
    assert allowed(text, "/qux", "ExampleBot/1.0")


def test_rfc_2_2_1_product_token_matching_is_case_insensitive() -> None:
    assert not allowed("User-agent: CRAWLER\nDisallow: /\n", "/x", "Crawler/0.1")


def test_rfc_2_2_1_no_matching_group_and_no_star_means_no_rules() -> None:
    assert allowed("User-agent: otherbot\nDisallow: /\n", "/x")


def test_rfc_2_2_1_user_agent_lines_of_one_group() -> None:
    text = "user-agent: a\ndisallow: /c\n\nuser-agent: e\nuser-agent: f\ndisallow: /g\n"
    assert not allowed(text, "/g", "e")
    assert not allowed(text, "/g", "f")
    assert allowed(text, "/c", "f")
    assert not allowed(text, "/c", "a")


@pytest.mark.parametrize(
    ("rule", "path", "expected"),
    [
        # §2.2.3: "$" designates the end of the match pattern.
        ("/this/path/exactly$", "/this/path/exactly", False),
        ("/this/path/exactly$", "/this/path/exactly/more", True),
        ("/this/path/exactly$", "/this/path/exactly?q", True),
        # §2.2.3: "*" designates 0 or more instances of any character.
        ("/this/*/exactly", "/this/a/b/exactly", False),
        ("/this/*/exactly", "/this//exactly", False),
        ("/this/*/exactly", "/this/exactly", True),
        ("*.gif$", "/a/b.gif", False),
        ("/*.php$", "/index.php?x", True),
        ("/fish*", "/fish.html", False),
        ("/fish*", "/Fish.html", True),
    ],
)
def test_rfc_2_2_3_special_characters(rule: str, path: str, expected: bool) -> None:
    assert allowed(f"User-agent: *\nDisallow: {rule}\n", path) is expected


def test_longest_match_counts_wildcard_patterns_by_length() -> None:
    # Google's documented example: allow: /page vs disallow: /*.html -> /page.html disallowed.
    text = "User-agent: *\nAllow: /page\nDisallow: /*.html\n"
    assert not allowed(text, "/page.html")
    assert allowed(text, "/page")
    text = "User-agent: *\nAllow: /$\nDisallow: /\n"
    assert allowed(text, "/")
    assert not allowed(text, "/page")


@pytest.mark.parametrize(
    ("rule", "path", "expected"),
    [
        # RFC 9309 §2.2.2's table of encodings.
        ("/foo/bar?baz=quz", "/foo/bar?baz=quz", False),
        ("/foo/bar?baz=", "/foo/bar?baz=", False),
        ("/foo/bar/ツ", "/foo/bar/%E3%83%84", False),
        ("/foo/bar/%E3%83%84", "/foo/bar/ツ", False),
        ("/foo/bar/%E3%83%84", "/foo/bar/%e3%83%84", False),
        ("/foo/bar/%62%61%7A", "/foo/bar/baz", False),
        ("/foo/bar/baz", "/foo/bar/%62%61%7A", False),
        # An encoded "/" is not a path separator.
        ("/a%2Fb", "/a/b", True),
        ("/a/b", "/a%2Fb", True),
    ],
)
def test_rfc_2_2_2_percent_encoding_equivalence(rule: str, path: str, expected: bool) -> None:
    assert allowed(f"User-agent: *\nDisallow: {rule}\n", path) is expected


def test_paths_are_case_sensitive() -> None:
    text = "User-agent: *\nDisallow: /Foo\n"
    assert allowed(text, "/foo")
    assert not allowed(text, "/Foo/bar")


def test_rfc_2_2_2_robots_txt_itself_is_always_allowed() -> None:
    assert allowed("User-agent: *\nDisallow: /\n", "/robots.txt")
    assert not allowed("User-agent: *\nDisallow: /\n", "/robots.txt.bak")


def test_empty_disallow_is_no_rule() -> None:
    assert allowed("User-agent: *\nDisallow:\n", "/anything")


def test_rfc_2_2_3_comments() -> None:
    text = "# comment on its own line\nUser-agent: * # trailing\nDisallow: /a # no /b\n"
    assert not allowed(text, "/a")
    assert allowed(text, "/b")


# -- where Protego differs from RFC 9309 -------------------------------------------------------


def test_protego_alone_matches_groups_by_prefix_we_match_exactly() -> None:
    from protego import Protego

    text = "User-agent: crawl\nDisallow: /\n"
    assert Protego.parse(text).can_fetch(BASE + "/x", "crawler") is False  # Protego: prefix
    assert allowed(text, "/x")  # RFC 9309 §2.2.1: the token must equal ours
    assert allowed("User-agent: *crawler\nDisallow: /\n", "/x")
    assert not allowed("User-agent: crawler*\nDisallow: /\n", "/x")


def test_user_agent_line_with_a_version_matches_by_its_product_token() -> None:
    assert not allowed("User-agent: crawler/1.0\nDisallow: /\n", "/x")
    assert not allowed("User-agent: Crawler (+https://example.com/bot)\nDisallow: /\n", "/x")
    assert allowed("User-agent: crawlers\nDisallow: /\n", "/x")


def test_exact_group_beats_star_and_prefix_groups() -> None:
    text = (
        "User-agent: *\nDisallow: /star\n\n"
        "User-agent: crawl\nDisallow: /prefix\n\n"
        "User agent: crawler\nDisallow: /mine\n"
    )
    assert allowed(text, "/star")
    assert allowed(text, "/prefix")
    assert not allowed(text, "/mine")


def test_star_followed_by_text_is_the_star_group() -> None:
    assert not allowed("User-agent: * everyone\nDisallow: /x\n", "/x")


def test_cached_body_is_the_original_text() -> None:
    text = "User-agent: crawl\nDisallow: /\n"
    assert policy(text).body == text


def test_protego_decodes_escaped_reserved_characters_kept() -> None:
    """RFC 9309 §2.2.2 keeps %3F distinct from '?'; Protego does not. Kept (stricter)."""
    assert not allowed("User-agent: *\nDisallow: /a%3Fb\n", "/a?b")


# -- crawl-delay and sitemaps ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("0.5", 0.5), ("0", 0.0), ("-1", None), ("nan", None), ("inf", None), ("x", None)],
)
def test_crawl_delay(value: str, expected: float | None) -> None:
    assert policy(f"User-agent: *\nCrawl-delay: {value}\n").crawl_delay == expected


def test_crawl_delay_comes_from_the_group_that_applies() -> None:
    text = "User-agent: *\nCrawl-delay: 9\n\nUser-agent: crawler\nCrawl-delay: 3\n"
    assert policy(text).crawl_delay == 3.0
    assert policy(text, "other/1").crawl_delay == 9.0
    own_without_delay = "User-agent: *\nCrawl-delay: 9\n\nUser-agent: crawler\nDisallow: /x\n"
    assert policy(own_without_delay).crawl_delay is None


def test_crawl_delay_is_never_negative_or_infinite() -> None:
    for value in ("-0.5", "1e400", "-inf"):
        delay = policy(f"User-agent: *\nCrawl-delay: {value}\n").crawl_delay
        assert delay is None or (math.isfinite(delay) and delay >= 0)


def test_sitemaps_absolute_http_only_in_order_without_duplicates() -> None:
    text = (
        "Sitemap: https://example.com/b.xml\n"
        "User-agent: *\nDisallow:\n"
        "sitemap: http://example.com/a.xml\n"
        "Sitemap: /relative.xml\n"
        "Sitemap: ftp://example.com/c.xml\n"
        "Sitemap: https://example.com/b.xml\n"
    )
    assert policy(text).sitemaps == ("https://example.com/b.xml", "http://example.com/a.xml")


# -- the answer to GET /robots.txt -------------------------------------------------------------


def test_2xx_is_parsed() -> None:
    p = policy_from_response(UA, 200, b"User-agent: *\nDisallow: /private\n")
    assert not p.unreachable
    assert not p.can_fetch(BASE + "/private/x")
    assert p.can_fetch(BASE + "/public")
    assert p.body == "User-agent: *\nDisallow: /private\n"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 451])
def test_4xx_allows_all(status: int) -> None:
    p = policy_from_response(UA, status, b"User-agent: *\nDisallow: /\n")
    assert p.can_fetch(BASE + "/x")
    assert not p.unreachable
    assert p.body == ""


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 599, 100, 600])
def test_5xx_and_429_are_unreachable(status: int) -> None:
    p = policy_from_response(UA, status, None, error=ErrorKind.HTTP_STATUS)
    assert p.unreachable
    assert not p.can_fetch(BASE + "/")
    assert p.body is None


@pytest.mark.parametrize(
    "kind",
    [ErrorKind.DNS, ErrorKind.CONNECT, ErrorKind.TIMEOUT, ErrorKind.TLS, ErrorKind.CONTENT],
)
def test_no_response_is_unreachable(kind: ErrorKind) -> None:
    p = policy_from_response(UA, None, None, error=kind)
    assert p.unreachable
    assert not p.can_fetch(BASE + "/x")


def test_redirect_failure_is_unavailable_so_allow_all() -> None:
    p = policy_from_response(UA, 301, None, error=ErrorKind.REDIRECT)
    assert p.can_fetch(BASE + "/x")
    assert not p.unreachable
    assert p.body == ""


def test_2xx_whose_body_could_not_be_read_is_unreachable() -> None:
    assert policy_from_response(UA, 200, None, error=ErrorKind.TOO_LARGE).unreachable


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"# only comments\n# nothing else\n",
        b"<!doctype html><html><body><h1>Welcome</h1><p>Disallow nothing</p></body></html>",
        bytes(range(256)) * 40,
        b"\0\0\0User-agent: *\0Disallow: /\0",
        b"\xff\xfe garbage \x80\x81",
        b"Disallow: /\nAllow: /x\n",  # rules outside any group
    ],
)
def test_garbage_never_raises_and_allows_all(body: bytes) -> None:
    p = policy_from_response(UA, 200, body)
    assert not p.unreachable
    assert p.can_fetch(BASE + "/x")
    assert p.body is not None
    assert "\0" not in p.body
    assert policy_from_cache(UA, p.body).can_fetch(BASE + "/x")


def test_bom_is_stripped() -> None:
    p = policy_from_response(UA, 200, b"\xef\xbb\xbfUser-agent: *\nDisallow: /x\n")
    assert not p.can_fetch(BASE + "/x")
    assert p.body is not None
    assert not p.body.startswith("\ufeff")


def test_only_the_first_512_kib_are_parsed_and_the_cut_line_is_dropped() -> None:
    head = b"User-agent: *\nDisallow: /first\n"
    cut = b"Disallow: /cut"  # the cap falls right after these bytes
    padding = ROBOTS_MAX_BYTES - len(head) - len(cut) - 1
    body = head + b"#" * padding + b"\n" + cut + b"-in-the-middle-of-this-line\n"
    body += b"Disallow: /after\n"
    assert body[:ROBOTS_MAX_BYTES].endswith(cut)
    p = policy_from_response(UA, 200, body)
    assert not p.can_fetch(BASE + "/first")
    assert p.can_fetch(BASE + "/after")
    assert p.can_fetch(BASE + "/cut")  # "Disallow: /cut" must not survive the cut
    assert p.body is not None
    assert len(p.body.encode()) <= ROBOTS_MAX_BYTES


def test_truncated_flag_drops_the_last_partial_line() -> None:
    p = policy_from_response(UA, 200, b"User-agent: *\nDisallow: /a\nDisallow: /b", truncated=True)
    assert not p.can_fetch(BASE + "/a")
    assert p.can_fetch(BASE + "/b")


def test_policy_from_cache_is_the_same_policy() -> None:
    first = policy_from_response(UA, 200, RFC_5_1.encode())
    assert first.body is not None
    again = policy_from_cache(UA, first.body)
    assert again == first
    for path in ("/", "/a.gif", "/example/x", "/publications/x"):
        assert again.can_fetch(BASE + path) == first.can_fetch(BASE + path)


@pytest.mark.parametrize(
    ("user_agent", "token"),
    [
        ("crawler/0.1", "crawler"),
        ("MyBot", "mybot"),
        ("mybot (+https://x/bot)", "mybot"),  # RFC 9110: a product without a version
        ("mybot/1.0 (+https://x/bot)", "mybot"),
        ("my bot/1.0", "my"),  # two products: the first one's name
        ("my.bot/2", "my.bot"),  # "." is a tchar
        ("bot/1.0\t(tab)", "bot"),
    ],
)
def test_product_token_is_the_first_products_name(user_agent: str, token: str) -> None:
    assert product_token(user_agent) == token


@pytest.mark.parametrize("user_agent", ["/0.1", " mybot", "", "mybot/", "mybot(x)", "b\u00f6t"])
def test_no_product_token_without_a_leading_product(user_agent: str) -> None:
    with pytest.raises(ValueError, match="product token"):
        product_token(user_agent)


def test_a_user_agent_with_a_comment_is_matched_by_its_product_name() -> None:
    text = "User-agent: mybot\nDisallow: /mine\n\nUser-agent: *\nDisallow: /star\n"
    for user_agent in ("mybot (+https://x/bot)", "MyBot/1.0 (+https://x/bot)"):
        assert not allowed(text, "/mine", user_agent)
        assert allowed(text, "/star", user_agent)


def test_a_product_name_with_a_dot_is_named_by_its_group() -> None:
    text = "User-agent: my.bot/3\nDisallow: /mine\n\nUser-agent: my\nDisallow: /other\n"
    assert not allowed(text, "/mine", "my.bot/1.0")
    assert allowed(text, "/other", "my.bot/1.0")
    # Google's reading of a line still holds: "crawler.bot" names "crawler".
    assert not allowed("User-agent: crawler.bot\nDisallow: /\n", "/x")


@pytest.mark.timeout(30)
def test_a_crawl_with_a_commented_user_agent_obeys_its_group(site_server, tmp_path) -> None:
    from tests.crawlkit import crawl
    from tests.fetch.test_politeness import POLITE, layer, links_page

    srv = site_server(hosts=["127.0.0.2"])
    srv.site.add(
        "/robots.txt",
        Page("User-agent: mybot\nDisallow: /private\n", content_type="text/plain"),
    )
    srv.site.add("/", links_page("root", ["/private", "/public"]))
    srv.site.add("/public", links_page("public", []))
    user_agent = "mybot (+https://example.com/bot)"
    settings = layer(POLITE, {"crawl": {"user_agent": user_agent}})
    assert crawl(tmp_path, [srv.url("/")], settings=settings) == 0
    assert sorted(r.path for r in srv.log) == ["/", "/public", "/robots.txt"]
    assert {r.headers.get("User-Agent") for r in srv.log} == {user_agent}


def test_robots_fetch_settings() -> None:
    s = robots_fetch_settings(FetchSettings(retries=3, max_redirects=10))
    assert (s.max_redirects, s.max_body_bytes, s.retries) == (5, ROBOTS_MAX_BYTES, 1)


# -- fetch_robots against a real server --------------------------------------------------------

FAST = FetchSettings(
    connect_timeout_s=2.0,
    read_timeout_s=0.5,
    total_timeout=1.0,
    backoff_base_s=0.0,
    backoff_max_s=0.0,
)


@pytest.fixture
def robots_fetcher() -> Iterator[Callable[..., Fetcher]]:
    made: list[Fetcher] = []

    def make(settings: FetchSettings = FAST) -> Fetcher:
        fetcher = Fetcher(
            robots_fetch_settings(settings), UA, body_types=None, sleep=lambda s: None
        )
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        fetcher.close()


def serve(site_server: SiteServerFactory, behaviour: object, **routes: object) -> str:
    site = Site()
    site.add("/robots.txt", behaviour)  # type: ignore[arg-type]
    for path, other in routes.items():
        site.add("/" + path, other)  # type: ignore[arg-type]
    return site_server(site).base_url()


RULES = "User-agent: *\nDisallow: /private\nCrawl-delay: 2\nSitemap: http://e.test/s.xml\n"


@pytest.mark.timeout(10)
def test_fetch_200_with_rules(site_server, robots_fetcher) -> None:
    host = serve(site_server, Page(RULES, content_type="text/plain"))
    p = fetch_robots(robots_fetcher(), host, UA)
    assert not p.can_fetch(host + "/private/a")
    assert p.can_fetch(host + "/public")
    assert p.crawl_delay == 2.0
    assert p.sitemaps == ("http://e.test/s.xml",)
    assert p.body == RULES


@pytest.mark.timeout(10)
@pytest.mark.parametrize("status", [404, 403])
def test_fetch_4xx_allows_all(site_server, robots_fetcher, status: int) -> None:
    host = serve(site_server, Page("User-agent: *\nDisallow: /\n", status=status))
    p = fetch_robots(robots_fetcher(), host, UA)
    assert p.can_fetch(host + "/x")
    assert (p.unreachable, p.body) == (False, "")


@pytest.mark.timeout(10)
def test_fetch_500_is_unreachable_after_one_retry(site_server, robots_fetcher) -> None:
    site = Site()
    site.add("/robots.txt", Page("oops", status=500))
    server = site_server(site)
    p = fetch_robots(robots_fetcher(), server.base_url(), UA)
    assert p.unreachable
    assert not p.can_fetch(server.url("/x"))
    deadline = time.monotonic() + 2  # the server logs a request just after its response is out
    while len(server.requests_for("/robots.txt")) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server.requests_for("/robots.txt")) == 2


@pytest.mark.timeout(10)
def test_fetch_timeout_is_unreachable(site_server, robots_fetcher) -> None:
    host = serve(site_server, Slow(3.0, Page(RULES)))
    p = fetch_robots(robots_fetcher(replace(FAST, retries=0)), host, UA)
    assert p.unreachable
    assert not p.can_fetch(host + "/public")


@pytest.mark.timeout(10)
def test_fetch_redirect_chain_of_3_is_followed(site_server, robots_fetcher) -> None:
    host = serve(
        site_server,
        Redirect("/r1"),
        r1=Redirect("/r2"),
        r2=Redirect("/real-robots.txt"),
        **{"real-robots.txt": Page(RULES, content_type="text/plain")},
    )
    p = fetch_robots(robots_fetcher(), host, UA)
    assert not p.can_fetch(host + "/private")
    assert p.crawl_delay == 2.0


@pytest.mark.timeout(10)
def test_fetch_6_redirect_hops_allow_all(site_server, robots_fetcher) -> None:
    hops = {f"r{i}": Redirect(f"/r{i + 1}") for i in range(1, 6)}
    host = serve(site_server, Redirect("/r1"), **hops, r6=Page("User-agent: *\nDisallow: /\n"))
    p = fetch_robots(robots_fetcher(), host, UA)
    assert p.can_fetch(host + "/x")
    assert (p.unreachable, p.body) == (False, "")


@pytest.mark.timeout(10)
def test_fetch_600_kib_parses_the_first_512_kib(site_server, robots_fetcher) -> None:
    class BigRobots(Oversized):
        def __call__(self, ctx) -> None:  # type: ignore[no-untyped-def]
            head = b"User-agent: *\nDisallow: /secret\n"
            line = b"# padding padding padding padding padding padding padding padding pad\n"
            body = head + line * ((self.size_bytes - len(head)) // len(line))
            ctx.send(200, body, content_type="text/plain")

    host = serve(site_server, BigRobots(600 * 1024))
    p = fetch_robots(robots_fetcher(), host, UA)
    assert not p.unreachable
    assert not p.can_fetch(host + "/secret/x")
    assert p.can_fetch(host + "/public")
    assert p.body is not None
    assert len(p.body.encode()) <= ROBOTS_MAX_BYTES


@pytest.mark.timeout(10)
def test_fetch_html_page_as_robots_allows_all(site_server, robots_fetcher) -> None:
    host = serve(site_server, Oversized(200_000))  # an HTML page, served as robots.txt
    p = fetch_robots(robots_fetcher(), host, UA)
    assert not p.unreachable
    assert p.can_fetch(host + "/anything")


@pytest.mark.timeout(10)
def test_fetch_garbage_bytes_allows_all(site_server, robots_fetcher) -> None:
    host = serve(site_server, Page(bytes(range(256)) * 64, content_type="application/octet-stream"))
    p = fetch_robots(robots_fetcher(), host, UA)
    assert not p.unreachable
    assert p.can_fetch(host + "/anything")
    assert p.body is not None
    assert "\0" not in p.body


@pytest.mark.timeout(10)
def test_fetch_connection_refused_is_unreachable(robots_fetcher) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    p = fetch_robots(robots_fetcher(replace(FAST, retries=0)), f"http://127.0.0.1:{port}", UA)
    assert p.unreachable
