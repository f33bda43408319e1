"""crawler.parse.sitemaps: streaming sitemap parsing, its leniency, its limits and its safety."""

from __future__ import annotations

import gzip
import io
import os
import socket
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crawler.parse.sitemap_fields import parse_lastmod, priority_rank
from crawler.parse.sitemaps import (
    SitemapError,
    SitemapRef,
    SitemapUrl,
    parse_sitemap,
)
from crawler.schedule import ALWAYS_FLOOR_S, changefreq_seconds

BASE = "https://example.com/sitemap.xml"
NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


def parse(data: bytes, **kwargs: object) -> list[SitemapUrl | SitemapRef]:
    return list(parse_sitemap(io.BytesIO(data), base_url=BASE, **kwargs))  # type: ignore[arg-type]


def urlset(body: str, ns: str | None = NS) -> bytes:
    xmlns = f' xmlns="{ns}"' if ns else ""
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset{xmlns}>{body}</urlset>'.encode()


def one(body: str) -> SitemapUrl:
    [entry] = parse(urlset(f"<url><loc>https://example.com/</loc>{body}</url>"))
    assert isinstance(entry, SitemapUrl)
    return entry


# --- fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-05", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-17", datetime(2024, 5, 17, tzinfo=UTC)),
        ("2024-05-17T10:20+02:00", datetime(2024, 5, 17, 8, 20, tzinfo=UTC)),
        ("2024-05-17T10:20:30Z", datetime(2024, 5, 17, 10, 20, 30, tzinfo=UTC)),
        ("2024-05-17T10:20:30.5-05:30", datetime(2024, 5, 17, 15, 50, 30, 500000, tzinfo=UTC)),
        ("2024-05-17T10:20:30.1234567Z", datetime(2024, 5, 17, 10, 20, 30, 123456, tzinfo=UTC)),
        ("  2024-05-17T00:00:00+0100 ", datetime(2024, 5, 16, 23, tzinfo=UTC)),  # lenient ±hhmm
        ("2024-05-17T10:20:30", datetime(2024, 5, 17, 10, 20, 30, tzinfo=UTC)),  # no zone: UTC
        ("2024-05-17 10:20:30z", datetime(2024, 5, 17, 10, 20, 30, tzinfo=UTC)),
        ("2024-13-01", None),
        ("2024-02-30", None),
        ("2024-05-17T24:00Z", None),
        ("2024-05-17T10:20+24:00", None),
        ("2024-05-17T10:20+01:60", None),
        ("0001-01-01T00:00+01:00", None),  # before datetime.min in UTC
        ("17/05/2024", None),
        ("yesterday", None),
        ("20240517", None),
        ("", None),
    ],
)
def test_lastmod_forms(text: str, expected: datetime | None) -> None:
    assert parse_lastmod(text) == expected
    assert one(f"<lastmod>{text}</lastmod>").lastmod == expected


def test_lastmod_is_utc_aware() -> None:
    lastmod = one("<lastmod>2024-05-17T10:20:30+09:00</lastmod>").lastmod
    assert lastmod is not None
    assert lastmod.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daily", "daily"),
        (" Weekly ", "weekly"),
        ("NEVER", "never"),
        ("always", "always"),
        ("fortnightly", None),
        ("", None),
    ],
)
def test_changefreq(text: str, expected: str | None) -> None:
    assert one(f"<changefreq>{text}</changefreq>").changefreq == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.8", 0.8),
        (" 1.0 ", 1.0),
        ("0", 0.0),
        (".5", 0.5),
        ("1.1", None),
        ("-0.1", None),
        ("high", None),
        ("nan", None),
        ("inf", None),
        ("", None),
    ],
)
def test_priority(text: str, expected: float | None) -> None:
    assert one(f"<priority>{text}</priority>").priority == expected


def test_missing_fields_are_none_and_first_occurrence_wins() -> None:
    assert one("") == SitemapUrl("https://example.com/")
    entry = one("<priority>0.9</priority><priority>0.1</priority>")
    assert entry.priority == 0.9


def test_changefreq_seconds() -> None:
    assert changefreq_seconds("hourly") == 3600
    assert changefreq_seconds("daily") == 86400
    assert changefreq_seconds("weekly") == 7 * 86400
    assert changefreq_seconds("monthly") == 30 * 86400
    assert changefreq_seconds("yearly") == 365 * 86400
    assert changefreq_seconds("always") == ALWAYS_FLOOR_S == 3600
    assert changefreq_seconds(" Daily ") == 86400
    assert changefreq_seconds("never") is None
    assert changefreq_seconds("sometimes") is None


