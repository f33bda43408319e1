"""Decoding in the HTML standard's sniffing order: BOM, the header's charset, a ``<meta>``
prescan of the first 1,024 bytes, then UTF-8 if the bytes are UTF-8, else windows-1252.

Real byte strings, read through ``parse_html`` (what the crawl stores), and one crawl of a real
loopback server whose ``Content-Type`` names the charset."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import pytest

from crawler.parse.charset import decode_html, prescan
from crawler.parse.soup import parse_html
from tests.crawlkit import crawl_in_subprocess, query
from tests.mockserver.behaviours import Page
from tests.mockserver.site import Site

URL = "http://h.example/p.html"


def _title(body: bytes, charset: str | None = None) -> str | None:
    return parse_html(body, URL, charset=charset).title


@pytest.mark.parametrize(
    ("body", "charset", "title"),
    [
        # a BOM wins over the header and the meta
        (codecs.BOM_UTF8 + "<meta charset=koi8-r><title>é</title>".encode(), "koi8-r", "é"),
        (codecs.BOM_UTF16_LE + "<title>Ü</title>".encode("utf-16-le"), "utf-8", "Ü"),
        (codecs.BOM_UTF16_BE + "<title>Ü</title>".encode("utf-16-be"), None, "Ü"),
        # the header wins over the meta
        ("<meta charset=utf-8><title>Ärger</title>".encode("cp1252"), "windows-1252", "Ärger"),
        # latin1, iso-8859-1 and ascii are windows-1252 (0x80 is the euro sign)
        (b"<title>\x80 caf\xe9</title>", "iso-8859-1", "€ café"),
        (b"<title>\x80</title>", "us-ascii", "€"),
        (b"<meta charset=latin1><title>\x80</title>", None, "€"),
        # the five bytes Python's cp1252 leaves undefined are C1 controls, not U+FFFD
        (b"<title>a\x81b</title>", "windows-1252", "a\x81b"),
        # a meta in the first 1,024 bytes; http-equiv too; comments are skipped
        ("<meta charset=koi8-r><title>Привет</title>".encode("koi8-r"), None, "Привет"),
        (
            b'<!-- <meta charset=utf-8> --><meta http-equiv="Content-Type" '
            b'content="text/html; charset=koi8-r"><title>\xf0\xd2</title>',
            None,
            "Пр",
        ),
        # a meta after 1,024 bytes is not read: the bytes are guessed (here: windows-1252)
        (b"<!--" + b"x" * 1100 + b"--><meta charset=koi8-r><title>\xe9</title>", None, "é"),
        # utf-16 and utf-32 in a meta mean UTF-8 (the bytes are ASCII-compatible)
        ("<meta charset=utf-16><title>café</title>".encode(), None, "café"),
        ("<meta charset=UTF-32LE><title>café</title>".encode(), None, "café"),
        # x-user-defined in a meta is windows-1252; as the header's charset, its own decoder
        (b"<meta charset=x-user-defined><title>\xe9</title>", None, "é"),
        (b"<title>\xe9</title>", "x-user-defined", "\uf7e9"),
        # invalid UTF-8 under a declared UTF-8 is U+FFFD, as a browser shows it
        (b"<meta charset=utf-8><title>caf\xe9 ok</title>", None, "caf\ufffd ok"),
        # nothing declared: UTF-8 wins when the bytes are UTF-8, else windows-1252
        ("<title>東京 café</title>".encode(), None, "東京 café"),
        (b"<title>caf\xe9</title>", None, "café"),
        ("<title>café \udcff</title>".encode("utf-8", "surrogateescape"), None, "café \ufffd"),
        # a label nobody knows, or a non-text codec, is ignored
        ("<title>é</title>".encode(), "no-such-charset", "é"),
        ("<title>é</title>".encode(), "base64", "é"),
    ],
)
def test_sniffing_order(body: bytes, charset: str | None, title: str) -> None:
    assert _title(body, charset) == title


def test_prescan_reads_attributes_as_the_standard_does() -> None:
    assert prescan(b"<div title='<meta charset=koi8-r>'><meta charset='utf-8'>") == "utf-8"
    assert prescan(b"<meta name=x charset=koi8-r charset=utf-8>") == "koi8-r"
    assert prescan(b"<meta content='text/html; charset=koi8-r'>") is None  # no http-equiv
    assert prescan(b"<metal charset=koi8-r>") is None
    assert prescan(b"<META\nCHARSET='KOI8-R'>") == "koi8-r"
    assert prescan(b"<p>no declaration</p>") is None


def test_decode_never_raises_on_odd_labels() -> None:
    for label in ("", " ", "\x00", "utf-8\n", "idna", "rot13", "x" * 300):
        assert isinstance(decode_html(b"<p>\xff</p>", label), str)


def test_a_crawl_decodes_as_the_header_and_the_meta_say(site_server: Any, tmp_path: Path) -> None:
    site = Site()
    links = '<a href="/latin1.html">l</a><a href="/meta.html">m</a><a href="/utf16.html">u</a>'
    site.add("/", Page(f"<title>Start</title>{links}"))
    site.add(
        "/latin1.html",
        Page(b"<title>\x80 Ma\xdfe</title>", content_type="text/html; charset=ISO-8859-1"),
    )
    site.add(
        "/meta.html",
        Page(
            "<meta charset=koi8-r><title>Привет</title>".encode("koi8-r"), content_type="text/html"
        ),
    )
    site.add(
        "/utf16.html",
        Page("<meta charset=utf-16><title>café</title>".encode(), content_type="text/html"),
    )
    srv = site_server(site)
    done = crawl_in_subprocess(tmp_path, [srv.url("/")])
    assert done.returncode == 0, done.stderr
    titles = dict(
        query(
            tmp_path / "crawl.db",
            "select u.url, f.title from fetches f join urls u on u.id = f.url_id",
        )
    )
    assert titles == {
        srv.url("/"): "Start",
        srv.url("/latin1.html"): "€ Maße",
        srv.url("/meta.html"): "Привет",
        srv.url("/utf16.html"): "café",
    }
