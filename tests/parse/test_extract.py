"""Issue 6, "Scraping: content and extraction rules", end to end.

Every test crawls a real loopback site (``tests.mockserver``) into a real SQLite file with the
real CLI (in-process, so a hook module put on ``sys.path`` here is importable by the crawl), and
reads the database back with plain ``sqlite3``: the queries users write are the ones checked.

- ``[extract.<name>]`` rules → ``fetches.data`` (one JSON object per fetch), ``json_extract``.
- ``[extract] hook = "module:function"`` → merged into ``data``; a failing hook is a ``parse``
  error row for that page only.
- Settings mistakes (selector, url_pattern, hook, keys) → exit 2, one line, before any request.
- ``[store] keep_html`` → ``bodies`` (zlib); ``keep_text`` → ``fetches.text`` and FTS5.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import tomllib
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bs4
import pytest

from crawler.commands.cli import main
from tests.crawlkit import FAST, ROOT, crawl, query, write_settings
from tests.mockserver import Binary, ETagPage, Gzip, Page, Redirect, Site, SiteServer

pytestmark = pytest.mark.timeout(120)

DUE = ["--due-before", "2030-01-01T00:00:00"]


def _html(title: str, body: str, head: str = "") -> str:
    return (
        f"<!doctype html><html><head><title>{title}</title>{head}</head><body>{body}</body></html>"
    )


def _data(db: Path) -> dict[str, Any]:
    """``{url path: parsed fetches.data}`` of the latest fetch of every page."""
    rows = query(db, "select url, data from pages")
    return {_path(url): (None if d is None else json.loads(d)) for url, d in rows}


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def _hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    """Write ``source`` as a fresh module on ``sys.path``; return its name (unique per call,
    so no test sees another's module from ``sys.modules``)."""
    name = f"exthook_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _recrawl(db: Path) -> int:
    return main(["recrawl", "--db", str(db), *DUE, "-q"])


# --------------------------------------------------------------------------- a small shop

INDEX = _html(
    "Shop",
    "<h1>  Welcome\n to   the <b>shop</b> </h1>"
    '<a href="/product/1.html" class="item featured">One</a>'
    '<a href="/product/2.html" class="item">Two</a>'
    '<a href="/about.html">About</a>',
)
PRODUCT_1 = _html(
    "Kettle",
    '<h1>Kettle</h1><span class="price">12.50</span>'
    '<ul><li class="tag">kitchen</li><li class="tag">steel</li></ul>'
    '<img src="/k.png" alt="A kettle">',
)
PRODUCT_2 = _html("Toaster", '<h1>Toaster</h1><span class="price">30.00</span>')
ABOUT = _html("About", "<p>No heading here.</p>")


def _shop_site() -> Site:
    site = Site()
    site.add("/", Page(INDEX))
    site.add("/product/1.html", Page(PRODUCT_1))
    site.add("/product/2.html", Page(PRODUCT_2))
    site.add("/about.html", Page(ABOUT))
    return site


def _shop(site_server: Any) -> SiteServer:
    return site_server(_shop_site())


# --------------------------------------------------------------------------- rules


def test_heading_rule_fills_fetches_data_queryable_with_json_extract(
    site_server: Any, tmp_path: Path
) -> None:
    srv = _shop(site_server)
    assert crawl(tmp_path, [srv.url("/")], settings={"extract.heading": {"selector": "h1"}}) == 0
    db = tmp_path / "crawl.db"

    assert _data(db) == {
        "/": {"heading": "Welcome to the shop"},  # text of every descendant, whitespace folded
        "/product/1.html": {"heading": "Kettle"},
        "/product/2.html": {"heading": "Toaster"},
        "/about.html": {"heading": None},  # no <h1>: the key is there, its value null
    }
    rows = query(
        db,
        "select json_extract(data, '$.heading') from fetches "
        "where json_extract(data, '$.heading') like 'K%'",
    )
    assert rows == [("Kettle",)]
    # The stored text is a JSON object, not a JSON string holding one.
    assert query(db, "select distinct json_type(data) from fetches") == [("object",)]


def test_many_attribute_and_selectors_that_match_nothing(site_server: Any, tmp_path: Path) -> None:
    srv = _shop(site_server)
    rules = {
        "extract.links": {"selector": "a[href]", "attribute": "href", "many": True},
        "extract.first_link": {"selector": "a", "attribute": "href"},
        "extract.classes": {"selector": "a", "attribute": "class"},
        "extract.tags": {"selector": "li.tag", "many": True},
        "extract.alt": {"selector": "img", "attribute": "alt"},
        "extract.missing": {"selector": ".nope"},
        "extract.missing_many": {"selector": ".nope", "many": True},
        "extract.no_such_attr": {"selector": "h1", "attribute": "data-x"},
    }
    assert crawl(tmp_path, [srv.url("/")], settings=rules) == 0
    data = _data(tmp_path / "crawl.db")

    home = data["/"]
    assert home["links"] == ["/product/1.html", "/product/2.html", "/about.html"]  # as written
    assert home["first_link"] == "/product/1.html"
    assert home["classes"] == "item featured"  # a multi-valued attribute, joined by spaces
    assert home["tags"] == []
    assert home["alt"] is None
    assert home["missing"] is None
    assert home["missing_many"] == []
    assert home["no_such_attr"] is None
    kettle = data["/product/1.html"]
    assert kettle["tags"] == ["kitchen", "steel"]
    assert kettle["alt"] == "A kettle"
    assert kettle["links"] == []
    assert kettle["first_link"] is None
    assert set(kettle) == set(home) == {k.removeprefix("extract.") for k in rules}

    # A list is a JSON array in SQLite: json_each walks it.
    rows = query(
        tmp_path / "crawl.db",
        "select j.value from pages, json_each(pages.data, '$.tags') as j "
        "where pages.url like '%/product/1.html' order by j.key",
    )
    assert rows == [("kitchen",), ("steel",)]


def test_url_pattern_limits_a_rule_to_matching_urls(site_server: Any, tmp_path: Path) -> None:
    srv = _shop(site_server)
    srv.site.add("/manual.pdf", Binary(3000, "application/pdf"))
    srv.site.add("/", Page(INDEX.replace("</body>", '<a href="/manual.pdf">pdf</a></body>')))
    rules = {
        "extract.price": {"selector": ".price", "url_pattern": r"/product/\d+\.html$"},
        "extract.title": {"selector": "h1", "url_pattern": "^http://[^/]+/$"},
    }
    assert crawl(tmp_path, [srv.url("/")], settings=rules) == 0
    db = tmp_path / "crawl.db"

    assert _data(db) == {
        "/": {"title": "Welcome to the shop"},  # price does not apply: no key at all
        "/product/1.html": {"price": "12.50"},
        "/product/2.html": {"price": "30.00"},
        "/about.html": None,  # no rule applies: data is NULL, not {}
        "/manual.pdf": None,  # not HTML: never parsed, never extracted
    }
    total = query(
        db,
        "select sum(cast(json_extract(data, '$.price') as real)) from pages where data is not null",
    )
    assert total == [(42.5,)]
    assert query(db, "select count(*) from errors") == [(0,)]


def test_url_pattern_matches_the_url_the_page_came_from_after_redirects(
    site_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/old redirects to /product/3.html, fetched once, as /old: the HTML is the product's."""
    site = Site()
    site.add("/", Page(_html("Home", '<a href="/old">old link</a>')))
    site.add("/old", Redirect("/product/3.html"))
    site.add("/product/3.html", Page(_html("Lamp", '<span class="price">7.00</span>')))
    srv = site_server(site)
    name = _hook(
        tmp_path,
        monkeypatch,
        """
        def extract(url, soup, response):
            return {"requested": url, "final": response.final_url, "hops": response.redirects}
        """,
    )
    settings = {
        "extract": {"hook": f"{name}:extract"},
        "extract.price": {"selector": ".price", "url_pattern": "/product/"},
    }
    assert crawl(tmp_path, [srv.url("/")], settings=settings) == 0
    rows = query(tmp_path / "crawl.db", "select url, final_url, data from pages order by url")
    assert [(_path(u), _path(f), json.loads(d)) for u, f, d in rows] == [
        ("/", "/", {"requested": srv.url("/"), "final": srv.url("/"), "hops": 0}),
        (
            "/old",
            "/product/3.html",
            {
                "price": "7.00",
                "requested": srv.url("/old"),
                "final": srv.url("/product/3.html"),
                "hops": 1,
            },
        ),
    ]


def test_data_is_sql_null_when_no_rule_applies(site_server: Any, tmp_path: Path) -> None:
    srv = _shop(site_server)
    rules = {"extract.price": {"selector": ".price", "url_pattern": "/product/"}}
    assert crawl(tmp_path, [srv.url("/")], settings=rules) == 0
    db = tmp_path / "crawl.db"
    assert query(db, "select count(*) from fetches where json_type(data) = 'object'") == [(2,)]
    assert query(db, "select count(*) from fetches where data is null") == [(2,)]


# --------------------------------------------------------------------------- the hook

HOOK_OK = """
    def extract(url, soup, response):
        return {
            "url": url,
            "h1_count": len(soup.find_all("h1")),
            "status": response.status_code,
            "final_url": response.final_url,
            "content_type": response.content_type,
            "has_body": response.body is not None,
            "header_names": sorted({name.lower() for name, _ in response.headers}),
            "heading": "the hook wins over a rule of the same name",
        }
"""


def test_hook_result_is_merged_into_data(
    site_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = _shop(site_server)
    name = _hook(tmp_path, monkeypatch, HOOK_OK)
    settings = {
        "extract": {"hook": f"{name}:extract"},
        "extract.heading": {"selector": "h1"},
        "extract.price": {"selector": ".price"},
    }
    assert crawl(tmp_path, [srv.url("/")], settings=settings) == 0
    data = _data(tmp_path / "crawl.db")

    assert set(data) == {"/", "/product/1.html", "/product/2.html", "/about.html"}
    kettle = data["/product/1.html"]
    assert kettle["price"] == "12.50"  # the rules' values stay
    assert kettle["heading"] == "the hook wins over a rule of the same name"
    assert kettle["url"] == kettle["final_url"] == srv.url("/product/1.html")
    assert kettle["h1_count"] == 1
    assert kettle["status"] == 200
    assert kettle["content_type"] == "text/html"
    assert kettle["has_body"] is True
    assert "content-type" in kettle["header_names"]
    assert data["/about.html"]["h1_count"] == 0
    assert query(tmp_path / "crawl.db", "select count(*) from errors") == [(0,)]


HOOK_FAILS_ON_ONE_PAGE = """
    def extract(url, soup, response):
        if url.endswith("/product/2.html"):
            raise ValueError("no price on\\nthis page")
        if url.endswith("/about.html"):
            return ["not", "a", "dict"]
        if url.endswith("/product/1.html"):
            return None  # nothing to add: not an error
        return {"ok": True}
"""


def test_failing_hook_is_a_parse_error_for_that_page_and_the_crawl_goes_on(
    site_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = _shop(site_server)
    name = _hook(tmp_path, monkeypatch, HOOK_FAILS_ON_ONE_PAGE)
    settings = {"extract": {"hook": f"{name}:extract"}, "extract.heading": {"selector": "h1"}}
    assert crawl(tmp_path, [srv.url("/")], settings=settings) == 0
    db = tmp_path / "crawl.db"

    assert _data(db) == {
        "/": {"heading": "Welcome to the shop", "ok": True},
        "/product/1.html": {"heading": "Kettle"},
        "/product/2.html": {"heading": "Toaster"},  # the rules' data survives the hook failing
        "/about.html": {"heading": None},
    }
    errors = query(
        db,
        "select u.url, e.kind, e.message, e.final, e.attempt, e.status_code "
        "from errors e join urls u on u.id = e.url_id order by u.url",
    )
    assert [(_path(u), *rest) for u, *rest in errors] == [
        (
            "/about.html",
            "parse",
            "extract hook failed: TypeError: returned list, not a dict",
            1,
            1,
            None,
        ),
        ("/product/2.html", "parse", "extract hook failed: ValueError: no price on", 1, 1, None),
    ]
    # The pages themselves were fetched fine: done, with their fetch rows and titles.
    states = query(db, "select url, state from urls order by url")
    assert {_path(u): s for u, s in states} == dict.fromkeys(_data(db), "done")
    assert query(db, "select title from pages where url like '%/product/2.html'") == [("Toaster",)]
    assert query(db, "select pages_fetched, errors from crawls") == [(4, 2)]


def test_hook_data_that_is_not_json_is_a_parse_error_not_a_failed_crawl(
    site_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value json cannot write (a Tag, a datetime) or SQLite's JSON functions cannot read
    (NaN) must not reach the writer: it would fail the whole batch, or every json_extract."""
    srv = _shop(site_server)
    name = _hook(
        tmp_path,
        monkeypatch,
        """
        import datetime
        def extract(url, soup, response):
            if url.endswith("/product/1.html"):
                return {"h1": soup.h1}
            if url.endswith("/product/2.html"):
                return {"price": float("nan")}
            if url.endswith("/about.html"):
                return {"when": datetime.date(2030, 1, 1)}
            return {"fine": 1}
        """,
    )
    assert crawl(tmp_path, [srv.url("/")], settings={"extract": {"hook": f"{name}:extract"}}) == 0
    db = tmp_path / "crawl.db"

    assert _data(db) == {
        "/": {"fine": 1},
        "/product/1.html": None,
        "/product/2.html": None,
        "/about.html": None,
    }
    errors = query(db, "select kind, message from errors order by message")
    assert [k for k, _ in errors] == ["parse"] * 3
    assert all(m.startswith("extract hook failed: ") for _, m in errors)
    assert any("Tag" in m for _, m in errors)
    assert any("not JSON compliant" in m for _, m in errors)  # NaN
    assert any("date" in m for _, m in errors)
    assert query(db, "select count(*) from urls where state = 'done'") == [(4,)]
    assert query(db, "select sum(json_extract(data, '$.fine')) from fetches") == [(1,)]


def test_the_hook_may_change_the_soup_without_changing_text_or_hash(
    site_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook gets the parser's own document; what it cuts out must not change the page's
    content_hash (a new hook would flag every page as changed) or its kept text."""
    site = Site()
    site.add("/", Page(_html("T", "<h1>Heading</h1><p>Body words.</p>")))
    plain_db = tmp_path / "plain"
    plain_db.mkdir()
    srv = site_server(site)
    assert crawl(plain_db, [srv.url("/")], settings={"store": {"keep_text": True}}) == 0

    name = _hook(
        tmp_path,
        monkeypatch,
        """
        def extract(url, soup, response):
            soup.h1.decompose()
            return {"cut": True}
        """,
    )
    hooked_db = tmp_path / "hooked"
    hooked_db.mkdir()
    settings = {"store": {"keep_text": True}, "extract": {"hook": f"{name}:extract"}}
    assert crawl(hooked_db, [srv.url("/")], settings=settings) == 0

    sql = "select content_hash, text, data from pages"
    plain = query(plain_db / "crawl.db", sql)
    hooked = query(hooked_db / "crawl.db", sql)
    assert plain[0][:2] == hooked[0][:2]
    assert plain[0][1] == "Heading Body words."
    assert json.loads(hooked[0][2]) == {"cut": True}


# --------------------------------------------------------------------------- settings mistakes


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(
            {"extract": {"hook": "no_such_module_xyz:extract"}},
            ["[extract] hook 'no_such_module_xyz:extract' cannot be imported", "No module"],
            id="hook-module-missing",
        ),
        pytest.param(
            {"extract": {"hook": "json:no_such_function"}},
            ["[extract] hook 'json:no_such_function' cannot be imported", "no_such_function"],
            id="hook-function-missing",
        ),
        pytest.param(
            {"extract": {"hook": "json:__doc__"}},
            ["[extract] hook 'json:__doc__' is not callable"],
            id="hook-not-callable",
        ),
        pytest.param(
            {"extract": {"hook": "json.loads"}},
            ['[extract] hook must be "package.module:function"'],
            id="hook-without-colon",
        ),
        pytest.param(
            {"extract.links": {"selector": "a[["}},
            ["[extract.links] selector 'a[[': Malformed attribute selector"],
            id="bad-selector",
        ),
        pytest.param(
            {"extract.price": {"selector": ".price", "url_pattern": "/product/(\\d+"}},
            ["[extract.price] url_pattern '/product/(\\\\d+'", "missing )"],
            id="bad-url-pattern",
        ),
        pytest.param(
            {"extract.price": {"selector": ".price", "selectr": "x"}},
            ["[extract.price]: unknown key 'selectr'"],
            id="unknown-key",
        ),
        pytest.param(
            {"extract.price": {"attribute": "href"}},
            ["[extract.price]: selector must be a CSS selector string"],
            id="no-selector",
        ),
        pytest.param(
            {"extract.price": {"selector": ".price", "many": "yes"}},
            ["[extract.price]: many must be true or false"],
            id="many-not-bool",
        ),
    ],
)
def test_settings_mistakes_exit_2_with_one_line_before_any_request(
    site_server: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    settings: dict[str, Any],
    expected: list[str],
) -> None:
    srv = _shop(site_server)
    assert crawl(tmp_path, [srv.url("/")], settings=settings) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("crawler: "), err
    assert "Traceback" not in err
    for part in expected:
        assert part in err, err
    assert srv.log == []  # nothing was fetched, not even robots.txt


# --------------------------------------------------------------------------- keep_html


def test_keep_html_stores_each_html_body_compressed_with_status_and_headers(
    site_server: Any, tmp_path: Path
) -> None:
    index = _html(
        "Index",
        '<a href="/gz.html">gz</a> <a href="/file.bin">bin</a> <a href="/data.json">json</a>'
        ' <a href="/etag.html">etag</a> <a href="/missing.html">404</a>',
    ).encode()
    gz_page = _html("Zipped", "<p>Compressed on the wire, stored decoded: café</p>")
    etag_page = _html("ETag", "<p>validators</p>").encode()
    site = Site()
    site.add("/", Page(index, headers={"X-Shop": "yes"}))
    site.add("/gz.html", Gzip(gz_page))
    site.add("/file.bin", Binary(5000))
    site.add("/data.json", Page(b'{"a": 1}', content_type="application/json"))
    site.add("/etag.html", ETagPage(etag_page, "v1"))
    srv = site_server(site)
    assert crawl(tmp_path, [srv.url("/")], settings={"store": {"keep_html": True}}) == 0
    db = tmp_path / "crawl.db"

    rows = query(
        db,
        "select u.url, f.id, f.content_length, b.encoding, b.body, b.length, b.reason, b.headers "
        "from bodies b join fetches f on f.id = b.fetch_id join urls u on u.id = f.url_id",
    )
    bodies = {_path(r[0]): r[1:] for r in rows}
    assert set(bodies) == {"/", "/gz.html", "/etag.html"}  # not the binary, JSON or the 404
    sent = {"/": index, "/gz.html": gz_page.encode(), "/etag.html": etag_page}
    for path, (_fid, content_length, encoding, body, length, reason, headers) in bodies.items():
        assert encoding == "zlib"
        assert zlib.decompress(body) == sent[path], path
        assert length == content_length == len(sent[path])
        assert len(body) < length or length < 200  # actually compressed
        assert reason == "OK"
        pairs = json.loads(headers)
        assert all(isinstance(p, list) and len(p) == 2 for p in pairs)
        names = {n.lower(): v for n, v in pairs}
        assert names["content-type"] == "text/html; charset=utf-8"
    assert {n.lower(): v for n, v in json.loads(bodies["/"][6])}["x-shop"] == "yes"
    gz_headers = {n.lower(): v for n, v in json.loads(bodies["/gz.html"][6])}
    assert gz_headers["content-encoding"] == "gzip"  # as received, though the body is decoded
    assert query(db, "select count(*) from fetches") == [(6,)]

    # A 304 has no body to keep; the 200 recrawled has a new one.
    assert _recrawl(db) == 0
    rows = query(
        db,
        "select u.url, f.status_code, f.not_modified, b.fetch_id is not null "
        "from fetches f join urls u on u.id = f.url_id left join bodies b on b.fetch_id = f.id "
        "where f.id > 6 order by f.id",
    )
    recrawled = {_path(u): (code, nm, kept) for u, code, nm, kept in rows}
    assert recrawled["/etag.html"] == (304, 1, 0)
    assert recrawled["/"] == (200, 0, 1)
    assert recrawled["/gz.html"] == (200, 0, 1)
    assert query(db, "select count(*) from bodies") == [(5,)]


def test_keep_html_off_stores_no_bodies(site_server: Any, tmp_path: Path) -> None:
    srv = _shop(site_server)
    assert crawl(tmp_path, [srv.url("/")]) == 0
    db = tmp_path / "crawl.db"
    assert query(db, "select count(*) from fetches") == [(4,)]
    assert query(db, "select count(*) from bodies") == [(0,)]


# --------------------------------------------------------------------------- keep_text

GARDEN_V1 = _html(
    "Garden notes",
    "<header>Headerword site banner</header>"
    "<nav>Navword <a href='/other.html'>Other</a></nav>"
    "<main><h1>Tomato growing</h1><p>Heirloom tomatoes need <em>sunshine</em>.</p>"
    "<script>var scriptword = 1;</script><p>Café crème.</p></main>"
    "<aside>Asideword</aside><form><label>Formword</label></form>"
    "<footer>Footerword © 2030</footer>",
    head="<style>.styleword { color: red }</style><script>headscript()</script>",
)
GARDEN_V2 = _html("Garden notes", "<main><h1>Cucumbers</h1><p>Cucumbers prefer shade.</p></main>")
OTHER = _html("Other page", "<p>Turnips and radishes.</p>")


def _garden(site_server: Any) -> SiteServer:
    site = Site()
    site.add("/", Page(GARDEN_V1))
    site.add("/other.html", Page(OTHER))
    return site_server(site)


def _match(db: Path, q: str) -> list[int]:
    rows = query(db, "select rowid from fetches_fts where fetches_fts match ? order by rowid", q)
    return [r[0] for r in rows]


def _fetch_id(db: Path, path: str) -> int:
    rows = query(db, "select fetch_id from pages where url like ?", "%" + path)
    assert len(rows) == 1
    return int(rows[0][0])


def test_keep_text_stores_visible_text_and_indexes_it_for_full_text_search(
    site_server: Any, tmp_path: Path
) -> None:
    srv = _garden(site_server)
    assert crawl(tmp_path, [srv.url("/")], settings={"store": {"keep_text": True}}) == 0
    db = tmp_path / "crawl.db"

    text = dict(query(db, "select url, text from pages"))
    assert text[srv.url("/")] == "Tomato growing Heirloom tomatoes need sunshine . Café crème."
    assert text[srv.url("/other.html")] == "Turnips and radishes."
    assert query(db, "select text from fetches where id = ?", _fetch_id(db, "/")) == [
        (text[srv.url("/")],)
    ]

    home, other = _fetch_id(db, "/"), _fetch_id(db, "/other.html")
    assert _match(db, "heirloom") == [home]
    assert _match(db, "turnips OR tomatoes") == sorted([home, other])
    assert _match(db, '"heirloom tomatoes"') == [home]
    assert _match(db, "tomat*") == [home]
    assert _match(db, "cafe") == [home]  # diacritics removed when indexing
    assert _match(db, "title:other") == [other]  # the title is indexed as its own column
    for hidden in ("headerword", "navword", "footerword", "asideword", "formword"):
        assert _match(db, hidden) == [], hidden
    for code in ("scriptword", "styleword", "headscript"):
        assert _match(db, code) == [], code
    # snippet() and bm25 work on the external-content table (the text lives in fetches).
    rows = query(
        db,
        "select f.final_url, snippet(fetches_fts, 1, '[', ']', '…', 5) from fetches_fts "
        "join fetches f on f.id = fetches_fts.rowid where fetches_fts match 'sunshine' "
        "order by bm25(fetches_fts)",
    )
    assert rows == [(srv.url("/"), "…tomatoes need [sunshine] . Café crème.")]

    # A recrawl that finds new text indexes the new fetch; the old fetch keeps its words.
    srv.site.add("/", Page(GARDEN_V2))
    assert _recrawl(db) == 0
    new_home = _fetch_id(db, "/")
    assert new_home > home
    assert _match(db, "cucumbers") == [new_home]
    assert _match(db, "heirloom") == [home]  # history: the first fetch is still there
    assert query(db, "select text from pages where url = ?", srv.url("/")) == [
        ("Cucumbers Cucumbers prefer shade.",)
    ]
    latest = query(
        db,
        "select p.url from fetches_fts join pages p on p.fetch_id = fetches_fts.rowid "
        "where fetches_fts match 'heirloom OR cucumbers'",
    )
    assert latest == [(srv.url("/"),)]  # joined with pages: only the latest fetch of each URL


def test_keep_text_off_stores_no_text_and_indexes_nothing(site_server: Any, tmp_path: Path) -> None:
    srv = _garden(site_server)
    assert crawl(tmp_path, [srv.url("/")]) == 0
    db = tmp_path / "crawl.db"
    assert query(db, "select count(*), count(text) from fetches") == [(2, 0)]
    assert query(db, "select count(text) from pages") == [(0,)]
    assert _match(db, "heirloom") == []
    assert query(db, "select count(*) from fetches_fts_docsize") == [(0,)]


# --------------------------------------------------------------------------- one parse, resume


def test_rules_hook_and_text_share_one_parse_per_page(
    site_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[int] = []
    lock = threading.Lock()
    original = bs4.BeautifulSoup.__init__

    def counting(self: bs4.BeautifulSoup, *args: Any, **kwargs: Any) -> None:
        with lock:
            parsed.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(bs4.BeautifulSoup, "__init__", counting)
    name = _hook(
        tmp_path,
        monkeypatch,
        """
        def extract(url, soup, response):
            return {"words": len(soup.get_text().split())}
        """,
    )
    srv = _shop(site_server)
    settings = {
        "store": {"keep_text": True},
        "extract": {"hook": f"{name}:extract"},
        "extract.heading": {"selector": "h1"},
        "extract.links": {"selector": "a", "attribute": "href", "many": True},
    }
    assert crawl(tmp_path, [srv.url("/")], settings=settings) == 0
    assert query(tmp_path / "crawl.db", "select count(*) from fetches where data is not null") == [
        (4,)
    ]
    assert len(parsed) == 4


def test_resumed_crawl_keeps_the_stored_extraction_rules_and_hook(
    site_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = _shop(site_server)
    name = _hook(
        tmp_path,
        monkeypatch,
        """
        def extract(url, soup, response):
            return {"hooked": True}
        """,
    )
    settings = {
        "crawl": {"workers": 1},
        "extract": {"hook": f"{name}:extract"},
        "extract.heading": {"selector": "h1", "url_pattern": "/product/"},
        "extract.links": {"selector": "a", "attribute": "href", "many": True},
    }
    assert crawl(tmp_path, [srv.url("/")], "--max-pages", "2", settings=settings) == 0
    db = tmp_path / "crawl.db"
    assert query(db, "select count(*) from fetches") == [(2,)]
    # A settings file of defaults where the resume runs must not undo the crawl's rules.
    write_settings(tmp_path / "settings.toml", FAST)
    monkeypatch.chdir(tmp_path)

    assert main(["crawl", "--resume", "--db", str(db), "-q"]) == 0
    assert query(db, "select count(*) from fetches") == [(4,)]
    data = _data(db)
    links = ["/product/1.html", "/product/2.html", "/about.html"]
    assert data == {
        "/": {"links": links, "hooked": True},
        "/product/1.html": {"heading": "Kettle", "links": [], "hooked": True},
        "/product/2.html": {"heading": "Toaster", "links": [], "hooked": True},
        "/about.html": {"links": [], "hooked": True},
    }
    stored = [json.loads(s)["extract"] for (s,) in query(db, "select settings from crawls")]
    assert stored[0] == stored[1]
    assert stored[1]["hook"] == f"{name}:extract"
    assert {r["name"]: r["url_pattern"] for r in stored[1]["rules"]} == {
        "heading": "/product/",
        "links": None,
    }


# --------------------------------------------------------------------------- docs/extraction.md

EXTRACTION_MD = ROOT / "docs" / "extraction.md"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)


def _blocks(lang: str) -> list[str]:
    return [body for tag, body in _BLOCK.findall(EXTRACTION_MD.read_text("utf-8")) if tag == lang]


def _fts_examples() -> list[str]:
    lines = EXTRACTION_MD.read_text("utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| `MATCH` |"))
    found = []
    for line in lines[start + 2 :]:
        if not line.startswith("| `"):
            break
        found.append(line.split("`")[1])
    return found


@dataclass(frozen=True)
class DocsCrawl:
    root: Path
    db: Path
    url: str


@pytest.fixture(scope="module")
def docs_crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsCrawl]:
    """The shop crawled with the doc's own settings (its hook example as the hook)."""
    root = tmp_path_factory.mktemp("docs")
    (root / "docs_hook_example.py").write_text(
        next(b for b in _blocks("python") if "def extract(" in b), encoding="utf-8"
    )
    toml = tomllib.loads(_blocks("toml")[0])
    extract = toml.pop("extract")
    assert extract.pop("hook") == "myproject.scrape:extract"
    settings: dict[str, Any] = {**toml, "extract": {"hook": "docs_hook_example:extract"}}
    settings.update({f"extract.{name}": rule for name, rule in extract.items()})
    with pytest.MonkeyPatch.context() as mp, SiteServer(_shop_site()) as srv:
        for name in list(os.environ):
            if name.startswith("CRAWLER_") or name.lower().endswith("_proxy"):
                mp.delenv(name)
        mp.syspath_prepend(str(root))
        assert crawl(root, [srv.url("/")], settings=settings) == 0
        yield DocsCrawl(root, root / "crawl.db", srv.url("/"))


def test_docs_settings_give_the_data_the_docs_show(docs_crawl: DocsCrawl) -> None:
    data = _data(docs_crawl.db)
    shown = [json.loads(b) for b in _blocks("json")]
    product = {k: v for k, v in data["/product/1.html"].items() if k in shown[0]}
    home = {k: v for k, v in data["/"].items() if k in shown[1]}
    assert product == shown[0]
    assert home == shown[1]
    # The doc's hook example ran too.
    assert data["/product/1.html"]["words"] == 5  # title, h1, price, two tags
    assert data["/product/1.html"]["served_by"].startswith("BaseHTTP")
    assert query(docs_crawl.db, "select count(*) from errors") == [(0,)]


def test_docs_sql_queries_run_and_find_rows(docs_crawl: DocsCrawl) -> None:
    queries = _blocks("sql")
    assert len(queries) >= 12
    con = sqlite3.connect(docs_crawl.db)
    try:
        for sql in queries:
            rows = con.execute(sql).fetchall()
            if "e.kind = 'parse'" not in sql:  # the docs crawl has no errors
                assert rows, sql
    finally:
        con.close()


def test_docs_fts_examples_are_valid_queries(docs_crawl: DocsCrawl) -> None:
    examples = _fts_examples()
    assert "kettle OR toaster" in examples
    found = {q: _match(docs_crawl.db, q) for q in examples}
    kettle = _fetch_id(docs_crawl.db, "/product/1.html")
    assert found["kettle"] == found["title:kettle"] == found["^kettle"] == [kettle]
    assert found["kettle steel"] == found["NEAR(kitchen steel, 3)"] == [kettle]
    assert found["kettle NOT steel"] == []
    assert found['"no heading here"'] == [_fetch_id(docs_crawl.db, "/about.html")]
    assert len(found["kettle OR toaster"]) == 2


def test_docs_python_snippets_run(docs_crawl: DocsCrawl) -> None:
    snippets = [b for b in _blocks("python") if "def extract(" not in b]
    assert len(snippets) == 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    outputs = []
    for code in snippets:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=docs_crawl.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    url = docs_crawl.url + "product/1.html"
    assert outputs[0] == f"{url} text/html; charset=utf-8 {len(PRODUCT_1.encode())} bytes\n"
    assert f"{url} Kettle\n" in outputs[1]
    assert f"{docs_crawl.url}about.html None\n" in outputs[1]