@pytest.mark.parametrize(
    ("priority", "rank"),
    [
        (None, 0),
        (0.5, 0),
        (0.0, -5),
        (0.1, -4),
        (0.45, 0),
        (0.55, 1),
        (0.6, 1),
        (0.8, 3),
        (0.9, 4),
        (1.0, 5),
        (7.0, 5),
        (-1.0, -5),
        (float("nan"), 0),
    ],
)
def test_priority_rank(priority: float | None, rank: int) -> None:
    assert priority_rank(priority) == rank


def test_priority_rank_is_monotonic() -> None:
    ranks = [priority_rank(i / 100) for i in range(101)]
    assert ranks == sorted(ranks)


# --- documents --------------------------------------------------------------------------------


def test_urlset_in_document_order() -> None:
    doc = urlset(
        "<url><loc>https://example.com/a</loc><lastmod>2024-01-02</lastmod>"
        "<changefreq>daily</changefreq><priority>0.7</priority></url>"
        "<url><loc>https://EXAMPLE.com:443/b?x=1#frag</loc></url>"
    )
    assert parse(doc) == [
        SitemapUrl("https://example.com/a", datetime(2024, 1, 2, tzinfo=UTC), "daily", 0.7),
        SitemapUrl("https://example.com/b?x=1"),
    ]


def test_sitemapindex_yields_refs() -> None:
    doc = (
        f'<sitemapindex xmlns="{NS}">'
        "<sitemap><loc>https://example.com/s1.xml.gz</loc><lastmod>2024-03-04T05:06Z</lastmod>"
        "</sitemap><sitemap><loc>/s2.xml</loc></sitemap></sitemapindex>"
    ).encode()
    assert parse(doc) == [
        SitemapRef("https://example.com/s1.xml.gz", datetime(2024, 3, 4, 5, 6, tzinfo=UTC)),
        SitemapRef("https://example.com/s2.xml"),
    ]


@pytest.mark.parametrize(
    "ns",
    [
        None,
        "http://www.google.com/schemas/sitemap/0.84",
        "http://www.google.com/schemas/sitemap/0.9",
        "http://www.google.com/schemas/sitemap/0.90",
        "https://www.sitemaps.org/schemas/sitemap/0.9/",  # a typo'd namespace still reads
    ],
)
def test_namespace_variants(ns: str | None) -> None:
    doc = urlset("<url><loc>https://example.com/x</loc><priority>0.3</priority></url>", ns)
    assert parse(doc) == [SitemapUrl("https://example.com/x", priority=0.3)]


def test_prefixed_root_with_unprefixed_children() -> None:
    doc = (
        f'<sm:urlset xmlns:sm="{NS}"><url><loc>https://example.com/x</loc></url>'
        f"<sm:url><sm:loc>https://example.com/y</sm:loc></sm:url></sm:urlset>"
    ).encode()
    assert [e.url for e in parse(doc)] == ["https://example.com/y"]


def test_extension_elements_are_ignored() -> None:
    doc = (
        f'<urlset xmlns="{NS}" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1" '
        'xmlns:xhtml="http://www.w3.org/1999/xhtml">'
        "<url><image:image><image:loc>https://cdn.example.com/i.png</image:loc></image:image>"
        '<xhtml:link rel="alternate" hreflang="de" href="https://example.com/de/"/>'
        "<loc>https://example.com/page</loc></url>"
        "<url><image:image><image:loc>https://cdn.example.com/only-image.png</image:loc>"
        "</image:image></url></urlset>"
    ).encode()
    assert parse(doc) == [SitemapUrl("https://example.com/page")]


def test_locs_relative_invalid_and_other_schemes() -> None:
    doc = urlset(
        "<url><loc>relative/page</loc></url>"
        "<url><loc>ftp://example.com/file</loc></url>"
        "<url><loc>mailto:a@example.com</loc></url>"
        "<url><loc>javascript:alert(1)</loc></url>"
        "<url><loc>http://exa mple.com/</loc></url>"
        "<url><loc>http://[::1/</loc></url>"
        "<url><loc></loc></url>"
        "<url><loc>   </loc></url>"
        "<url><lastmod>2024-01-01</lastmod></url>"
        f"<url><loc>https://example.com/{'a' * 70000}</loc></url>"
        "<url><loc>https://example.com/ok</loc></url>"
    )
    assert [e.url for e in parse(doc)] == [
        "https://example.com/relative/page",
        "https://example.com/ok",
    ]


