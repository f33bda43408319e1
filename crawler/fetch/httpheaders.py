"""A fast path for ``http.client``'s response-header parsing, identical in result.

``http.client`` parses every response's header block with the ``email`` package's
``FeedParser``: a general MIME parser (line cracking by regular expression, envelope lines,
continuation lines, multipart bodies) run on a dozen ``Name: value`` lines. On the throughput
benchmark that was ~0.15 ms of a ~2.5 ms page, in the process that is the crawl's bottleneck
(``docs/performance.md``), and requests and urllib3 both go through it.

:func:`install` replaces ``http.client.parse_headers`` with :func:`parse_headers`, which builds
the same ``HTTPMessage`` directly when the block is plain: every line a token, a colon and a
value without a bare CR, ended by an empty line, and no ``Content-Type`` that would make the
email parser look for MIME parts. Anything else (folded lines, a line without a colon, an
envelope ``From`` line, a missing blank line, multipart or ``message/*`` types, the odd bytes
of a hostile server) goes to the original function, given the same bytes again.
``tests/fetch/test_httpheaders.py`` checks that both give the same message, attribute for attribute,
on generated header blocks.
"""

from __future__ import annotations

import http.client
import io
import re
from typing import Any, BinaryIO

_ORIGINAL = http.client.parse_headers
_read_headers = getattr(http.client, "_read_headers", None)

_PLAIN_LINE = re.compile(r"([\x21-\x39\x3b-\x7e]+):[ \t]*([^\r\n]*?)\r?\n")
"""A header line the email parser would store as ``(name, value)`` with nothing else to do:
the name is what its header pattern accepts (minus the empty name, a defect), the value is
what it keeps once leading blanks and the line end are stripped."""


def parse_headers(
    fp: BinaryIO, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage
) -> Any:
    """``http.client.parse_headers``, without the email parser for a plain header block."""
    assert _read_headers is not None
    lines = _read_headers(fp)
    parsed = _plain(lines)
    if parsed is None:  # the original, on the same bytes: defects and all, on any Python
        return _ORIGINAL(io.BytesIO(b"".join(lines)), _class)
    message = _class()
    message._headers = parsed  # type: ignore[attr-defined]  # what Message.set_raw fills
    message.set_payload("")  # the email parser leaves the (empty) rest as the payload
    return message


def _plain(lines: list[bytes]) -> list[tuple[str, str]] | None:
    if not lines or lines[-1] not in (b"\r\n", b"\n"):
        return None  # EOF before the blank line: let the email parser decide what that is
    headers: list[tuple[str, str]] = []
    match = _PLAIN_LINE.fullmatch
    for raw in lines[:-1]:
        m = match(raw.decode("iso-8859-1"))
        if m is None:
            return None
        name, value = m.groups()
        if name.lower() == "content-type" and (
            "multipart/" in (v := value.lower()) or "message/" in v
        ):
            return None  # the email parser would go looking for MIME parts in the (empty) body
        headers.append((name, value))
    return headers


def install() -> bool:
    """Use the fast path in this process; False (and nothing changed) if this Python's
    ``http.client`` is not the one it was checked against."""
    if _read_headers is None:
        return False
    if http.client.parse_headers is parse_headers:
        return True
    if http.client.parse_headers is not _ORIGINAL or _ORIGINAL.__code__.co_argcount != 2:
        return False
    http.client.parse_headers = parse_headers  # type: ignore[assignment]
    return True
