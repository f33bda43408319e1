"""The fetcher's deadline watchdog: shut a request's socket when its total deadline passes.

A blocking read cannot be interrupted from another thread; shutting its socket down can. One
daemon thread per :class:`~crawler.fetch.fetcher.Fetcher` waits on a heap of armed watches
and shuts the connection of each one still armed at its time.

``total_timeout`` covers one attempt, all redirect hops and the body. It is
checked after every chunk, and near the deadline the socket timeout is lowered to what is left.
requests' read timeout is per read, so a server that drips its status line and headers (or a
body) a byte at a time would never be cut by it: a watchdog thread (one per Fetcher) shuts the
connection's socket down when the deadline passes (within 50 ms) while a request waits for
its response or reads its body, and the attempt fails with ``timeout``. *Limit*: a proxied
connection is not watched (the watchdog learns the connection from
:data:`crawler.fetch.netguard.conn_hook`, which proxied connections do not call); its read timeout
still bounds each read.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import socket
import threading
import time
from typing import Any

WATCH_SLACK = 256
"""Disarmed watches the deadline heap may hold beyond twice the armed ones before a sweep."""
WATCH_LATE_S = 0.05
"""How late the watchdog may act on a deadline rather than be woken early for it. A body's
watch ends a few microseconds before its request's watch: waking the watchdog thread for it
would cost a thread switch per page."""


class Watch:
    """One armed deadline: the connection to shut when it passes, and whether it did."""

    __slots__ = ("conn", "done", "fired")

    def __init__(self) -> None:
        self.conn: Any = None
        self.fired = False
        self.done = False


class Watchdog:
    """Shuts down the socket of a request still running at its deadline (see "Deadline").

    One daemon thread, started on first use, waits on a heap of armed watches (by real
    ``time.monotonic``, whatever clock the Fetcher was given). It is woken only for a watch
    that ends more than :data:`WATCH_LATE_S` before it would wake anyway, so a deadline may be
    acted on that much late. Disarmed watches are dropped lazily when they reach the top of the
    heap, or all at once when they outnumber the armed ones (else a crawl would keep two per
    page of the last ``total_timeout`` seconds).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._armed = 0
        self._wake_at = math.inf  # when the thread wakes by itself (inf: not before notified)
        self.wakeups = 0
        """How many times arming a watch woke the thread (tests count thread switches)."""
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> Watch:
        """A watch that fires ``seconds`` from now, unless disarmed first."""
        watch = Watch()
        at = time.monotonic() + max(0.0, seconds)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="fetch-watchdog", daemon=True
                )
                self._thread.start()
            heap = self._heap
            self._armed += 1
            if len(heap) >= 2 * self._armed + WATCH_SLACK:
                heap[:] = [entry for entry in heap if not entry[2].done]
                heapq.heapify(heap)
            heapq.heappush(heap, (at, next(self._order), watch))
            if at < self._wake_at - WATCH_LATE_S:
                self.wakeups += 1
                self._cond.notify()
        return watch

    @property
    def held(self) -> int:
        """Watches in the heap, armed or disarmed-but-not-yet-dropped."""
        return len(self._heap)

    @property
    def asleep_until(self) -> float:
        """When the thread wakes by itself (``math.inf``: not before it is woken)."""
        return self._wake_at

    def attach(self, watch: Watch, conn: Any) -> None:
        """The connection ``watch`` guards; shut at once if the watch already fired."""
        with self._cond:
            if watch.done:
                return
            watch.conn = conn
            if watch.fired:
                _shut(conn)

    def disarm(self, watch: Watch) -> bool:
        """Stop watching; True if the deadline had already fired (the socket was shut)."""
        with self._cond:
            if not watch.done:
                watch.done = True
                self._armed -= 1
            watch.conn = None
            return watch.fired

    def close(self) -> None:
        with self._cond:
            thread, self._thread = self._thread, None
            for _, _, watch in self._heap:
                watch.done = True
            self._heap.clear()
            self._armed = 0
            self._wake_at = math.inf
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _run(self) -> None:
        me = threading.current_thread()
        with self._cond:
            while self._thread is me:
                heap = self._heap
                while heap and heap[0][2].done:
                    heapq.heappop(heap)
                if not heap:
                    self._wake_at = math.inf
                    self._cond.wait()
                    continue
                at = heap[0][0]
                delay = at - time.monotonic()
                if delay > 0:
                    self._wake_at = at
                    self._cond.wait(delay)
                    continue
                watch = heapq.heappop(heap)[2]
                watch.fired = True
                if watch.conn is not None:
                    _shut(watch.conn)


def _shut(conn: Any) -> None:
    """Wake a thread blocked reading ``conn``: shut its socket down (the owner closes it)."""
    sock = getattr(conn, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
