"""The exception tree, and ``classify``: how any failure becomes an ``ErrorKind``.

Failures are data (DESIGN §2.3): a fetch that fails becomes an ``errors`` row whose ``kind`` is
one of the public values of :class:`ErrorKind`. This module is the one place that maps the
exceptions raised by ``requests``/``urllib3``/``socket`` (and our own) onto those kinds.

::

    CrawlerError                     base of everything we raise on purpose
    ├── UsageError                   bad input from the user: exit status 2, one line, no traceback
    │   ├── ConfigError              a settings file, env var or flag that is wrong
    │   ├── SeedFileError            a seed file that is missing, unreadable or has no valid seed
    │   └── DatabaseError            a database that is not ours, or is newer than this code
    └── FetchError                   one failed fetch attempt; carries its ErrorKind
        ├── TooLargeError            the decoded body passed ``max_body_bytes``
        ├── RedirectError            a loop, too many hops, or a hop to a scheme/host we refuse
        ├── DeadlineError            the per-request total deadline passed
        └── HTTPStatusError          a status we treat as a failure (retryable or not)

``classify`` must order its checks: ``requests.ConnectTimeout`` is both a ``ConnectionError``
and a ``Timeout``; ``SSLError`` is a ``ConnectionError`` too.
"""

from __future__ import annotations

import enum
import http
import http.client
import socket
from collections.abc import Iterator


class ErrorKind(enum.StrEnum):
    """Stored by value in ``errors.kind``: these strings are the public contract."""

    DNS = "dns"
    CONNECT = "connect"
    TIMEOUT = "timeout"
    TLS = "tls"
    HTTP_STATUS = "http_status"
    TOO_LARGE = "too_large"
    REDIRECT = "redirect"
    ROBOTS = "robots"
    CONTENT = "content"
    PARSE = "parse"
    OTHER = "other"


class CrawlerError(Exception):
    """Base of every exception the crawler raises on purpose."""


class UsageError(CrawlerError):
    """Input from the user is wrong; the CLI prints the message alone and exits with status 2."""


class ConfigError(UsageError):
    """A setting is unknown, of the wrong type or out of range; the message names key and source."""


class SeedFileError(UsageError):
    """The seed file cannot be read or holds no valid seed."""


class DatabaseError(UsageError):
    """The database is not a crawler database, or was migrated by a newer version."""


class FetchError(CrawlerError):
    """One failed fetch attempt, already classified."""

    kind: ErrorKind = ErrorKind.OTHER

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class TooLargeError(FetchError):
    kind = ErrorKind.TOO_LARGE


class RedirectError(FetchError):
    kind = ErrorKind.REDIRECT


class DeadlineError(FetchError):
    kind = ErrorKind.TIMEOUT


class HTTPStatusError(FetchError):
    kind = ErrorKind.HTTP_STATUS


def _caused_by_dns(exc: BaseException) -> bool:
    """Walk the cause/context chain and the args: urllib3 wraps gaierror several levels deep."""
    import urllib3.exceptions

    return _in_chain(exc, (socket.gaierror, urllib3.exceptions.NameResolutionError))


def _malformed_head(exc: BaseException) -> bool:
    """True when the server answered with something that is not an HTTP status line and
    headers (an HTTP/0.9 body, garbage, a header line too long), as opposed to closing the
    connection without a word (``RemoteDisconnected``, a subclass of ``BadStatusLine``)."""
    return _in_chain(
        exc,
        (http.client.HTTPException,),  # BadStatusLine, LineTooLong, UnknownProtocol, ...
        unless=(http.client.RemoteDisconnected, http.client.IncompleteRead),
    )


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it: causes, contexts, args, and urllib3's ``reason``
    (a failed DNS lookup hides several levels down), each once."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (current.__cause__, current.__context__, *current.args):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)


def _in_chain(
    exc: BaseException,
    kinds: tuple[type[BaseException], ...],
    unless: tuple[type[BaseException], ...] = (),
) -> bool:
    """True when an instance of ``kinds`` (and not of ``unless``) is in ``exc``'s chain."""
    return any(isinstance(e, kinds) and not isinstance(e, unless) for e in chain(exc))


def classify(exc: BaseException) -> ErrorKind:
    """Map an exception from one fetch attempt to its public ``ErrorKind``.

    Order matters: TLS before connect (``SSLError`` is a ``ConnectionError``), a bare urllib3
    ``NewConnectionError`` before timeouts (it subclasses ``ConnectTimeoutError``), timeouts before
    connect (``ConnectTimeout`` is both), DNS inside connect (a failed lookup surfaces as a
    ``ConnectionError`` whose cause is ``socket.gaierror``), and a response head that is not
    HTTP (``BadStatusLine``: an HTTP/0.9 answer, a garbage status line) inside connect too, as
    ``content``; a server that closed without a word (``RemoteDisconnected``) stays ``connect``.
    """
    if isinstance(exc, FetchError):
        return exc.kind
    # Imported here: parser processes use this module and never fetch (requests and urllib3
    # would be a third of their memory).
    import requests
    import urllib3.exceptions

    if isinstance(exc, requests.exceptions.SSLError | urllib3.exceptions.SSLError):
        return ErrorKind.TLS
    if isinstance(exc, urllib3.exceptions.NewConnectionError | socket.gaierror):
        # urllib3's NewConnectionError (NameResolutionError too) subclasses ConnectTimeoutError.
        return ErrorKind.DNS if _caused_by_dns(exc) else ErrorKind.CONNECT
    if isinstance(
        exc,
        requests.exceptions.Timeout
        | urllib3.exceptions.TimeoutError  # raised bare while streaming a body
        | socket.timeout
        | TimeoutError,
    ):
        return ErrorKind.TIMEOUT
    if isinstance(exc, requests.exceptions.TooManyRedirects | requests.exceptions.InvalidSchema):
        return ErrorKind.REDIRECT
    if isinstance(
        exc,
        requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError
        | urllib3.exceptions.ProtocolError
        | urllib3.exceptions.DecodeError,
    ):
        return ErrorKind.CONTENT
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError):
        if _caused_by_dns(exc):
            return ErrorKind.DNS
        if _malformed_head(exc):  # an answer that is not HTTP: the response, not the network
            return ErrorKind.CONTENT
        return ErrorKind.CONNECT
    return ErrorKind.OTHER


def describe(exc: BaseException) -> str:
    """A one-line message for an ``errors`` row: the class name and the first line of the text."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def http_status_message(status: int, reason: str | None = None) -> str:
    """``HTTP 404 Not Found``: the message of an ``http_status`` error row."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = reason or ""
    return f"HTTP {status} {phrase}".rstrip()
