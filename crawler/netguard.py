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

Must not: resolve names, keep state beyond the ``allow_private`` callable, or log.
"""

from __future__ import annotations

import ipaddress
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


class GuardedHTTPConnection(urllib3.connection.HTTPConnection):
    """An ``HTTPConnection`` that checks its peer once connected; see the module docstring."""

    allow_private: AllowPrivate = staticmethod(lambda host: False)

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


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """An ``HTTPAdapter`` whose direct (unproxied) connections go through the guard."""

    def __init__(
        self,
        pool_classes: Mapping[str, type[urllib3.connectionpool.HTTPConnectionPool]],
        **kwargs: Any,
    ) -> None:
        self._pool_classes = dict(pool_classes)  # before super(): it calls init_poolmanager
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pool_classes)
