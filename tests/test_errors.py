"""``errors.classify``: real exceptions from requests/urllib3/socket map to their public kinds."""

from __future__ import annotations

import socket

import pytest
import requests
import urllib3.exceptions

from crawler import errors
from crawler.errors import (
    DeadlineError,
    ErrorKind,
    FetchError,
    HTTPStatusError,
    RedirectError,
    TooLargeError,
    classify,
    describe,
    http_status_message,
)


def _raised(url: str, timeout: float) -> BaseException:
    with pytest.raises(requests.RequestException) as info:
        requests.get(url, timeout=timeout)
    return info.value


def test_connection_refused_is_connect() -> None:
    exc = _raised("http://127.0.0.1:9/", timeout=1)
    assert classify(exc) is ErrorKind.CONNECT


def test_unresolvable_host_is_dns() -> None:
    # .invalid never resolves (RFC 6761); the suite's DNS guard (tests/dnsguard.py) answers it
    # as a missing name (EAI_NONAME) without asking the machine's name server.
    exc = _raised("http://nonexistent.invalid/", timeout=2)
    assert classify(exc) is ErrorKind.DNS


def test_dns_found_in_a_hand_built_chain() -> None:
    inner = urllib3.exceptions.NameResolutionError("h", None, socket.gaierror(-2, "unknown"))  # type: ignore[arg-type]
    assert classify(requests.ConnectionError(inner)) is ErrorKind.DNS
    wrapped = requests.ConnectionError("boom")
    wrapped.__cause__ = socket.gaierror(-3, "Temporary failure in name resolution")
    assert classify(wrapped) is ErrorKind.DNS
    assert classify(requests.ConnectionError("refused")) is ErrorKind.CONNECT


def test_bare_urllib3_connection_errors_are_not_timeouts() -> None:
    # urllib3's NewConnectionError (and NameResolutionError) subclass ConnectTimeoutError.
    refused = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    assert classify(refused) is ErrorKind.CONNECT
    unresolved = urllib3.exceptions.NameResolutionError("h", None, socket.gaierror(-2, "x"))  # type: ignore[arg-type]
    assert classify(unresolved) is ErrorKind.DNS
    assert classify(socket.gaierror(-2, "Name or service not known")) is ErrorKind.DNS


def test_connect_timeout_is_timeout_not_connect() -> None:
    exc = requests.ConnectTimeout("connect timed out")
    assert isinstance(exc, requests.ConnectionError)  # the trap the ordering avoids
    assert classify(exc) is ErrorKind.TIMEOUT


_LIBRARY_ERRORS: dict[ErrorKind, list[BaseException]] = {
    ErrorKind.TIMEOUT: [
        requests.ReadTimeout("read timed out"),
        urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out."),  # type: ignore[arg-type]
        TimeoutError("timed out"),  # socket.timeout is an alias since 3.10
    ],
    ErrorKind.TLS: [
        requests.exceptions.SSLError("certificate verify failed"),
        urllib3.exceptions.SSLError("wrong version number"),
    ],
    ErrorKind.CONTENT: [
        requests.exceptions.ChunkedEncodingError("incomplete chunked read"),
        requests.exceptions.ContentDecodingError("bad gzip"),
        urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead"),
        urllib3.exceptions.DecodeError("bad deflate"),
    ],
    ErrorKind.REDIRECT: [
        requests.TooManyRedirects("Exceeded 30 redirects."),
        requests.exceptions.InvalidSchema("x"),
    ],
}
"""requests', urllib3's and the stdlib's exceptions, by the kind each must classify as."""


@pytest.mark.parametrize(
    ("exc", "kind"),
    [(exc, kind) for kind, excs in _LIBRARY_ERRORS.items() for exc in excs],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.value,
)
def test_library_errors_by_kind(exc: BaseException, kind: ErrorKind) -> None:
    assert classify(exc) is kind


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TooLargeError("body over 10 MB"), ErrorKind.TOO_LARGE),
        (RedirectError("redirect loop"), ErrorKind.REDIRECT),
        (DeadlineError("deadline passed"), ErrorKind.TIMEOUT),
        (HTTPStatusError("HTTP 503", status_code=503), ErrorKind.HTTP_STATUS),
        (FetchError("unclassified"), ErrorKind.OTHER),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_our_own_errors_carry_their_kind(exc: BaseException, kind: ErrorKind) -> None:
    assert classify(exc) is kind


def test_anything_else_is_other() -> None:
    assert classify(ValueError("nope")) is ErrorKind.OTHER
    assert classify(KeyError("k")) is ErrorKind.OTHER


def test_http_status_error_keeps_its_status() -> None:
    assert HTTPStatusError("HTTP 503", status_code=503).status_code == 503


def test_every_kind_is_a_stored_value() -> None:
    from models.tables import ERROR_KINDS

    assert tuple(k.value for k in ErrorKind) == ERROR_KINDS


def test_describe_is_one_line() -> None:
    assert describe(ValueError("first line\nsecond line")) == "ValueError: first line"
    assert describe(ValueError("")) == "ValueError"
    assert describe(ValueError("  \n ")) == "ValueError"
    assert describe(requests.ReadTimeout("read timed out")) == "ReadTimeout: read timed out"


def test_describe_a_real_exception_has_no_newline() -> None:
    text = describe(_raised("http://127.0.0.1:9/", timeout=1))
    assert text.startswith("ConnectionError: ")
    assert "\n" not in text


def test_http_status_message() -> None:
    assert http_status_message(404) == "HTTP 404 Not Found"
    assert http_status_message(404, "Nope") == "HTTP 404 Not Found"
    assert http_status_message(799, "Custom Reason") == "HTTP 799 Custom Reason"
    assert http_status_message(799) == "HTTP 799"


def test_usage_errors_are_crawler_errors() -> None:
    for cls in (errors.ConfigError, errors.SeedFileError, errors.DatabaseError):
        assert issubclass(cls, errors.UsageError)
        assert issubclass(cls, errors.CrawlerError)
    assert issubclass(TooLargeError, FetchError)
