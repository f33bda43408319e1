"""A site: the routing table of behaviours one server serves."""

from __future__ import annotations

import threading

from tests.mockserver.context import Behaviour

# --------------------------------------------------------------------------- site


class Site:
    """A routing table: (arrival address, path with query) -> behaviour.

    A route added with ``host=None`` answers on every address; a host-specific route wins.
    Unknown paths get `NotFound`. Routes may be added while the server runs.
    """

    def __init__(self) -> None:
        self._routes: dict[tuple[str | None, str], Behaviour] = {}
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def add(self, path: str, behaviour: Behaviour, host: str | None = None) -> None:
        """Serve ``behaviour`` at ``path`` (``/a?b=c``) on ``host`` (None: on every host)."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        with self._lock:
            self._routes[(host, path)] = behaviour

    def lookup(self, host: str, path: str) -> Behaviour | None:
        """The behaviour for a request that arrived on ``host`` for ``path``, if any."""
        with self._lock:
            found = self._routes.get((host, path))
            return found if found is not None else self._routes.get((None, path))

    def paths(self, host: str) -> set[str]:
        """Paths served on ``host`` (its own routes and the every-host ones)."""
        with self._lock:
            return {p for h, p in self._routes if h in (host, None)}

    @property
    def hosts_seen(self) -> frozenset[str]:
        """Addresses that have received at least one request."""
        with self._lock:
            return frozenset(self._seen)

    def _saw(self, host: str) -> None:
        with self._lock:
            self._seen.add(host)
