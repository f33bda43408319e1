"""Refuse connections to private, loopback and other non-public addresses (SSRF guard).

A crawler follows links and redirects written by strangers: without a guard, a page on the
internet can make it request ``http://127.0.0.1:8080/admin`` or a cloud metadata address. The
check here looks at the address the socket is *actually connected to* (``sock.getpeername()``),
after the TCP connection is made and before a single byte of the request is sent. Checking the
peer instead of resolving names ourselves first defeats DNS rebinding (a name that resolves to a
public address for the check and to a private one for the connection), and it covers every
connection the pool opens, so every redirect hop.

How it is installed: :class:`GuardedAdapter` is a ``requests`` ``HTTPAdapter`` whose urllib3
``PoolManager`` builds pools of :class:`GuardedHTTPConnection`/:class:`GuardedHTTPSConnection`
(``pool_classes_by_scheme``). Their ``connect()`` runs urllib3's own, then checks the peer and
closes the socket with :class:`PrivateAddressError` when it is refused. urllib3 and requests do
not wrap that exception (it is not an ``OSError``), so it reaches the fetcher as is.

Refused: every address whose ``ipaddress`` object is unspecified, loopback, link-local,
multicast, reserved, private, or otherwise not global (e.g. the shared 100.64.0.0/10 space); an
IPv4-mapped IPv6 peer (``::ffff:127.0.0.1``) is judged by its IPv4 address.

Limits:

* **Proxies.** With a proxy configured, the socket's peer is the proxy, and the guard is not
  applied at all (requests builds proxied connections through its own ``ProxyManager``, which
  this adapter does not touch): the proxy decides what it may reach.
* **HTTPS.** ``HTTPSConnection.connect()`` does the TLS handshake before returning, so a refused
  HTTPS peer has seen a ClientHello (never an HTTP request).
* Addresses that *embed* a private IPv4 address in a global IPv6 form (6to4 ``2002::/16``,
  Teredo, NAT64 ``64:ff9b::/96``) are judged as the IPv6 address they are.

Must not: resolve names, keep state beyond the ``allow_private`` callable, or log. (The
adapter's cache of pool lookups, below, holds no decision: only how a URL's origin maps to a
connection pool, which urllib3 would compute the same way every time.)

Per-request cost, since a crawl sends thousands of requests a second through here:

* :class:`GuardedAdapter` remembers, per URL origin (scheme and authority), the pool parameters
  ``requests`` derives on every call (two URL parses, the proxy look-up and an ``os.path.isdir``
  on the CA bundle when ``verify`` is a path), for requests sent without proxies.
* The guarded connections read responses through a 64 KiB buffer instead of ``http.client``'s
  8 KiB, so a typical page's headers and body arrive in one ``recv`` (each socket read is a
  ``poll`` and a ``recv``, and each releases the GIL, which 32 busy threads then fight over).

How the fetcher uses it:

* **Private networks.** With ``allow_private`` set, every direct connection is checked once
  connected, before the request is sent (:mod:`crawler.fetch.netguard`): a non-public peer address
  whose host ``allow_private(host)`` refuses fails the attempt with
  :class:`~crawler.fetch.netguard.PrivateAddressError`, kind ``other``, or ``redirect`` on a
  redirect hop (then, as for other redirect failures, ``result`` is the 3xx that pointed there). Not
  retried. Proxied connections are not checked (the peer is the proxy).
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests.adapters
import urllib3.connection
import urllib3.connectionpool

from crawler.errors import ErrorKind, FetchError

__all__ = [
    "GuardedAdapter",
    "PrivateAddressError",
    "address_problem",
    "conn_hook",
    "guarded_pool_classes",
]

AllowPrivate = Callable[[str], bool]
"""Given a URL's host name, True when non-public addresses are acceptable for it."""

HINT = "set [scope] allow_private_networks = true to allow"

READ_BUFFER = 64 * 1024
"""Bytes a response's socket reads at most at a time (http.client's default is 8 KiB)."""

_ORIGIN = re.compile(r"[^:/?#]+://[^/?#]*")
"""A URL's scheme and authority, up to the first ``/``, ``?`` or ``#`` after ``//``: all that
``requests`` reads to pick a connection pool (``urllib.parse`` splits the authority there)."""

_POOL_CACHE_MAX = 64
"""Origins whose pool parameters an adapter remembers; past it the cache starts over. Each
thread has its own adapter, which keeps connections to 32 hosts by default: a crawl of many
hosts reconnects anyway, and 64 entries per thread stay small."""


class PrivateAddressError(FetchError):
    """A connection reached a non-public address that is not allowed for its host.

    Kind ``other`` on the first request of an attempt; the fetcher makes it ``redirect`` when it
    happens on a redirect hop (the kind is then set on the instance).
    """

    kind = ErrorKind.OTHER


