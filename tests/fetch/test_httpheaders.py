"""The header fast path (``crawler/fetch/httpheaders.py``) against the email parser it replaces.

Every case parses one header block both ways and compares the whole ``HTTPMessage``: headers,
payload, envelope, defects (by type and text: defect objects do not compare equal), and where
the reader was left. The generated blocks mix what real servers send with what hostile ones do.
"""

from __future__ import annotations

import http.client
import io
import threading
from typing import Any

import pytest
import requests
from hypothesis import example, given, settings
from hypothesis import strategies as st

from crawler.config import Config, FetchSettings, StoreSettings
from crawler.fetch import httpheaders
from crawler.fetch.fetcher import Fetcher
from crawler.run.compose import build_parts
from crawler.store.db import open_database
from crawler.store.writer import Writer
from crawler.urls import Scope
from tests.mockserver import Page, Site

ORIGINAL = httpheaders._ORIGINAL


def snapshot(message: Any) -> dict[str, Any]:
    """The message's whole state, comparable: defects by type and text, and the parts of a
    MIME payload (from the fallback) by their own state."""
    state = dict(vars(message))
    state["defects"] = [(type(d).__name__, str(d)) for d in state["defects"]]
    if isinstance(state["_payload"], list):
        state["_payload"] = [snapshot(part) for part in state["_payload"]]
    return state


def both(block: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    slow_fp, fast_fp = io.BytesIO(block), io.BytesIO(block)
    slow, fast = ORIGINAL(slow_fp), httpheaders.parse_headers(fast_fp)
    assert type(slow) is type(fast) is http.client.HTTPMessage
    assert slow_fp.tell() == fast_fp.tell()
    return snapshot(slow), snapshot(fast)


def assert_same(block: bytes) -> None:
    slow, fast = both(block)
    assert fast == slow, block


NAMES = st.sampled_from(
    [
        "Content-Type",
        "content-length",
        "Set-Cookie",
        "X-Odd_Name!#$%&'*+.^`|~",
        "From",
        "From ",
        "",
        "Bad Name",
        "Ünicode",
        "Tab\tName",
        "\x7f",
        " Folded",
    ]
)
VALUES = st.sampled_from(
    [
        "text/html; charset=utf-8",
        "multipart/mixed; boundary=x",
        "Multipart/Related",
        "message/rfc822",
        "text/plain (message/comment)",
        "  leading and trailing  ",
        "\ttab",
        "",
        "a\rb",
        "caf\xe9",
        "a:b:c",
        "nginx/1.22.1",
    ]
) | st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=12)
ENDINGS = st.sampled_from(["\r\n", "\n", "\r", "\r\r\n"])
LINES = st.one_of(
    st.builds(lambda n, v, e: f"{n}:{v}{e}", NAMES, VALUES, ENDINGS),
    st.builds(lambda v, e: f" {v}{e}", VALUES, ENDINGS),  # a continuation line
    st.builds(lambda v, e: f"From {v}{e}", VALUES, ENDINGS),  # an envelope line
    st.builds(lambda v, e: f"{v}{e}", VALUES, ENDINGS),  # no colon at all
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(LINES, max_size=8), st.sampled_from(["\r\n", "\n", "", "\r"]))
@example(["Server: nginx\r\n", "Content-Type: text/html\r\n"], "\r\n")
@example(["Content-Type: multipart/byteranges; boundary=3d6b6a416f9b5\r\n"], "\r\n")
@example(["X: 1\r\n", " folded\r\n"], "\r\n")
@example(["X: 1\r\n", "no colon here\r\n", "Y: 2\r\n"], "\r\n")
@example([":empty name\r\n"], "\r\n")
@example(["X: a\rb\r\n"], "\r\n")
@example(["X: 1\r\n"], "")
def test_same_message_as_the_email_parser(lines: list[str], end: str) -> None:
    assert_same("".join([*lines, end]).encode("iso-8859-1"))


TOKEN = st.text(st.sampled_from([chr(c) for c in range(0x21, 0x7F) if c != 0x3A]), min_size=1)
PLAIN_VALUE = st.text(st.characters(min_codepoint=0, max_codepoint=255, exclude_characters="\r\n"))


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.builds(
            lambda n, v, e: f"{n}:{v}{e}", TOKEN, PLAIN_VALUE, st.sampled_from(["\r\n", "\n"])
        ),
        max_size=12,
    ),
    st.sampled_from(["\r\n", "\n"]),
)
def test_same_message_on_plain_blocks(lines: list[str], end: str) -> None:
    """The blocks the fast path takes (the mixed cases above mostly fall back)."""
    assert_same("".join([*lines, end]).encode("iso-8859-1"))


def test_plain_blocks_take_the_fast_path() -> None:
    """The point of the module: what real servers send skips the email parser."""
    for block in (
        b"Server: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 10:00:00 GMT\r\n"
        b"Content-Type: text/html\r\nContent-Length: 12000\r\nConnection: keep-alive\r\n"
        b'ETag: "656a-5f1"\r\nAccept-Ranges: bytes\r\n\r\n',
        b"content-type:text/html;charset=ISO-8859-1\nX-Empty:\n\n",
        b"\r\n",  # no headers at all
    ):
        assert httpheaders._plain(io.BytesIO(block).readlines()) is not None, block
        assert_same(block)


@pytest.mark.parametrize(
    "block",
    [
        b"X: 1\r\n folded\r\n\r\n",
        b"From someone\r\nX: 1\r\n\r\n",
        b"X: 1\r\nno colon\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n",
        b"X: 1\r\n",  # the connection closed before the blank line
    ],
)
def test_anything_else_goes_to_the_email_parser(block: bytes) -> None:
    assert httpheaders._plain(io.BytesIO(block).readlines()) is None
    assert_same(block)


def test_installed_by_a_crawl_and_used_by_requests(site_server, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(http.client, "parse_headers", ORIGINAL)
    Fetcher(FetchSettings(), "crawler-test")
    assert http.client.parse_headers is ORIGINAL  # constructing a fetcher patches nothing
    engine = open_database(str(tmp_path / "c.db"))
    build_parts(Config(), Writer(engine, StoreSettings()), Scope(), threading.Event()).close()
    engine.dispose()
    assert http.client.parse_headers is httpheaders.parse_headers
    assert httpheaders.install()  # idempotent

    site = Site()
    site.add("/", Page("<title>x</title>", headers={"X-Twice": "a", "Set-Cookie": "k=v"}))
    srv = site_server(site)
    fast = requests.get(srv.url("/"), timeout=5)
    monkeypatch.setattr(http.client, "parse_headers", ORIGINAL)
    slow = requests.get(srv.url("/"), timeout=5)
    drop = {"Date"}
    assert {k: v for k, v in fast.headers.items() if k not in drop} == {
        k: v for k, v in slow.headers.items() if k not in drop
    }
    assert fast.headers["X-Twice"] == "a"
    assert fast.cookies.get("k") == "v"


def test_not_installed_over_someone_elses_patch(monkeypatch) -> None:
    def theirs(fp: Any, _class: Any = http.client.HTTPMessage) -> Any:
        return ORIGINAL(fp, _class)

    monkeypatch.setattr(http.client, "parse_headers", theirs)
    assert not httpheaders.install()
    assert http.client.parse_headers is theirs