def test_whitespace_and_cdata_around_loc() -> None:
    doc = urlset(
        "<url><loc>\n\t  https://example.com/a  \n</loc></url>"
        "<url><loc><![CDATA[https://example.com/b?x=1&y=2]]></loc></url>"
        "<url><loc> <![CDATA[ https://example.com/c ]]> </loc></url>"
        "<url><loc>https://example.com/d?x=1&amp;y=2</loc></url>"
    )
    assert [e.url for e in parse(doc)] == [
        "https://example.com/a",
        "https://example.com/b?x=1&y=2",
        "https://example.com/c",
        "https://example.com/d?x=1&y=2",
    ]


def test_leading_whitespace_and_bom_before_xml_declaration() -> None:
    doc = b"\xef\xbb\xbf\n\n   " + urlset("<url><loc>https://example.com/</loc></url>")
    assert parse(doc) == [SitemapUrl("https://example.com/")]


def test_utf16_document() -> None:
    doc = (
        '<?xml version="1.0" encoding="UTF-16"?>'
        f'<urlset xmlns="{NS}"><url><loc>https://example.com/ü</loc></url></urlset>'
    ).encode("utf-16")
    assert parse(doc) == [SitemapUrl("https://example.com/%C3%BC")]


def test_sort_query_and_strip_tracking_pass_through() -> None:
    doc = urlset("<url><loc>https://example.com/?b=2&amp;utm_source=x&amp;a=1</loc></url>")
    assert parse(doc)[0].url == "https://example.com/?b=2&utm_source=x&a=1"
    [entry] = parse(doc, sort_query=True, strip_tracking=True)
    assert entry.url == "https://example.com/?a=1&b=2"


@pytest.mark.parametrize("data", [b"", b"   \n\t ", b"\xef\xbb\xbf", gzip.compress(b""), b"\n" * 9])
def test_empty_document_yields_nothing(data: bytes) -> None:
    assert parse(data) == []


def test_empty_urlset_yields_nothing() -> None:
    assert parse(urlset("")) == []
    assert parse(f'<urlset xmlns="{NS}"/>'.encode()) == []


@pytest.mark.parametrize(
    "data",
    [
        b"<html><head><title>Not found</title></head><body/></html>",
        b"<html><body><url><loc>https://example.com/</loc></url></body></html>",
    ],
)
def test_xml_that_is_not_a_sitemap_is_an_error(data: bytes) -> None:
    with pytest.raises(SitemapError, match="not a sitemap: the root element is <html>"):
        parse(data)


# --- gzip and limits ------------------------------------------------------------------------


def test_gzip_detected_by_magic_bytes() -> None:
    doc = urlset("<url><loc>https://example.com/a</loc></url>")
    # base_url says .xml: detection looks at the bytes, not at the name
    assert parse(gzip.compress(doc)) == [SitemapUrl("https://example.com/a")]


def test_gzip_text_sitemap() -> None:
    assert parse(gzip.compress(b"https://example.com/t\n")) == [SitemapUrl("https://example.com/t")]


def test_gzip_bomb_is_capped() -> None:
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb", compresslevel=9) as gz:
        gz.write(urlset("<url><loc>https://example.com/a</loc></url>")[: -len(b"</urlset>")])
        spaces = b" " * (1 << 20)
        for _ in range(64):  # 64 MiB of whitespace inside the document
            gz.write(spaces)
    assert bomb.tell() < 200_000
    bomb.seek(0)
    got: list[SitemapUrl | SitemapRef] = []
    started = time.perf_counter()
    with pytest.raises(SitemapError, match=r"larger than max_bytes=4194304 after decompression"):
        got.extend(parse_sitemap(bomb, base_url=BASE, max_bytes=4 << 20))
    assert time.perf_counter() - started < 2
    assert got == [SitemapUrl("https://example.com/a")]


def test_plain_document_over_max_bytes() -> None:
    doc = urlset("".join(f"<url><loc>https://example.com/{i}</loc></url>" for i in range(10_000)))
    got: list[SitemapUrl | SitemapRef] = []
    with pytest.raises(SitemapError, match=r"larger than max_bytes=200000 \(after \d+ entries\)"):
        got.extend(parse_sitemap(io.BytesIO(doc), base_url=BASE, max_bytes=200_000))
    assert 0 < len(got) < 10_000
    assert [e.url for e in got] == [f"https://example.com/{i}" for i in range(len(got))]