def address_problem(ip: str) -> str | None:
    """``"a loopback address"`` (and so on) when ``ip`` is not a public address; else None."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "not an IP address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "a non-global address"),
    )
    return next((what for bad, what in checks if bad), None)


def _check_peer(conn: urllib3.connection.HTTPConnection, allow: AllowPrivate) -> None:
    """Close ``conn`` and raise when its peer is a refused address (see module docstring)."""
    sock = conn.sock
    if sock is None or conn.proxy is not None:
        return
    peer = sock.getpeername()[0]
    problem = address_problem(peer)
    if problem is None:
        return
    host = conn.host
    if ":" in host:  # urllib3 strips an IPv6 literal's brackets; URLs (and seeds) keep them
        host = f"[{host}]"
    if allow(host):
        return
    conn.close()
    shown = f"{host} ({peer})" if host != peer else peer
    raise PrivateAddressError(f"refused: {shown} is {problem}; {HINT}")


class _SentHook(threading.local):
    fn: Callable[[], object] | None = None


sent_hook = _SentHook()
"""Per thread: called once right after a request's bytes are written to the socket (the
politeness gate records the real start of the request then, not when it let the thread go)."""


def _fire_sent_hook() -> None:
    fn, sent_hook.fn = sent_hook.fn, None
    if fn is not None:
        fn()


class _ConnHook(threading.local):
    fn: Callable[[urllib3.connection.HTTPConnection], object] | None = None


conn_hook = _ConnHook()
"""Per thread: called with the connection right before a request is written on it (the
fetcher's deadline watchdog keeps it, to close its socket if the response is too slow)."""


def _fire_conn_hook(conn: urllib3.connection.HTTPConnection) -> None:
    fn = conn_hook.fn
    if fn is not None:
        fn(conn)


class _WideSocket:
    """Hands ``http.client.HTTPResponse`` a socket file with a :data:`READ_BUFFER` buffer."""

    __slots__ = ("_sock",)

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def makefile(self, mode: str) -> Any:
        return self._sock.makefile(mode, READ_BUFFER)


class WideBufferResponse(http.client.HTTPResponse):
    """An ``http.client`` response that reads its socket :data:`READ_BUFFER` bytes at a time.

    The buffer only sets the most one ``recv`` may return: a read still returns what has
    arrived, so a slow server is read exactly as before.
    """

    def __init__(
        self, sock: Any, debuglevel: int = 0, method: str | None = None, url: str | None = None
    ) -> None:
        wide: Any = _WideSocket(sock)  # http.client calls only its makefile()
        super().__init__(wide, debuglevel, method, url)


class GuardedHTTPConnection(urllib3.connection.HTTPConnection):
    """An ``HTTPConnection`` that checks its peer once connected; see the module docstring."""

    allow_private: AllowPrivate = staticmethod(lambda host: False)
    response_class = WideBufferResponse

    def connect(self) -> None:
        super().connect()
        _check_peer(self, type(self).allow_private)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _fire_conn_hook(self)
        super().request(*args, **kwargs)
        _fire_sent_hook()


class GuardedHTTPSConnection(urllib3.connection.HTTPSConnection):
    """An ``HTTPSConnection`` that checks its peer once connected (after the TLS handshake)."""

    allow_private: AllowPrivate = staticmethod(lambda host: False)
    response_class = WideBufferResponse

    def connect(self) -> None:
        super().connect()
        _check_peer(self, type(self).allow_private)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _fire_conn_hook(self)
        super().request(*args, **kwargs)
        _fire_sent_hook()


def guarded_pool_classes(
    allow_private: AllowPrivate,
) -> dict[str, type[urllib3.connectionpool.HTTPConnectionPool]]:
    """Pool classes for ``PoolManager.pool_classes_by_scheme`` whose connections use the guard.

    Built once per ``allow_private`` (a Fetcher), shared by every thread's adapter.
    """
    allow = staticmethod(allow_private)
    http_conn = type("GuardedHTTP", (GuardedHTTPConnection,), {"allow_private": allow})
    https_conn = type("GuardedHTTPS", (GuardedHTTPSConnection,), {"allow_private": allow})
    pools = urllib3.connectionpool
    http_pool = type("GuardedHTTPPool", (pools.HTTPConnectionPool,), {"ConnectionCls": http_conn})
    https_pool = type(
        "GuardedHTTPSPool", (pools.HTTPSConnectionPool,), {"ConnectionCls": https_conn}
    )
    return {"http": http_pool, "https": https_pool}


PoolParams = tuple[Mapping[str, Any], dict[str, Any]]
"""``(host_params, pool_kwargs)`` as ``HTTPAdapter.build_connection_pool_key_attributes``
returns them."""


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """An ``HTTPAdapter`` whose direct (unproxied) connections go through the guard."""

    def __init__(
        self,
        pool_classes: Mapping[str, type[urllib3.connectionpool.HTTPConnectionPool]],
        **kwargs: Any,
    ) -> None:
        self._pool_classes = dict(pool_classes)  # before super(): it calls init_poolmanager
        self._pool_params: dict[tuple[str, bool | str], PoolParams] = {}
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pool_classes)
        self._pool_params = {}

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str | None,
        proxies: Mapping[str, str] | None = None,
        cert: tuple[str, str] | str | None = None,
    ) -> urllib3.connectionpool.ConnectionPool:
        """The pool ``requests`` would pick, without re-deriving its parameters every time.

        Only for requests without proxies or a client certificate, whose pool depends on the
        URL's origin and ``verify`` alone; the first request to an origin goes the whole way
        (so a bad URL fails exactly as it does in ``requests``) and fills the cache.
        """
        url = request.url
        origin = _ORIGIN.match(url) if isinstance(url, str) else None
        if proxies or cert is not None or origin is None or verify is None:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        key = (origin.group(), verify)
        params = self._pool_params.get(key)
        if params is None:
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            self._remember(key, request, verify)
            return pool
        found: urllib3.connectionpool.HTTPConnectionPool = self.poolmanager.connection_from_host(
            **params[0], pool_kwargs=params[1]
        )
        return found

    def _remember(
        self, key: tuple[str, bool | str], request: requests.PreparedRequest, verify: bool | str
    ) -> None:
        if len(self._pool_params) >= _POOL_CACHE_MAX:
            self._pool_params.clear()
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify)
        self._pool_params[key] = (host_params, dict(pool_kwargs))

    def request_url(
        self, request: requests.PreparedRequest, proxies: Mapping[str, str] | None
    ) -> str:
        """Without proxies, the path and query: what ``requests`` returns then, minus a
        proxy look-up and a URL parse."""
        if proxies:
            return super().request_url(request, proxies)
        return request.path_url
