"""Connection pools that send the request target as given.

What is requested is the URL as given (for the crawl: the WHATWG serialization
:mod:`crawler.urls` stores), byte for byte: a browser sends ``/foo%``, ``/p[1]``,
``?q={x}`` and ``%2f`` as they are, and so do we. requests (``requote_uri``) and urllib3
(``_encode_target``) would re-escape them (``/foo%25``, ``%5B``, ``%2F``), so the prepared
request keeps the URL given and the pools write the target they get (:func:`verbatim_pools`
wraps each pool class of the fetcher's adapters), on every attempt and redirect hop. A URL
that is not printable ASCII without spaces (not from ada: the caller's own) goes out as
requests escapes it. *Limit*: through an HTTP proxy (an absolute request target, requests'
own proxy pools) urllib3 still re-escapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import urllib3.connectionpool


class VerbatimTarget(urllib3.connectionpool.HTTPConnectionPool):
    """A pool that writes the request target it is given, not urllib3's re-escaping of it.

    ``urlopen`` runs a path through ``_encode_target``, which escapes what RFC 3986 leaves out
    but browsers send (``/foo%`` → ``/foo%25``, ``[`` → ``%5B``) and uppercases escapes
    (``%2f`` → ``%2F``). The target as given travels to ``_make_request`` as a keyword (a
    request's own, so a pool could even be shared between threads) and is written as it is.
    http.client still refuses controls and spaces in it, and the fetcher only hands over
    printable ASCII (see "What is requested" in the module docstring).
    """

    def urlopen(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith("/"):
            kwargs["_verbatim_target"] = url
        else:  # an absolute URL (a proxy's request) is left to urllib3
            kwargs.pop("_verbatim_target", None)
        return super().urlopen(method, url, *args, **kwargs)

    def _make_request(self, conn: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        target = kwargs.pop("_verbatim_target", None)
        return super()._make_request(conn, method, target or url, *args, **kwargs)


def verbatim_pools(
    pools: Mapping[str, type[urllib3.connectionpool.HTTPConnectionPool]],
) -> dict[str, type[urllib3.connectionpool.HTTPConnectionPool]]:
    """``pools`` (``PoolManager.pool_classes_by_scheme``), each sending targets verbatim."""
    return {
        scheme: type(f"Verbatim{cls.__name__}", (VerbatimTarget, cls), {})
        for scheme, cls in pools.items()
    }
