"""Per-host politeness at the moment of sending, and robots.txt cached per host.

The frontier spaces out *hand-outs* per host, but a task handed out may wait in the pool's
queue, and a task may send several requests (robots.txt, retries, redirect hops). So the exact
rule — at least ``delay`` seconds between the starts of two requests to one host — is enforced
here, in the worker thread, right before each request: :class:`HostGate`. Because the frontier
already paces hand-outs, a thread rarely waits here, and never longer than one delay (or a
``Retry-After`` the host asked for).

:class:`RobotsCache` holds one :class:`~crawler.fetch.robots.RobotsPolicy` per host. The first
worker that needs a host's robots.txt fetches it while later ones for the same host wait on a
per-host lock; policies are primed from the ``hosts`` table at claim time, so a resumed crawl does
not fetch robots.txt again within ``robots_ttl``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from crawler.fetch.robots import RobotsPolicy, policy_from_cache
from crawler.urls import host_key

MAX_CRAWL_DELAY_S = 60.0
"""The longest ``Crawl-delay`` honoured: a larger one would stall a host for a whole crawl."""

GATE_MARGIN_S = 0.01
"""Added to every non-zero delay: the delay is a promise measured at the server, and the
network and the server's own scheduling add a little jitter after our send."""


def _noop() -> None:
    return None


@dataclass(slots=True)
class _HostClock:
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_start: float = float("-inf")
    not_before: float = float("-inf")


class HostGate:
    """At least ``delay_for(host)`` seconds between the starts of two requests to one host."""

    def __init__(
        self,
        delay_for: Callable[[str], float],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        max_hosts: int = 10_000,
    ) -> None:
        self._delay_for = delay_for
        self._clock = clock
        self._sleep = sleep
        self._hosts: dict[str, _HostClock] = {}
        self._lock = threading.Lock()
        self._max_hosts = max_hosts

    def _entry(self, host: str) -> _HostClock:
        with self._lock:
            entry = self._hosts.get(host)
            if entry is None:
                if len(self._hosts) >= self._max_hosts:
                    self._prune()
                entry = self._hosts[host] = _HostClock()
            return entry

    def _prune(self) -> None:
        """Forget hosts whose every wait is over (called with ``_lock`` held)."""
        now = self._clock()
        for host, entry in list(self._hosts.items()):
            idle = entry.last_start + MAX_CRAWL_DELAY_S < now and entry.not_before < now
            if idle and not entry.lock.locked():
                del self._hosts[host]

    def wait_turn(self, url: str) -> Callable[[], None]:
        """Block until a request to ``url``'s host may start; return *release*, to be called
        the moment the request has been sent (the fetcher does, exactly once).

        The host stays locked from here to release, and release records the send time, so the
        next request to the host waits ``delay`` after the previous one really left — however
        long this thread then took to get the GIL, open a connection and write the request.
        """
        try:
            host = host_key(url)
        except ValueError:
            return _noop  # not a URL we can key: the fetcher will refuse it anyway
        entry = self._entry(host)
        delay = self._delay_for(host)
        if delay <= 0 and entry.not_before <= self._clock():
            return _noop  # no spacing to keep: requests to the host need not queue up here
        if delay > 0:
            delay += GATE_MARGIN_S
        entry.lock.acquire()
        try:
            start = max(entry.last_start + delay, entry.not_before)
            now = self._clock()
            while start > now:
                self._sleep(start - now)
                now = self._clock()
        except BaseException:
            entry.lock.release()
            raise
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                entry.last_start = self._clock()
                entry.lock.release()

        return release

    def push_back(self, url: str, seconds: float) -> None:
        """No request to ``url``'s host before ``seconds`` from now (a ``Retry-After``)."""
        try:
            host = host_key(url)
        except ValueError:
            return
        entry = self._entry(host)
        entry.not_before = max(entry.not_before, self._clock() + seconds)


@dataclass(slots=True)
class _RobotsEntry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    policy: RobotsPolicy | None = None
    fetched_at: float = float("-inf")
    """Monotonic time of the fetch (or of the cache row it was primed from)."""
    failures: int = 0


class RobotsCache:
    """robots.txt per host: fetched once, shared by every worker, refreshed after ``ttl_s``."""

    def __init__(
        self,
        fetch: Callable[[str], RobotsPolicy],
        user_agent: str,
        *,
        ttl_s: float,
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_hosts: int = 50_000,
    ) -> None:
        self._fetch = fetch
        self._user_agent = user_agent
        self._ttl_s = ttl_s
        self._retry_s = retry_s
        self._clock = clock
        self._entries: dict[str, _RobotsEntry] = {}
        self._lock = threading.Lock()
        self._max_hosts = max_hosts

    def _entry(self, host: str) -> _RobotsEntry:
        with self._lock:
            entry = self._entries.get(host)
            if entry is None:
                if len(self._entries) >= self._max_hosts:
                    self._entries.clear()  # rare; costs one robots.txt fetch per host again
                entry = self._entries[host] = _RobotsEntry()
            return entry

    def known(self, host: str) -> bool:
        entry = self._entries.get(host)
        return entry is not None and entry.policy is not None

    def disallows(self, url: str, host: str) -> bool:
        """True when the cached policy (no fetch) is sure robots.txt disallows ``url``.

        An unreachable or refused host is not "disallowed": its URLs go to the worker, which
        fails them with the real cause (issue 13)."""
        entry = self._entries.get(host)
        policy = entry.policy if entry is not None else None
        if policy is None or policy.unreachable or policy.refused:
            return False
        return not policy.can_fetch(url)

    def prime(self, host: str, body: str, age_s: float) -> None:
        """Load a policy cached in the database, fetched ``age_s`` seconds ago."""
        if age_s >= self._ttl_s:
            return
        entry = self._entry(host)
        with entry.lock:
            if entry.policy is None:
                entry.policy = policy_from_cache(self._user_agent, body)
                entry.fetched_at = self._clock() - age_s

    def get(self, host: str) -> tuple[RobotsPolicy, bool, int]:
        """The policy for ``host``, whether it was fetched just now by this call, and how many
        times in a row robots.txt has been unreachable for it."""
        entry = self._entry(host)
        with entry.lock:
            now = self._clock()
            policy = entry.policy
            age = now - entry.fetched_at
            stale = policy is None or age >= self._ttl_s
            retry = policy is not None and policy.unreachable and age >= self._retry_s
            if not (stale or retry):
                assert policy is not None
                return policy, False, entry.failures
            policy = self._fetch(host)
            entry.policy, entry.fetched_at = policy, self._clock()
            entry.failures = entry.failures + 1 if policy.unreachable else 0
            return policy, True, entry.failures

    def crawl_delay(self, host: str) -> float:
        entry = self._entries.get(host)
        if entry is None or entry.policy is None or entry.policy.crawl_delay is None:
            return 0.0
        return min(entry.policy.crawl_delay, MAX_CRAWL_DELAY_S)

    @property
    def retry_s(self) -> float:
        return self._retry_s
