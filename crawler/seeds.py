"""Stream a seed file into canonical URLs and per-line problems, never holding the file whole.

A seed file has one absolute http(s) URL per line. Blank lines and lines whose first non-blank
character is ``#`` are skipped; whitespace around a URL, CRLF line ends and a UTF-8 BOM are
tolerated. Every other line becomes either a :class:`Seed` (its URL canonical, as stored in
``urls.url``) or a :class:`SeedProblem` that names the line and says what is wrong with it, so
the CLI can report every bad line at once instead of stopping at the first.

Memory stays bounded whatever the file: lines are read one at a time, a line longer than
:data:`MAX_LINE_BYTES` is read in pieces of that size and skipped, and bytes are decoded line by
line, so one line of binary junk is one problem, not a crash. A file whose first 8 KiB hold a
NUL byte is not text at all (random bytes, an image, UTF-16): :func:`read_seed_file` refuses it
whole, with one ``SeedFileError``, instead of a problem for each of its lines. This module does
not deduplicate (the database does) and does not decide that a file with no valid seed is an
error (the caller counts the Seeds); the only exception it raises is ``SeedFileError``, for a
file it cannot open, read or take for text.

A URL carrying credentials (``http://user:secret@host/``) is a problem, not a seed: the crawler
stores every URL it fetches in ``urls.url`` and logs it, so a password in a seed would end up in
clear in the database, the logs and every export. The problem's text shows the line masked
(``http://***:***@host/``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from crawler.errors import SeedFileError
from crawler.urls import canonicalize, has_userinfo, mask_credentials

__all__ = [
    "MAX_LINE_BYTES",
    "TEXT_CHECK_BYTES",
    "Seed",
    "SeedProblem",
    "parse_seed_lines",
    "read_seed_file",
]

#: The longest line read whole: 64 KiB. Browsers and servers give up on URLs far shorter.
MAX_LINE_BYTES: Final = 65536
#: The first block of a seed file, looked at for a NUL byte before anything is read as lines.
TEXT_CHECK_BYTES: Final = 8192
_SHOWN_CHARS: Final = 120  # of an offending line, in a problem's text
_BOM: Final = "\ufeff"
_BOM_BYTES: Final = _BOM.encode("utf-8")
_INNER_WHITESPACE: Final = re.compile(r"\s")
_CREDENTIALS_REFUSED: Final = (
    "credentials in a seed URL are refused (they would be stored in the database in clear)"
)


@dataclass(frozen=True, slots=True)
class Seed:
    """One seed URL, canonical, with the line it came from."""

    line_no: int
    url: str


@dataclass(frozen=True, slots=True)
class SeedProblem:
    """One line that is not a seed, and why, ready for the CLI to print.

    ``text`` is the line with credentials masked and cut to about 120 characters, so a problem
    can be printed or logged without leaking a password or flooding a terminal. ``source`` names
    the file (its path as given, or ``<seeds>`` for lines not read from a file) so ``str()``
    gives the whole line the CLI prints: ``seed.txt:12: not an absolute http(s) URL: 'foo/bar'``.
    """

    line_no: int
    text: str
    reason: str
    source: str = "<seeds>"

    def __str__(self) -> str:
        # repr() quotes the text and escapes control characters a terminal would act on.
        return f"{self.source}:{self.line_no}: {self.reason}: {self.text!r}"


def _shown(text: str) -> str:
    masked = mask_credentials(text)
    if len(masked) > _SHOWN_CHARS:
        return masked[: _SHOWN_CHARS - 1] + "…"
    return masked


def _parse_line(line_no: int, line: str, source: str) -> Seed | SeedProblem | None:
    """A Seed, a SeedProblem, or None for a line that holds nothing (blank or a comment)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if _INNER_WHITESPACE.search(text):
        # Most likely two URLs, or a URL and a remark; a real space in a URL is written %20.
        return SeedProblem(line_no, _shown(text), "whitespace inside the URL", source)
    try:
        url = canonicalize(text)
    except ValueError:
        return SeedProblem(line_no, _shown(text), "not an absolute http(s) URL", source)
    if has_userinfo(text):  # the canonical form drops credentials: refuse them instead
        return SeedProblem(line_no, _shown(text), _CREDENTIALS_REFUSED, source)
    return Seed(line_no, url)