@pytest.mark.parametrize(
    "data",
    [
        gzip.compress(urlset("<url><loc>https://example.com/a</loc></url>"))[:-12],  # truncated
        b"\x1f\x8b\x08\x00garbage-that-is-not-deflate" * 10,
    ],
)
def test_corrupt_gzip_is_a_sitemap_error(data: bytes) -> None:
    with pytest.raises(SitemapError, match="corrupt or truncated gzip"):
        parse(data)


def test_max_entries(caplog: pytest.LogCaptureFixture) -> None:
    doc = urlset("".join(f"<url><loc>https://example.com/{i}</loc></url>" for i in range(10)))
    assert [e.url for e in parse(doc, max_entries=3)] == [
        "https://example.com/0",
        "https://example.com/1",
        "https://example.com/2",
    ]
    assert "stopped at max_entries=3" in caplog.text
    caplog.clear()
    assert len(parse(doc, max_entries=10)) == 10
    assert "max_entries" not in caplog.text  # exactly the limit: nothing was dropped
    assert parse(doc, max_entries=0) == []
    text = "".join(f"https://example.com/{i}\n" for i in range(10)).encode()
    assert len(parse(text, max_entries=4)) == 4


def test_max_entries_counts_only_valid_entries() -> None:
    doc = urlset(
        "<url><loc>ftp://x/</loc></url><url><loc>https://example.com/1</loc></url>"
        "<url><loc>ftp://y/</loc></url><url><loc>https://example.com/2</loc></url>"
    )
    assert [e.url for e in parse(doc, max_entries=2)] == [
        "https://example.com/1",
        "https://example.com/2",
    ]


# --- malformed XML and hostile documents ----------------------------------------------------


def test_malformed_xml_after_n_entries_yields_n_then_raises() -> None:
    entries = "".join(f"<url><loc>https://example.com/{i}</loc></url>" for i in range(5))
    doc = urlset(entries + "<url><loc>https://example.com/broken</loc></uurl>")
    got: list[SitemapUrl | SitemapRef] = []
    with pytest.raises(SitemapError, match=r"malformed XML: .*\(after 5 entries\)"):
        got.extend(parse_sitemap(io.BytesIO(doc), base_url=BASE))
    assert [e.url for e in got] == [f"https://example.com/{i}" for i in range(5)]


@pytest.mark.parametrize("good", [1, 3000])  # within the first 64 KiB chunk, and far past it
def test_malformed_xml_keeps_every_entry_before_the_fault(good: int) -> None:
    """Whichever chunk the fault is in, and whatever lxml version, no earlier entry is lost."""
    entries = "".join(f"<url><loc>https://example.com/{i}</loc></url>" for i in range(good))
    doc = urlset(entries + "<url><loc>https://example.com/broken</loc><url></url>")
    got: list[SitemapUrl | SitemapRef] = []
    with pytest.raises(SitemapError, match=rf"malformed XML: .*\(after {good} entries\)"):
        got.extend(parse_sitemap(io.BytesIO(doc), base_url=BASE))
    assert [e.url for e in got] == [f"https://example.com/{i}" for i in range(good)]


@pytest.mark.parametrize(
    "data",
    [
        b"<urlset><url><loc>https://example.com/</loc></url>",  # never closed
        b"<?xml version='1.0'?>",
        b"<",
        b"<urlset><url><loc>https://example.com/\xff\xfe</loc></url></urlset>",  # not UTF-8
        b"<urlset><url></urlset>",
    ],
)
def test_malformed_xml_raises_only_sitemap_error(data: bytes) -> None:
    with pytest.raises(SitemapError):
        parse(data)


def test_sitemap_error_is_a_value_error() -> None:
    assert issubclass(SitemapError, ValueError)


def test_failing_stream_becomes_sitemap_error() -> None:
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            self.calls += 1
            if self.calls > 1:
                raise OSError("disk on fire")
            data = urlset("<url><loc>https://example.com/a</loc></url>")[:60]
            buffer[: len(data)] = data
            return len(data)

    with pytest.raises(SitemapError, match="disk on fire"):
        list(parse_sitemap(Broken(), base_url=BASE))  # type: ignore[arg-type]


def test_internal_entities_are_not_expanded() -> None:
    doc = (
        '<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY evil "https://evil.example/">]>'
        f'<urlset xmlns="{NS}">'
        "<url><loc>&evil;</loc></url>"
        "<url><loc>&evil;path</loc></url>"
        "<url><loc>https://example.com/&evil;</loc></url>"
        "<url><loc>https://example.com/safe</loc><changefreq>&evil;</changefreq></url>"
        "</urlset>"
    ).encode()
    # an entry whose <loc> holds an entity is skipped, not cut at the entity
    assert parse(doc) == [SitemapUrl("https://example.com/safe")]


