"""Hypothesis properties the other test files do not state yet.

Already in ``test_urls.py``: ``canonicalize`` is idempotent and raises only ValueError on any
string; ``resolve_link`` never raises and returns canonical URLs; ``mask_credentials`` never
raises. Already in ``test_parser.py``: ``parse_html`` never raises on random bytes, nor on random
markup with four charsets. Added here: ``resolve`` and ``host_key`` on arbitrary text, ``Scope``
on arbitrary URLs, ``parse_html`` with any charset name, any page URL and every option on, the
masking of every credential spelling, and the seed reader on arbitrary bytes.
"""

from __future__ import annotations

import io
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler.parse.soup import parse_html
from crawler.seeds import (
    MAX_LINE_BYTES,
    Seed,
    SeedProblem,
    _read_lines,  # the reader behind read_seed_file, here on an in-memory file
    parse_seed_lines,
    read_seed_file,
)
from crawler.urls import Scope, canonicalize, host_key, mask_credentials, resolve, resolve_link

_URL_ALPHABET = st.sampled_from(
    [*"aZ09:/?#@[]%.\\-_~ \t\n", "http://", "https://", "//", "..", "%2e", "é", "\x00", "\ud800"]
)
URLISH = st.one_of(st.text(), st.lists(_URL_ALPHABET, max_size=30).map("".join))


@settings(max_examples=500, deadline=None)
@given(URLISH, URLISH)
def test_resolve_never_raises(base: str, href: str) -> None:
    result = resolve(base, href)
    assert result is None or isinstance(result, str)


@settings(max_examples=500, deadline=None)
@given(URLISH)
def test_host_key_raises_only_value_error_and_is_stable(url: str) -> None:
    try:
        key = host_key(url)
    except ValueError:
        return
    assert key.startswith(("http://", "https://"))
    assert key.rsplit(":", 1)[1].isdigit()
    assert host_key(key) == key


@settings(max_examples=300, deadline=None)
@given(URLISH, URLISH)
def test_scope_never_raises(seed: str, url: str) -> None:
    try:
        scope = Scope(seed_hosts=frozenset({host_key(seed)}))
    except ValueError:
        scope = Scope()
    assert isinstance(scope.allows(url), bool)


CHARSETS = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20),
    st.sampled_from(
        [
            "utf-8",
            "UTF-16",
            "utf-16-le",
            "utf-32",
            "utf-7",
            "latin-1",
            "x-user-defined",
            "iso-2022-jp",
            "shift_jis",
            "gb18030",
            "cp037",
            "rot13",
            "hex",
            "base64",
            "idna",
            "punycode",
            "undefined",
            "utf-8-sig",
            "mbcs",
            "",
            " utf-8 ",
            "\x7f",
        ]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=1500), CHARSETS, URLISH, st.booleans())
def test_parse_html_never_raises_whatever_the_charset_and_url(
    body: bytes, charset: str | None, url: str, flag: bool
) -> None:
    page = parse_html(
        body, url, charset=charset, sort_query=flag, strip_tracking=not flag, keep_text=True
    )
    assert all(link.url.startswith(("http://", "https://")) for link in page.links)
    assert page.text is not None
    if page.title is not None:
        page.title.encode("utf-8")  # no lone surrogates: the title is storable


@pytest.mark.parametrize("charset", ["\x00", "\x1f", "utf-8\x00"])
@pytest.mark.parametrize("with_extract", [False, True])
def test_parse_html_with_a_control_character_in_the_charset(
    charset: str, with_extract: bool
) -> None:
    def extract(_soup: object) -> tuple[None, tuple[str, ...]]:
        return None, ()

    page = parse_html(
        b"<title>t</title><a href='/a'>a</a>",
        "http://a.example/",
        charset=charset,
        extract=extract if with_extract else None,
    )
    assert page.title == "t"


_CRED_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=%"


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["http", "https", "HTTP", "ftp", "ws"]),
    st.sampled_from(["://", ":/", ":\\\\", ":"]),
    st.text(_CRED_CHARS, max_size=8),
    st.text(_CRED_CHARS, min_size=6, max_size=20).filter(lambda s: any(c.isalnum() for c in s)),
    st.sampled_from(["example.com", "127.0.0.1:8080", "[::1]", "h"]),
    st.sampled_from(["", "/", "/p?q=1", "#f", "/a@b"]),
)
def test_masked_credentials_never_show_the_password(
    scheme: str, sep: str, user: str, password: str, host: str, rest: str
) -> None:
    url = f"{scheme}{sep}{user}:{password}@{host}{rest}"
    masked = mask_credentials(url)
    assert f":{password}@" not in masked
    assert mask_credentials(masked) == masked
    try:
        canonicalize(url)
    except ValueError as exc:  # its message ends up in logs: masked too
        message = str(exc)
    else:
        return
    assert f":{password}@" not in message


LINE = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"http://a.example/\n",
            b"https://u:pw@b.example/x\n",
            b"# c\n",
            b"\r\n",
            b"\n",
            b"\xef\xbb\xbfhttp://bom.example/\n",
            b"http://exa mple.com/\n",
            b"file:///etc/passwd\n",
            b"\xff\xfe\n",
            b"http://a.example/" + b"a" * (MAX_LINE_BYTES + 10) + b"\n",
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, max_size=30).map(b"".join))
def test_seed_reader_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    items = list(_read_lines(io.BytesIO(data), "seed.txt"))
    numbers = [item.line_no for item in items]
    assert numbers == sorted(set(numbers)), "one item per line, in order"
    assert all(1 <= n <= data.count(b"\n") + 1 for n in numbers)
    for item in items:
        if isinstance(item, Seed):
            assert canonicalize(item.url) == item.url
            assert "@" not in item.url.split("/", 3)[2], "no credentials in a seed"
            assert resolve_link(item.url, "") == item.url
        else:
            assert isinstance(item, SeedProblem)
            assert str(item).startswith(f"seed.txt:{item.line_no}: ")
            assert len(item.text) <= 120
            assert "pw@" not in item.text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=20))
def test_parse_seed_lines_never_raises_on_any_text(lines: list[str]) -> None:
    for item in parse_seed_lines(lines):
        assert isinstance(item, Seed | SeedProblem)


def test_read_seed_file_is_the_reader_used_above(tmp_path: Path) -> None:
    path = tmp_path / "seed.txt"
    data = b"http://a.example/\n\xff\n# c\nhttp://u:pw@b.example/\n"
    path.write_bytes(data)
    assert list(read_seed_file(path)) == list(_read_lines(io.BytesIO(data), str(path)))
