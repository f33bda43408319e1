"""Reading a response's body: what is downloaded, where it goes, and the size cap.

**What is downloaded.** Only a 2xx response whose media type is in ``body_types`` (by default
``text/html`` and ``application/xhtml+xml``) -- or that has no ``Content-Type`` at all, since
browsers sniff such pages and they are mostly HTML. ``body_types=None`` downloads any type (the
robots.txt and sitemap fetchers). Other responses are closed unread (small bodies are drained
so the connection can be reused); ``content_length`` then comes from the header.
**Where the body goes.** Into ``FetchResult.body``, or, when ``fetch`` is given a ``sink`` (a
seekable binary file, e.g. a spooled temp file for a sitemap), into the sink: ``body`` stays
None and ``content_length`` counts the bytes written (bytes read, when ``truncate_body`` cut
the body). Every attempt first rewinds the sink to where it
was when ``fetch`` was called and truncates it there, and a failed attempt leaves it so: after
``fetch`` the sink holds the body of the result, or nothing.
**Size cap.** Counted in *decoded* bytes, read in 64 KiB steps with urllib3's bounded
decompression, so a gzip bomb never inflates past ``max_body_bytes`` + 64 KiB. Over the cap the
attempt fails with ``too_large`` -- unless ``fetch`` is called with ``truncate_body=True``
(robots.txt, RFC 9309 §2.5: parse the first part, ignore the rest): then the body (or sink)
keeps exactly the first ``max_body_bytes`` bytes, the rest is not read, there is no error,
and ``content_length`` (bytes read) is larger than ``max_body_bytes``, which tells it was cut.
**Content codings** (:data:`ACCEPT_ENCODING`): gzip and deflate always; ``br`` and ``zstd``
only when urllib3 can decode them (the ``brotli``/``brotlicffi`` and ``backports.zstd``
packages, dependencies of ours): a coding we cannot decode is never advertised. urllib3 2.6+
decodes all four with ``max_length``, so one ``read1(CHUNK)`` returns at most ``CHUNK``
decoded bytes whatever the ratio (``tests/fetch/test_codings.py`` checks it on bombs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

import requests
import urllib3.exceptions
import urllib3.util.request

from crawler.config import FetchSettings
from crawler.errors import DeadlineError
from crawler.fetch.deadline import Watchdog
from crawler.fetch.response import header_int

CHUNK = 64 * 1024
ACCEPT_ENCODING = ", ".join(urllib3.util.request.ACCEPT_ENCODING.split(","))
"""``gzip, deflate`` plus ``br`` and ``zstd`` when their decoders import: urllib3 builds its
string from the same imports its decoders use, so we advertise exactly what it decodes."""
DRAIN_MAX = 64 * 1024
"""A body we won't use is read and dropped (to keep the connection) only up to this size."""


def read_body(
    response: requests.Response,
    deadline: float,
    *,
    settings: FetchSettings,
    watchdog: Watchdog,
    monotonic: Callable[[], float],
    sink: IO[bytes] | None = None,
    truncate: bool = False,
) -> tuple[bytes | None, int]:
    """(decoded body, bytes read), or (None, bytes read) when it passed the size cap.

    The cap and the deadline are checked after every chunk of at most 64 KiB decoded. With a
    ``sink`` the chunks are written there and the body returned is ``b""``. With
    ``truncate`` a body over the cap is cut to it, and the rest is not read.
    """
    raw = response.raw
    cap = settings.max_body_bytes
    read_timeout = settings.read_timeout_s
    chunks: list[bytes] = []
    size = 0
    clamped = False
    watch = watchdog.arm(deadline - monotonic())
    watchdog.attach(watch, raw.connection)

    def keep(chunk: bytes) -> None:
        if sink is not None:
            sink.write(chunk)
        else:
            chunks.append(chunk)

    try:
        while True:
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise deadline_error(settings.total_timeout, size)
            if remaining < read_timeout:  # near the deadline, a silent socket must not outlast it
                sock = getattr(raw.connection, "sock", None)
                if sock is not None:
                    sock.settimeout(remaining)
                    clamped = True
            try:
                chunk = raw.read1(CHUNK, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError as exc:
                if watch.fired or (clamped and deadline - monotonic() < 0.05):
                    raise deadline_error(settings.total_timeout, size) from exc
                raise
            except Exception as exc:
                if watch.fired:  # the watchdog shut the socket: a deadline, not a reset
                    raise deadline_error(settings.total_timeout, size) from exc
                raise
            if not chunk:
                if watchdog.disarm(watch):  # EOF because the watchdog shut it
                    raise deadline_error(settings.total_timeout, size)
                return b"".join(chunks), size
            size += len(chunk)
            if size > cap:
                if not truncate:
                    return None, size
                keep(chunk[: len(chunk) - (size - cap)])
                return b"".join(chunks), size
            keep(chunk)
    finally:
        watchdog.disarm(watch)
        response.close()


def deadline_error(total_timeout: float, size: int | None) -> DeadlineError:
    """``size`` bytes of body read; None: still waiting for the status line and headers."""
    where = "before the response headers" if size is None else f"after {size} bytes of body"
    return DeadlineError(f"total deadline of {total_timeout:g}s passed {where}")


def discard(response: requests.Response) -> None:
    """Drop a body we won't use; drain a small one first so the connection can be reused."""
    length = header_int(response.headers.get("Content-Length"))
    if length is not None and length <= DRAIN_MAX:
        response.raw.drain_conn()
    response.close()