def test_billion_laughs_is_not_expanded() -> None:
    lols = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    doc = (  # &lol9; would be 10**9 "lol"s
        f'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY lol0 "lol">{lols}]>'
        f'<urlset xmlns="{NS}">'
        "<url><loc>https://example.com/&lol9;</loc></url>"
        "<url><loc>https://example.com/safe</loc></url>"
        "</urlset>"
    ).encode()
    got: list[SitemapUrl | SitemapRef] = []
    tracemalloc.start()
    started = time.perf_counter()
    try:
        # libxml2 >= 2.13 refuses the declarations outright ("Maximum entity amplification
        # factor exceeded"); older ones keep the references unexpanded and we skip the entry.
        got.extend(parse_sitemap(io.BytesIO(doc), base_url=BASE))
    except SitemapError as exc:
        assert "amplification" in str(exc)  # noqa: PT017
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - started < 1
    assert peak < 5_000_000
    assert got in ([], [SitemapUrl("https://example.com/safe")])


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A TCP socket on 127.0.0.1 that no one should connect to; its http:// URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        yield sock, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def _connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def test_external_entities_are_not_fetched(
    tmp_path: Path, listener: tuple[socket.socket, str]
) -> None:
    sock, origin = listener
    secret = tmp_path / "secret.txt"
    secret.write_text("https://secret.example/leaked")
    doc = (
        f'<?xml version="1.0"?><!DOCTYPE urlset SYSTEM "{origin}/sitemap.dtd" ['
        f'<!ENTITY file SYSTEM "{secret.as_uri()}">'
        f'<!ENTITY net SYSTEM "{origin}/entity">'
        f'<!ENTITY % param SYSTEM "{origin}/param.dtd"> %param;'
        f']><urlset xmlns="{NS}">'
        "<url><loc>&file;</loc></url><url><loc>&net;</loc></url>"
        "<url><loc>https://example.com/ok</loc></url></urlset>"
    ).encode()
    got = parse(doc)
    assert got == [SitemapUrl("https://example.com/ok")]
    assert not _connected(sock), "the parser fetched an external entity or DTD"


def test_xml_comments_and_processing_instructions() -> None:
    doc = urlset(
        "<!-- a comment --><url><loc>https://example.com/a</loc><?pi x?></url>"
        "<url><!-- c --><loc>https://example.com/b</loc></url>"
    )
    assert [e.url for e in parse(doc)] == ["https://example.com/a", "https://example.com/b"]


# --- text sitemaps and feeds ----------------------------------------------------------------


def test_plain_text_sitemap() -> None:
    data = (
        b"\xef\xbb\xbfhttps://example.com/a\r\n"
        b"\n"
        b"   http://EXAMPLE.com/b#frag   \n"
        b"relative/path\n"
        b"ftp://example.com/f\n"
        b"https://example.com/has space\n"
        b"https://example.com/\xff\n"
        b"https://example.com/" + b"x" * 70_000 + b"\n"
        b"https://example.com/last"
    )
    assert parse(data) == [
        SitemapUrl("https://example.com/a"),
        SitemapUrl("http://example.com/b"),
        SitemapUrl("https://example.com/last"),
    ]


def test_text_sitemap_long_lines_across_chunks() -> None:
    long_line = b"https://example.com/" + b"y" * 300_000
    data = b"https://example.com/1\n" + long_line + b"\nhttps://example.com/2\n"
    assert [e.url for e in parse(data)] == ["https://example.com/1", "https://example.com/2"]


def test_binary_data_is_not_a_text_sitemap() -> None:
    got: list[SitemapUrl | SitemapRef] = []
    with pytest.raises(SitemapError, match="binary data"):
        got.extend(parse_sitemap(io.BytesIO(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), base_url=BASE))
    assert got == []


def test_rss_feed() -> None:
    doc = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        b"<link>https://example.com/</link>"
        b"<item><title>one</title><link>https://example.com/1</link>"
        b"<pubDate>Tue, 10 Jun 2003 04:00:00 +0200</pubDate></item>"
        b"<item><link> /2 </link><pubDate>not a date</pubDate></item>"
        b"<item><title>no link</title></item>"
        b"</channel></rss>"
    )
    assert parse(doc) == [
        SitemapUrl("https://example.com/1", datetime(2003, 6, 10, 2, tzinfo=UTC)),
        SitemapUrl("https://example.com/2"),
    ]


