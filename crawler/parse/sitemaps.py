"""Stream a sitemap (sitemaps.org protocol) into URL entries, never holding the document whole.

:func:`parse_sitemap` reads a binary file-like object (the caller downloads the document to a
spooled temp file and hands it over) and yields one :class:`SitemapUrl` per ``<url>`` of a
``<urlset>`` and one :class:`SitemapRef` per ``<sitemap>`` of a ``<sitemapindex>``. It is pure
parsing: it does no network or file I/O of its own, keeps no state between calls, does not
deduplicate, check scope or fetch the sitemaps an index points to (the caller decides all
that), and never closes the stream it is given.

What it accepts
---------------
- **gzip**, detected by its magic bytes ``1f 8b`` (never by URL or ``Content-Type``), and
  decompressed as a stream. One layer only.
- **XML**: the root element decides. ``urlset``/``sitemapindex`` in the sitemaps.org namespace,
  the old Google ones (``http://www.google.com/schemas/sitemap/0.84``, ``0.9``, ``0.90``), no
  namespace, or in fact any namespace: entry and field elements are taken in the root's
  namespace or in none, so a typo in ``xmlns`` does not lose a whole sitemap. Extension
  elements (``image:loc``, ``xhtml:link``, ...) are other namespaces or not direct children of
  an entry, and are ignored. Also an RSS 2.0 feed (``<item><link>``, ``<pubDate>``) and an Atom
  1.0 feed (``<entry><link href>`` with no ``rel`` or ``rel="alternate"``, ``<updated>``), which
  search engines accept as sitemaps. Any other root is a :class:`SitemapError`.
- **plain text** (one absolute URL per line), when the first byte that is not whitespace or a
  UTF-8 BOM is not ``<``. Lines are not resolved against ``base_url``: a text document that is
  not a sitemap would otherwise turn every word into a URL. A NUL byte means binary data, not a
  text sitemap: a :class:`SitemapError`.
- A document that is empty, or whitespace only, yields nothing and raises nothing.

Each entry's URL is canonical (:func:`crawler.urls.resolve_link`, the parser's own function,
with the same ``sort_query``/``strip_tracking`` choices), http(s) only. ``<loc>`` text is
stripped; a relative ``<loc>`` is resolved against ``base_url`` (the protocol demands absolute
URLs; we are lenient). A ``<loc>`` that is empty, not http(s), invalid, longer than
:data:`MAX_URL_CHARS`, or holds markup or an entity reference instead of plain text is skipped
with its entry. The optional fields are parsed leniently and become None when invalid:
``lastmod`` (:func:`parse_lastmod`), ``changefreq`` (lowercased, one of
:data:`CHANGEFREQS`), ``priority`` (a finite number in 0.0..1.0).

Limits and safety
-----------------
Memory stays flat whatever the document: it is fed to an ``lxml.etree.XMLPullParser`` in
chunks of 64 KiB, which reports each entry's end tag, and the entry is cleared and its earlier
siblings deleted once read. At most ``max_bytes`` (decompressed) are read, so a gzip bomb stops
with a :class:`SitemapError`, and at most ``max_entries`` entries are yielded (then the
generator stops, logging a warning). The XML parser never loads a DTD, never touches the
network and never expands entities, so neither XXE (``<!ENTITY x SYSTEM "file:///etc/passwd">``)
nor a billion-laughs document does anything: the entity stays an unexpanded reference, and its
``<loc>`` is skipped. ``huge_tree`` stays off: a single text node over 10 MB is malformed input
to us.

Errors
------
The only exception raised is :class:`SitemapError` (a ``ValueError``), for malformed XML, a
corrupt or truncated gzip stream, a document over ``max_bytes``, a root element that is not a
sitemap, binary data, or a stream that cannot be read. Entries parsed before the problem have
been yielded by then; the caller records a ``parse`` error and keeps them.
"""

from __future__ import annotations

import functools
import gzip
import io
import logging
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Final

from lxml import etree

from crawler.parse.sitemap_fields import parse_lastmod, parse_rfc822, read_changefreq, read_priority
from crawler.urls import canonicalize, resolve_link

__all__ = [
    "MAX_URL_CHARS",
    "SitemapError",
    "SitemapRef",
    "SitemapUrl",
    "parse_sitemap",
]

log = logging.getLogger(__name__)

#: The longest ``<loc>`` (or text line) read as a URL; the protocol's limit is 2,048.
MAX_URL_CHARS: Final = 65536
_MIB: Final = 1 << 20
_CHUNK: Final = 64 * 1024
_GZIP_MAGIC: Final = b"\x1f\x8b"
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
_WHITESPACE: Final = b" \t\r\n\f\v"
_ATOM: Final = "{http://www.w3.org/2005/Atom}"
# Every tag the pull parser reports; which one is an entry depends on the root (see _Kind).
_ENTRY_TAGS: Final = ("{*}url", "{*}sitemap", "{}item", f"{_ATOM}entry")


