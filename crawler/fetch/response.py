"""What a fetch learned (:class:`FetchOutcome`) and how a response is read: headers, a failure:
``Retry-After``, ``Content-Type``, integer headers, the kind of a failed attempt, the form of a
redirect target. Pure functions."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import Cookie
from typing import Any

import ada_url
import requests
import requests.cookies
import urllib3.exceptions

from crawler import errors
from crawler.errors import ErrorKind
from crawler.records import ErrorRecord, FetchResult
from crawler.urls import mask_credentials


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """What one :meth:`Fetcher.fetch` learned."""

    result: FetchResult | None
    """The last HTTP response of the last attempt (any status), or None if it received none."""
    errors: tuple[ErrorRecord, ...] = ()
    """One per failed attempt; the last is ``final`` when the fetch failed for good."""

    @property
    def failed(self) -> bool:
        """True when the fetch failed for good (its last error is final)."""
        return bool(self.errors) and self.errors[-1].final


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One attempt: its response (if any), its failure (if any), and whether to try again."""

    number: int
    result: FetchResult | None
    kind: ErrorKind | None = None
    message: str = ""
    at: datetime | None = None
    status_code: int | None = None
    retryable: bool = False


def parse_retry_after(value: str, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delay-seconds or an HTTP date; None if invalid.

    A date in the past gives 0. Fractional seconds are accepted although RFC 9110 says integer.
    """
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds else None  # rejects NaN
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def dns_is_temporary(exc: BaseException) -> bool:
    """True when a ``socket.gaierror`` in the chain is ``EAI_AGAIN`` (try again later)."""
    for current in errors.chain(exc):
        if isinstance(current, socket.gaierror):
            return current.errno == socket.EAI_AGAIN
    return False


def classify_attempt(exc: BaseException) -> tuple[ErrorKind, bool]:
    """The kind of a failed attempt, and whether it is worth another attempt."""
    kind = errors.classify(exc)
    if kind is ErrorKind.CONTENT:
        # A transfer cut short (reset, IncompleteRead) is transient; a body that will not
        # decode will not decode next time either.
        broken = isinstance(
            exc, urllib3.exceptions.ProtocolError | requests.exceptions.ChunkedEncodingError
        )
        return kind, broken
    if kind is ErrorKind.DNS:
        return kind, dns_is_temporary(exc)
    return kind, kind in (ErrorKind.CONNECT, ErrorKind.TIMEOUT)


def media_type(header: str | None) -> tuple[str | None, str | None]:
    """``Content-Type`` → (bare lowercased media type, charset parameter)."""
    if not header:
        return None, None
    media, _, params = header.partition(";")
    charset = None
    if params:
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset":
                charset = value.strip().strip("\"'") or None
                break
    return media.strip().lower() or None, charset


def header_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def normalize_target(url: str) -> str:
    """The form redirect targets take (ada's href, no fragment), for loop detection."""
    try:
        return ada_url.URL(url).href.partition("#")[0]
    except ValueError:
        return url


def fetch_result(
    url: str,
    final_url: str,
    response: requests.Response,
    chain: list[str],
    fetched_at: datetime,
    elapsed_ms: int,
    body: bytes | None,
    size: int | None = None,
) -> FetchResult:
    """The :class:`FetchResult` of ``response``, reached from ``url`` through ``chain``."""
    headers = response.headers
    media, charset = media_type(headers.get("Content-Type"))
    retry_after = headers.get("Retry-After")
    status = response.status_code
    if size is None:
        size = len(body) if body is not None else header_int(headers.get("Content-Length"))
    return FetchResult(
        url=url,
        final_url=final_url,
        status_code=status,
        fetched_at=fetched_at,
        elapsed_ms=elapsed_ms,
        redirects=len(chain),
        content_type=media,
        charset=charset,
        content_length=size if status != 304 else None,
        body=body,
        etag=headers.get("ETag"),
        last_modified=headers.get("Last-Modified"),
        not_modified=status == 304,
        retry_after_s=parse_retry_after(retry_after, fetched_at) if retry_after else None,
        redirect_chain=tuple(chain),
        reason=response.reason,
        headers=_stored_headers(response),
    )


def _stored_headers(response: requests.Response) -> tuple[tuple[str, str], ...]:
    """The response headers as received, with credentials in ``Location`` masked (kept for
    WARC records: a server's ``user:password@`` must not end up in the database)."""
    if response.raw is None:
        return ()
    return tuple(
        (name, mask_credentials(value) if name.lower() == "location" else value)
        for name, value in response.raw.headers.items()
    )


def conditional_headers(etag: str | None, last_modified: str | None) -> dict[str, str] | None:
    """The validators a recrawl sends (``If-None-Match``, ``If-Modified-Since``); None: none."""
    if not (etag or last_modified):
        return None
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def error_records(
    attempts: Sequence[_Attempt], last: _Attempt, now: Callable[[], datetime]
) -> tuple[ErrorRecord, ...]:
    """One record per failed attempt; the last one ``final`` when the fetch failed for good."""
    records = [
        ErrorRecord(a.kind, a.message, a.number, False, a.at or now(), a.status_code)
        for a in attempts
        if a.kind is not None
    ]
    if last.kind is not None and records:
        records[-1] = replace(records[-1], final=True)
    return tuple(records)


class NoCookies(requests.cookies.RequestsCookieJar):
    """A jar that keeps nothing: cookies are neither stored nor sent (see module docstring)."""

    def set_cookie(self, cookie: Cookie, *args: Any, **kwargs: Any) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None
