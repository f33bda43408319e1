"""Bytes → text in the HTML standard's encoding-sniffing order, so titles and text read as a
browser shows them. A leaf of :mod:`crawler.parse`: stdlib only.

The order (HTML standard, "determining the character encoding"): a byte-order mark; the
``Content-Type`` header's charset; a ``<meta>`` prescan of the first 1,024 bytes; then a
guess. Where the standard lets the guess be windows-1252 (and a browser shows mojibake for
undeclared UTF-8), UTF-8 wins whenever the bytes read as UTF-8 (issue 15). Labels are read as
the Encoding Standard reads them: ``latin1``, ``ascii`` and ``iso-8859-1`` are windows-1252;
``utf-16``/``utf-32`` in a ``<meta>`` mean UTF-8 (ASCII-compatible bytes cannot be UTF-16), and
``x-user-defined`` there means windows-1252. Bytes an encoding cannot take become U+FFFD.

The parser is handed ``str``: Lexbor, given bytes, assumes UTF-8 (docs/performance.md).
"""

from __future__ import annotations

import codecs
import re

__all__ = ["decode_html", "encoding_label", "prescan", "usable_charset"]

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)

_WINDOWS_1252_LABELS = frozenset(
    {
        "ansi_x3.4-1968", "ascii", "cp1252", "cp819", "csisolatin1", "ibm819", "iso-8859-1",
        "iso-ir-100", "iso8859-1", "iso88591", "iso_8859-1", "iso_8859-1:1987", "l1", "latin1",
        "us-ascii", "windows-1252", "x-cp1252",
    }
)  # fmt: skip
"""The Encoding Standard's labels of windows-1252 (browsers never decode strict Latin-1)."""

_UNUSABLE_CODECS = frozenset(
    {"idna", "punycode", "undefined", "raw_unicode_escape", "unicode_escape", "mbcs", "oem"}
)
_USER_DEFINED = "x-user-defined"


def _whatwg_1252(error: UnicodeError) -> tuple[str, int]:
    """windows-1252 as the Encoding Standard defines it: the five bytes Python's cp1252 leaves
    undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) are the C1 controls of the same value."""
    assert isinstance(error, UnicodeDecodeError)
    return "".join(chr(b) for b in error.object[error.start : error.end]), error.end


codecs.register_error("crawler-whatwg-1252", _whatwg_1252)


def encoding_label(label: str | None) -> str | None:
    """The encoding a label names (a Python codec name, or ``x-user-defined``); None for a
    label no decoder here knows, a non-text codec, or one with control characters."""
    if not label:
        return None
    label = label.strip("\t\n\f\r ").lower()
    if not label or not label.isprintable():
        return None
    if label in _WINDOWS_1252_LABELS:
        return "cp1252"
    if label == _USER_DEFINED:
        return _USER_DEFINED
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _UNUSABLE_CODECS:
        return None
    return info.name


def usable_charset(charset: str | None) -> str | None:
    """A header's charset if it can decode text; None (sniff instead) otherwise."""
    return encoding_label(charset)


# -- the <meta> prescan ----------------------------------------------------------------------

_PRESCAN_BYTES = 1024
_TOKEN = re.compile(
    rb"<!--.*?-->|<meta[\t\n\f\r /]|</?[a-zA-Z][^\t\n\f\r />]*|<[!/?][^>]*>", re.S | re.I
)
_ATTR = re.compile(
    rb"[\t\n\f\r /]*(?P<name>[^\t\n\f\r /=>][^\t\n\f\r /=>]*)[\t\n\f\r ]*"
    rb"(?:=[\t\n\f\r ]*(?P<value>\"[^\"]*\"?|'[^']*'?|[^\t\n\f\r >]*))?"
)
_META_END = (b"\t", b"\n", b"\f", b"\r", b" ", b"/")
_CONTENT_CHARSET = re.compile(
    rb"charset[\t\n\f\r ]*=[\t\n\f\r ]*(\"[^\"]*\"|'[^']*'|[^\t\n\f\r ;]+)", re.I
)


def _attributes(head: bytes, pos: int) -> tuple[dict[bytes, bytes], int]:
    """The attributes of the tag whose name ends at ``pos``, first value of each name kept,
    and where the tag ends."""
    attrs: dict[bytes, bytes] = {}
    while pos < len(head):
        if head[pos : pos + 1] == b">":
            return attrs, pos + 1
        m = _ATTR.match(head, pos)
        if m is None or m.end() == pos:
            pos += 1
            continue
        value = m.group("value") or b""
        if value[:1] in (b'"', b"'"):
            value = value[1:].rstrip(value[:1])
        attrs.setdefault(m.group("name").lower(), value)
        pos = m.end()
    return attrs, pos


def _meta_encoding(attrs: dict[bytes, bytes]) -> str | None:
    if b"charset" in attrs:
        label: bytes | None = attrs[b"charset"]
    elif attrs.get(b"http-equiv", b"").lower() == b"content-type" and b"content" in attrs:
        m = _CONTENT_CHARSET.search(attrs[b"content"])
        label = m.group(1).strip(b"\"'") if m else None
    else:
        return None
    name = encoding_label(label.decode("ascii", "replace")) if label is not None else None
    if name is None:
        return None
    if name.startswith(("utf-16", "utf_16", "utf-32", "utf_32")):
        return "utf-8"  # the standard: a meta cannot declare an ASCII-incompatible encoding
    return "cp1252" if name == _USER_DEFINED else name


def prescan(body: bytes) -> str | None:
    """The encoding a ``<meta charset>`` or ``http-equiv=Content-Type`` in the first 1,024
    bytes declares (comments skipped, the first usable declaration wins), as the standard's
    prescan finds it; None when there is none."""
    head = body[:_PRESCAN_BYTES]
    pos = 0
    while True:
        m = _TOKEN.search(head, pos)
        if m is None:
            return None
        token = m.group()
        if token[:5].lower() == b"<meta" and token[5:6] in _META_END:
            attrs, pos = _attributes(head, m.end() - 1)
            found = _meta_encoding(attrs)
            if found is not None:
                return found
        elif token[1:2].isalpha() or token[:2] == b"</":
            _, pos = _attributes(head, m.end())  # another tag: skip its attributes
        else:
            pos = m.end()


# -- decoding ---------------------------------------------------------------------------------


def _decode(body: bytes, encoding: str) -> str:
    if encoding == _USER_DEFINED:  # bytes 0x80-0xFF are U+F780-U+F7FF
        return "".join(chr(b) if b < 0x80 else chr(0xF700 + b) for b in body)
    if encoding == "cp1252":
        return body.decode("cp1252", errors="crawler-whatwg-1252")
    return body.decode(encoding, errors="replace")


_NON_ASCII_DECODED = re.compile("[^\x00-\x7f\ufffd]")


def detect(body: bytes) -> str:
    """The text when nothing declares an encoding: UTF-8 when the bytes are UTF-8 (or hold
    valid non-ASCII UTF-8 among a few bad bytes, which become U+FFFD rather than mojibake),
    else windows-1252, the browsers' fallback for Western pages."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("utf-8", errors="replace")
        if _NON_ASCII_DECODED.search(text):
            return text
        return _decode(body, "cp1252")


def decode_html(body: bytes, charset: str | None) -> str:
    """The page as text, in the standard's order: BOM, the header's ``charset``, the
    ``<meta>`` prescan, then :func:`detect`."""
    for bom, by_bom in _BOMS:
        if body.startswith(bom):
            return _decode(body[len(bom) :], by_bom)
    encoding = encoding_label(charset) or prescan(body)
    return detect(body) if encoding is None else _decode(body, encoding)