def test_atom_feed() -> None:
    doc = (
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">'
        b'<link href="https://example.com/"/><title>t</title>'
        b'<entry><link rel="edit" href="https://example.com/edit/1"/>'
        b'<link href="https://example.com/1"/><updated>2024-05-17T10:20:30Z</updated></entry>'
        b'<entry><link rel="alternate" href="/2"/><published>2024-05-16</published></entry>'
        b'<entry><link rel="enclosure" href="https://example.com/3.mp3"/></entry>'
        b"</feed>"
    )
    assert parse(doc) == [
        SitemapUrl("https://example.com/1", datetime(2024, 5, 17, 10, 20, 30, tzinfo=UTC)),
        SitemapUrl("https://example.com/2", datetime(2024, 5, 16, tzinfo=UTC)),
    ]


# --- streaming: memory stays flat -----------------------------------------------------------


def _write_sitemap(path: Path, entries: int, *, gzipped: bool) -> None:
    """A generated urlset of ``entries`` full <url> entries, written chunk by chunk."""
    with gzip.open(path, "wb", compresslevel=1) if gzipped else open(path, "wb") as out:
        out.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{NS}">\n'.encode())
        for start in range(0, entries, 10_000):
            out.write(
                "".join(
                    f"<url><loc>https://example.com/p/{i}</loc>"
                    f"<lastmod>2024-01-{i % 28 + 1:02d}T12:00:00+00:00</lastmod>"
                    f"<changefreq>daily</changefreq><priority>0.{i % 10}</priority></url>\n"
                    for i in range(start, min(entries, start + 10_000))
                ).encode()
            )
        out.write(b"</urlset>\n")


def _rss_bytes() -> int | None:
    """The resident set size (Linux): it sees libxml2's memory, which tracemalloc does not."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _parse_file(path: Path, expected: int) -> tuple[float, int | None]:
    """Parse ``path`` checking every entry; (seconds taken, peak RSS growth in bytes or None)."""
    baseline = _rss_bytes()
    peak = baseline
    count = 0
    started = time.perf_counter()
    with open(path, "rb") as stream:
        for entry in parse_sitemap(stream, base_url=BASE, max_entries=expected + 1):
            assert isinstance(entry, SitemapUrl)
            if count % 20_000 == 0:
                assert entry.url == f"https://example.com/p/{count}"
                assert entry.priority == (count % 10) / 10
                rss = _rss_bytes()
                if rss is not None and peak is not None:
                    peak = max(peak, rss)
            count += 1
    elapsed = time.perf_counter() - started
    assert count == expected
    growth = None if baseline is None or peak is None else peak - baseline
    return elapsed, growth


def test_streaming_gzip_memory_stays_flat(tmp_path: Path) -> None:
    """300,000 entries (~40 MB of XML, gzipped): RSS, libxml2's memory included, stays flat.

    Without the clearing of each entry and the deletion of its earlier siblings, libxml2 would
    keep the whole tree (over 150 MB here); the RSS sampled while parsing would show it.
    """
    entries = 300_000
    path = tmp_path / "big.xml.gz"
    _write_sitemap(path, entries, gzipped=True)
    elapsed, growth = _parse_file(path, entries)
    shown = "n/a" if growth is None else f"{growth / 1e6:.1f} MB"
    print(
        f"\nsitemap gzip: {entries:,} entries in {elapsed:.1f} s = {entries / elapsed:,.0f} "
        f"entries/s, RSS growth {shown}",
        file=sys.stderr,
    )
    if growth is not None:
        assert growth < 20_000_000


def test_streaming_tracemalloc_peak(tmp_path: Path) -> None:
    """100,000 entries, uncompressed: Python-side allocations peak well under 20 MB.

    tracemalloc slows parsing about fourfold, hence fewer entries than the RSS test above; a
    leak of 200 bytes per entry would still show as 20 MB.
    """
    entries = 100_000
    path = tmp_path / "big.xml"
    _write_sitemap(path, entries, gzipped=False)
    tracemalloc.start()
    try:
        elapsed, _ = _parse_file(path, entries)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(
        f"\nsitemap xml under tracemalloc: {entries:,} entries in {elapsed:.1f} s, "
        f"peak {peak / 1e6:.2f} MB",
        file=sys.stderr,
    )
    assert peak < 20_000_000