class SitemapError(ValueError):
    """The document is not a sitemap we can read to the end; entries before it were yielded."""


@dataclass(frozen=True, slots=True)
class SitemapUrl:
    """One ``<url>`` of a ``<urlset>`` (or one line of a text sitemap, or one feed item)."""

    url: str
    """Canonical, http(s) only."""
    lastmod: datetime | None = None
    """Timezone-aware, in UTC; None when absent or invalid."""
    changefreq: str | None = None
    """One of :data:`CHANGEFREQS`, lowercased; None when absent or invalid."""
    priority: float | None = None
    """0.0..1.0; None when absent, not a number, or out of range."""


@dataclass(frozen=True, slots=True)
class SitemapRef:
    """One ``<sitemap>`` of a ``<sitemapindex>``: another sitemap to fetch."""

    url: str
    """Canonical, http(s) only."""
    lastmod: datetime | None = None
    """Timezone-aware, in UTC; None when absent or invalid."""


class _Prefixed:
    """``head``, then the rest of ``stream``: bytes read to sniff the format, given back."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0 or size >= len(self._head):
                data, self._head = self._head, b""
            else:
                data, self._head = self._head[:size], self._head[size:]
            return data
        return self._stream.read(size)

    def seek(self, offset: int, /) -> int:  # typeshed's GzipFile wants it; reading never seeks
        raise io.UnsupportedOperation("seek")


class _Reader:
    """The (decompressed) document in chunks of at most ``_CHUNK``, with a cap on its size.

    Counts every byte it returns and raises :class:`SitemapError` past ``max_bytes``; turns the
    errors of a corrupt gzip stream or a failing read into :class:`SitemapError` too, so they
    reach the caller as one type even when raised inside lxml's ``read()`` calls.
    """

    def __init__(self, read: Callable[[int], bytes], max_bytes: int, gzipped: bool) -> None:
        self._read = read
        self._max_bytes = max_bytes
        self._gzipped = gzipped
        self._total = 0
        self._pushed = b""

    def unread(self, data: bytes) -> None:
        self._pushed = data + self._pushed

    def read(self, size: int = _CHUNK) -> bytes:
        if self._pushed:
            data, self._pushed = self._pushed, b""
            return data
        want = _CHUNK if size <= 0 else min(size, _CHUNK)
        try:
            data = self._read(want)
        except (OSError, EOFError, zlib.error) as exc:
            what = "a corrupt or truncated gzip stream" if self._gzipped else "a read error"
            raise SitemapError(f"cannot read sitemap: {what}: {exc}") from exc
        self._total += len(data)
        if self._total > self._max_bytes:
            where = " after decompression (a gzip bomb?)" if self._gzipped else ""
            raise SitemapError(f"sitemap larger than max_bytes={self._max_bytes}{where}")
        return data


def parse_sitemap(
    stream: BinaryIO,
    *,
    base_url: str,
    max_entries: int = 1_000_000,
    max_bytes: int = 200 * _MIB,
    sort_query: bool = False,
    strip_tracking: bool = False,
) -> Iterator[SitemapUrl | SitemapRef]:
    """Yield the entries of the sitemap in ``stream``, in document order (see the module doc).

    ``base_url`` is the sitemap's own (final) URL, against which a relative ``<loc>`` resolves.
    ``sort_query``/``strip_tracking`` are the crawl's ``[scope]`` choices, as for page links.
    Stops after ``max_entries`` entries (a warning is logged if more followed); reads at most
    ``max_bytes`` of the document, counted after decompression. Raises :class:`SitemapError`,
    and nothing else, after yielding what it could, when the document cannot be read to its
    end. Lazy: nothing is read until the first entry is asked for.
    """
    count = 0
    try:
        head = _read_at_least(stream, len(_GZIP_MAGIC))
        gzipped = head.startswith(_GZIP_MAGIC)
        source = _Prefixed(head, stream)
        gzip_file = gzip.GzipFile(fileobj=source, mode="rb") if gzipped else None
        try:
            reader = _Reader(gzip_file.read if gzip_file else source.read, max_bytes, gzipped)
            first = _sniff(reader)
            if first is None:
                return
            canon = functools.partial(
                resolve_link, base_url, sort_query=sort_query, strip_tracking=strip_tracking
            )
            if first == "<":
                entries = _xml_entries(reader, canon)
            else:
                entries = _text_entries(reader, sort_query, strip_tracking)
            if max_entries <= 0:
                return
            for entry in entries:
                yield entry
                count += 1
                if count >= max_entries:
                    if _has_more(entries):
                        log.warning("sitemap %s: stopped at max_entries=%d", base_url, max_entries)
                    return
        finally:
            if gzip_file is not None:
                gzip_file.close()  # does not close ``stream``
    except SitemapError as exc:
        if count:
            raise SitemapError(f"{exc} (after {count} entries)") from exc
        raise
    except (etree.LxmlError, OSError, EOFError, zlib.error, ValueError) as exc:
        raise SitemapError(f"cannot read sitemap after {count} entries: {exc}") from exc


def _has_more(entries: Iterator[SitemapUrl | SitemapRef]) -> bool:
    """Whether another entry follows; a problem past the limit is no longer ours to report."""
    try:
        return next(entries, None) is not None
    except SitemapError:
        return True


def _read_at_least(stream: BinaryIO, size: int) -> bytes:
    """``size`` bytes from the start of ``stream``, or fewer at its end (reads may be short)."""
    head = b""
    while len(head) < size:
        chunk = stream.read(size - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _sniff(reader: _Reader) -> str | None:
    """``"<"`` for XML, another character for text, None for an empty or blank document.

    Leading whitespace and a UTF-8 BOM are consumed (libxml2 refuses whitespace before
    ``<?xml``, which careless generators emit); the rest is pushed back into ``reader``.
    """
    data = reader.read(_CHUNK)
    while 0 < len(data) < len(_UTF8_BOM) and (more := reader.read(_CHUNK)):
        data += more  # reads may be short: a BOM must be seen whole
    if data.startswith(_UTF16_BOMS):
        reader.unread(data)
        return "<"  # libxml2 reads the encoding from the BOM
    data = data.removeprefix(_UTF8_BOM)
    while data:
        stripped = data.lstrip(_WHITESPACE)
        if stripped:
            reader.unread(stripped)
            return chr(stripped[0])
        data = reader.read(_CHUNK)
    return None


_Canon = Callable[[str], str | None]  # a <loc> → its canonical URL, or None
_EntryReader = Callable[[Any, _Canon, dict[str, str]], SitemapUrl | SitemapRef | None]


@dataclass(frozen=True, slots=True)
class _Kind:
    """What a root element makes of a document: which elements are entries, how to read one."""

    entry_tag: str
    in_channel: bool  # RSS: entries are children of <channel>, not of the root
    read: Callable[
        [Any, Callable[[str], str | None], dict[str, str]], SitemapUrl | SitemapRef | None
    ]
    fields: dict[str, str]  # field element tag → field name


def _kind_of(root: Any) -> _Kind:
    tag = root.tag if isinstance(root.tag, str) else ""
    namespace, _, local = tag[1:].rpartition("}") if tag.startswith("{") else ("", "", tag)
    prefix = f"{{{namespace}}}" if namespace else ""
    if local in ("urlset", "sitemapindex"):
        names = ("loc", "lastmod", "changefreq", "priority")
        fields = {f"{prefix}{name}": name for name in names} | {name: name for name in names}
        if local == "urlset":
            return _Kind(f"{prefix}url", False, _read_url, fields)
        return _Kind(f"{prefix}sitemap", False, _read_ref, fields)
    if tag == "rss":
        return _Kind("item", True, _read_rss_item, {"link": "loc", "pubDate": "lastmod"})
    if tag == f"{_ATOM}feed":
        fields = {f"{_ATOM}updated": "lastmod", f"{_ATOM}published": "published"}
        return _Kind(f"{_ATOM}entry", False, _read_atom_entry, fields)
    shown = (local or repr(root.tag))[:100]
    raise SitemapError(f"not a sitemap: the root element is <{shown}>")


def _fields(entry: Any, fields: dict[str, str]) -> dict[str, str | None]:
    """The first occurrence of each field among the entry's direct children.

    A field that holds markup or an entity reference instead of plain text is None.
    """
    found: dict[str, str | None] = {}
    for child in entry:
        name = fields.get(child.tag)
        if name is not None and name not in found:
            found[name] = None if len(child) else child.text
    return found


def _url_of(loc: str | None, canon: _Canon) -> str | None:
    if loc is None:
        return None
    loc = loc.strip()
    if not loc or len(loc) > MAX_URL_CHARS:
        return None
    return canon(loc)


def _read_url(entry: Any, canon: _Canon, fields: dict[str, str]) -> SitemapUrl | None:
    found = _fields(entry, fields)
    url = _url_of(found.get("loc"), canon)
    if url is None:
        return None
    lastmod = found.get("lastmod")
    return SitemapUrl(
        url,
        parse_lastmod(lastmod) if lastmod is not None else None,
        read_changefreq(found.get("changefreq")),
        read_priority(found.get("priority")),
    )


def _read_ref(entry: Any, canon: _Canon, fields: dict[str, str]) -> SitemapRef | None:
    found = _fields(entry, fields)
    url = _url_of(found.get("loc"), canon)
    if url is None:
        return None
    lastmod = found.get("lastmod")
    return SitemapRef(url, parse_lastmod(lastmod) if lastmod is not None else None)


def _read_rss_item(entry: Any, canon: _Canon, fields: dict[str, str]) -> SitemapUrl | None:
    found = _fields(entry, fields)
    url = _url_of(found.get("loc"), canon)
    if url is None:
        return None
    pub_date = found.get("lastmod")
    return SitemapUrl(url, parse_rfc822(pub_date) if pub_date is not None else None)


def _read_atom_entry(entry: Any, canon: _Canon, fields: dict[str, str]) -> SitemapUrl | None:
    href = None
    for child in entry:
        if child.tag == f"{_ATOM}link" and child.get("rel", "alternate") == "alternate":
            href = child.get("href")
            break
    url = _url_of(href, canon)
    if url is None:
        return None
    found = _fields(entry, fields)
    updated = found.get("lastmod") or found.get("published")
    return SitemapUrl(url, parse_lastmod(updated) if updated is not None else None)


class _Walk:
    """Turns the parser's entry end events into entries, freeing each element once read."""

    def __init__(self, canon: _Canon) -> None:
        self._canon = canon
        self.root: Any = None
        self.kind: _Kind | None = None

    def entries(self, events: Iterator[tuple[str, Any]]) -> Iterator[SitemapUrl | SitemapRef]:
        for _, elem in events:
            if self.kind is None:
                self.root = elem.getroottree().getroot()
                self.kind = _kind_of(self.root)
            kind = self.kind
            if elem.tag != kind.entry_tag:
                continue  # an entry tag of another kind, or an extension's: left to its parent
            parent = elem.getparent()
            container = parent.getparent() if kind.in_channel else parent
            if container is not self.root or (kind.in_channel and parent.tag != "channel"):
                continue  # nested somewhere else: freed with the entry or sibling around it
            entry = kind.read(elem, self._canon, kind.fields)
            elem.clear()
            while elem.getprevious() is not None:
                del parent[0]
            if entry is not None:
                yield entry