def parse_seed_lines(
    lines: Iterable[str], *, source: str = "<seeds>"
) -> Iterator[Seed | SeedProblem]:
    """Seeds and problems from lines already decoded (with or without their line ends).

    Lazy: one line is looked at per item asked for. Line numbers count from 1 and include the
    skipped blank and comment lines, so they match what an editor shows.
    """
    for line_no, line in enumerate(lines, start=1):
        if line_no == 1:
            line = line.removeprefix(_BOM)
        if len(line) > MAX_LINE_BYTES:
            too_long = f"line longer than {MAX_LINE_BYTES} characters"
            yield SeedProblem(line_no, _shown(line[: _SHOWN_CHARS * 2]), too_long, source)
            continue
        item = _parse_line(line_no, line, source)
        if item is not None:
            yield item


def read_seed_file(path: str | Path) -> Generator[Seed | SeedProblem, None, None]:
    """Seeds and problems from the file at ``path``, streamed.

    The file is opened now, so a missing, unreadable or directory path raises ``SeedFileError``
    at the call (``cannot read seed file 'x.txt': No such file or directory``), not at the first
    ``next()``; so does a file that is not text (:func:`_not_text`). The returned generator
    closes the file when exhausted; ``close()`` it (or drop it) if you stop early. A read error
    part-way through is a ``SeedFileError`` too.
    """
    name = str(path)
    try:
        # The generator below owns and closes it; the buffer holds the block _not_text looks at.
        handle = io.BufferedReader(io.FileIO(path, "rb"), TEXT_CHECK_BYTES)
        why = _not_text(handle.peek(TEXT_CHECK_BYTES)[:TEXT_CHECK_BYTES])
    except OSError as exc:
        raise _cannot_read(name, exc) from None
    if why is not None:
        handle.close()
        raise SeedFileError(f"seed file {name!r} is not text ({why}): give one URL per line")
    return _read_lines(handle, name)


def _not_text(head: bytes) -> str | None:
    """Why the first block of a file shows it is not text, or None: a NUL byte, the rule git and
    GNU grep apply. Random bytes, images, archives, executables and UTF-16 all hold one early;
    a text file in another 8-bit encoding does not, and is read line by line (its lines that are
    not UTF-8 are problems, which the CLI shows a few of)."""
    nul = head.find(b"\0")
    if nul < 0:
        return None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16; save it as UTF-8"
    return f"a NUL byte at byte {nul}"


def _cannot_read(name: str, exc: OSError) -> SeedFileError:
    return SeedFileError(f"cannot read seed file {name!r}: {exc.strerror or exc}")


def _read_lines(handle: BinaryIO, name: str) -> Generator[Seed | SeedProblem, None, None]:
    with handle:
        line_no = 0
        while True:
            try:
                raw = handle.readline(MAX_LINE_BYTES + 1)
                too_long = len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n")
                if too_long:
                    _skip_rest_of_line(handle)
            except OSError as exc:
                raise _cannot_read(name, exc) from None
            if not raw:
                return
            line_no += 1
            if too_long:
                head = raw[: _SHOWN_CHARS * 4].decode("utf-8", "replace")
                reason = f"line longer than {MAX_LINE_BYTES} bytes"
                yield SeedProblem(line_no, _shown(head), reason, name)
                continue
            if line_no == 1:
                raw = raw.removeprefix(_BOM_BYTES)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                shown = _shown(raw.decode("utf-8", "replace").strip())
                yield SeedProblem(line_no, shown, "not valid UTF-8", name)
                continue
            item = _parse_line(line_no, line, name)
            if item is not None:
                yield item


def _skip_rest_of_line(handle: BinaryIO) -> None:
    """Read past the end of an over-long line in bounded pieces, keeping none of them."""
    while True:
        piece = handle.readline(MAX_LINE_BYTES)
        if not piece or piece.endswith(b"\n"):
            return