def _xml_entries(reader: _Reader, canon: _Canon) -> Iterator[SitemapUrl | SitemapRef]:
    """Feed the document to a pull parser chunk by chunk, yielding entries as they end.

    Why a pull parser we feed ourselves rather than ``iterparse``: after a syntax error,
    ``iterparse`` in lxml 6 raises at once and drops the events of the chunk it was parsing
    (lxml 5 delivered them first), so a sitemap broken after five entries lost all five. The
    events a pull parser has queued stay readable after its ``feed``/``close`` raised, with
    lxml 5 and 6 alike, so every entry before the fault is yielded before the error.
    """
    parser = etree.XMLPullParser(
        events=("end",),
        tag=_ENTRY_TAGS,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    walk = _Walk(canon)
    root = None
    fault: etree.XMLSyntaxError | None = None
    more = True
    while more and fault is None:
        chunk = reader.read(_CHUNK)
        more = bool(chunk)
        try:
            if more:
                parser.feed(chunk)
            else:
                root = parser.close()
        except etree.XMLSyntaxError as exc:
            fault = exc  # the events before it are still queued: yield them first
        yield from walk.entries(parser.read_events())
    if fault is not None:
        raise SitemapError(f"malformed XML: {fault}") from fault
    if walk.kind is None and root is not None:
        _kind_of(root)  # no entry at all: still say when the document is not a sitemap


def _text_entries(reader: _Reader, sort_query: bool, strip_tracking: bool) -> Iterator[SitemapUrl]:
    """One absolute URL per line; a line longer than :data:`MAX_URL_CHARS` is skipped."""
    pending = b""
    skipping = False  # inside a line too long to keep
    while chunk := reader.read(_CHUNK):
        if b"\0" in chunk:
            raise SitemapError("not a sitemap: binary data (a NUL byte) in a text sitemap")
        lines = chunk.split(b"\n")
        lines[0] = pending + lines[0]
        pending = lines.pop()
        for line in lines:
            if skipping:
                skipping = False
            elif (entry := _text_line(line, sort_query, strip_tracking)) is not None:
                yield entry
        if len(pending) > MAX_URL_CHARS:
            pending, skipping = b"", True
    if pending and not skipping and (entry := _text_line(pending, sort_query, strip_tracking)):
        yield entry


def _text_line(line: bytes, sort_query: bool, strip_tracking: bool) -> SitemapUrl | None:
    text = line.strip()
    if not text or len(text) > MAX_URL_CHARS or any(c in text for c in _WHITESPACE):
        return None
    try:
        url = canonicalize(
            text.decode("utf-8"), sort_query=sort_query, strip_tracking=strip_tracking
        )
    except ValueError:  # not UTF-8, or not an absolute http(s) URL
        return None
    return SitemapUrl(url)
