"""Hand out the next URL whose host is ready: per-host queues over the persistent frontier.

The frontier itself lives in the database (``urls``); this object holds only a small buffer of
claimed URLs, grouped per host, and a heap of hosts ordered by the time each may next be
requested. So memory does not grow with the frontier (DESIGN §2.1), and a host that must wait
never blocks another (§2.4: no head-of-line blocking): :meth:`next_ready` pops the host that is
ready soonest, in O(log hosts).

Claims run on the writer thread (:meth:`crawler.store.writer.Writer.call`) and are
*asynchronous*: when the buffer runs low a claim is started, and the dispatcher keeps consuming
results while it runs (:attr:`claim_running` is a future it can wait on). A claim submitted after
the last result was queued for the writer sees every link that result found, which is what makes
:meth:`exhausted` exact. The frontier is the engine's only way to the claims: it starts them,
and gives back (:meth:`ClaimSource.give_back`) what it will not hand out.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from crawler.config import PolitenessSettings
from crawler.records import FetchTask

MAX_CLAIM_INTERVAL_S = 0.5
"""Longest a frontier with work in hand waits between two claims that came back empty."""


class ClaimSource(Protocol):
    """Where the frontier's URLs come from and go back to (in a crawl: writer jobs,
    :class:`crawler.store.claims.WriterClaims`)."""

    def claim(self, n: int, exclude: Collection[int], per_host: int) -> Future[list[FetchTask]]:
        """Start a claim of up to ``n`` URLs, excluding some host ids, at most ``per_host`` of a
        host; the future yields the tasks."""
        ...

    def give_back(self, tasks: Sequence[FetchTask], *, wait: bool = False) -> None:
        """Return claimed, unstarted URLs to the queue (``wait``: before returning)."""
        ...


@dataclass(slots=True)
class Slot:
    """One host's politeness state (after Scrapy's downloader ``Slot``)."""

    host_id: int
    host: str
    concurrency: int
    active: int = 0
    next_allowed: float = 0.0
    """Monotonic time before which no new request to this host may start."""
    queue: deque[FetchTask] = field(default_factory=deque)
    in_heap: bool = False

    def ready_at(self) -> float:
        return self.next_allowed


class Frontier:
    def __init__(
        self,
        politeness: PolitenessSettings,
        claims: ClaimSource,
        *,
        buffer_size: int = 4096,
        per_host_buffer: int = 8,
        min_claim_interval_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        delay_for: Callable[[str], float] | None = None,
        is_blocked: Callable[[FetchTask], bool] | None = None,
        max_per_host: int = 0,
        retry_s: float = 0.1,
    ) -> None:
        self._politeness = politeness
        self._delay_for = delay_for or (lambda _host: politeness.delay)
        """The host's delay now: the setting, or its robots.txt Crawl-delay when larger."""
        self._is_blocked = is_blocked
        """True for a task robots.txt already known for its host disallows: no slot is spent."""
        self._max_per_host = max_per_host
        self._handed: dict[int, int] = {}
        self._discarded: set[str] = set()
        self._capped: set[int] = set()
        self.blocked: list[FetchTask] = []
        """Tasks found disallowed at hand-out, for the engine to record as blocked."""
        self._released: list[FetchTask] = []
        """Tasks of hosts that reached ``max_per_host``, to give back."""
        self._claims = claims
        self._buffer_size = buffer_size
        self._per_host_buffer = per_host_buffer
        self._min_claim_interval_s = min_claim_interval_s
        self._last_claim_at = float("-inf")
        self._claim_interval_s = min_claim_interval_s
        """Least time between two claims while work is in hand; doubles while claims come back
        empty (up to MAX_CLAIM_INTERVAL_S)."""
        self._retry_at = float("-inf")
        self._retry_s = retry_s
        self._clock = clock
        self._slots: dict[int, Slot] = {}
        self._heap: list[tuple[float, int, int]] = []  # (ready_at, tiebreak, host_id)
        self._seq = itertools.count()
        self._buffered = 0
        self._pending: Future[list[FetchTask]] | None = None
        self._generation = 0
        """Bumped for every result that may have added links; a claim remembers the value."""
        self._claim_generation = -1
        self._empty_generation = -1
        """The generation at which a claim last came back empty."""
        self.claim_error: BaseException | None = None

    # -- feeding ---------------------------------------------------------------------------

    def note_result(self) -> None:
        """A result was queued for the writer: it may have added URLs, so claim again."""
        self._generation += 1

    def _poll_claim(self) -> None:
        """Absorb a finished claim; start a new one when the buffer runs low, or when no
        buffered host is ready (the buffer may hold only hosts that must wait: fetch others)."""
        self._absorb()
        if (
            self._pending is not None
            or self.claim_error is not None
            or self._empty_generation == self._generation
            or self._buffered >= self._buffer_size
        ):
            return
        now = self._clock()
        if now < self._retry_at:
            return  # the last claim found only work that is not ready yet
        low = self._buffered < self._buffer_size // 2
        idle = not self._heap or self._heap[0][0] > now
        if not (low or idle):
            return
        if self._buffered and now - self._last_claim_at < self._claim_interval_s:
            return  # many hosts all waiting: claim at a bounded rate, not once per loop
        self._last_claim_at = now
        self._claim_generation = self._generation
        full = [s.host_id for s in self._slots.values() if len(s.queue) >= self._per_host_buffer]
        full.extend(self._capped)
        self._pending = self._claims.claim(
            min(self._buffer_size - self._buffered, 1024), full, self._per_host_buffer
        )
        self._absorb()  # a claim may answer at once

    def _absorb(self) -> None:
        fut = self._pending
        if fut is None or not fut.done():
            return
        self._pending = None
        exc = fut.exception()
        if exc is not None:
            self.claim_error = exc
            return
        tasks = fut.result()
        self._prune()
        if not tasks and getattr(tasks, "more", False):
            self._retry_at = self._clock() + self._retry_s  # shared database: poll, not stop
        elif not tasks:
            self._empty_generation = self._claim_generation
        for task in tasks:
            if task.url in self._discarded:
                self._discarded.discard(task.url)
                continue  # became known as done while this claim was under way
            self._add(task)
        if not tasks:
            # The database had nothing more: with 1,000 hosts waiting on their delays, a claim
            # every 50 ms (each linear in the hosts it excludes, each a writer commit) kept the
            # dispatcher busy and made every host late. While work is in hand, back off up to
            # MAX_CLAIM_INTERVAL_S until a claim brings something again.
            self._claim_interval_s = min(MAX_CLAIM_INTERVAL_S, 2 * self._claim_interval_s)
        else:
            self._claim_interval_s = self._min_claim_interval_s

    def _slot(self, task: FetchTask) -> Slot:
        slot = self._slots.get(task.host_id)
        if slot is None:
            slot = Slot(
                task.host_id,
                task.host,
                concurrency=max(1, self._politeness.per_host_concurrency),
            )
            self._slots[task.host_id] = slot
        return slot

    def _add(self, task: FetchTask) -> None:
        if task.host_id in self._capped:
            self._released.append(task)
            return
        slot = self._slot(task)
        slot.queue.append(task)
        self._buffered += 1
        self._schedule(slot)

    def _schedule(self, slot: Slot) -> None:
        if slot.in_heap or not slot.queue or slot.active >= slot.concurrency:
            return
        slot.in_heap = True
        heapq.heappush(self._heap, (slot.ready_at(), next(self._seq), slot.host_id))

    # -- handing out -----------------------------------------------------------------------

    def next_ready(self) -> FetchTask | None:
        """The next URL whose host may be requested now, or None."""
        self._poll_claim()
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            _, _, host_id = heapq.heappop(self._heap)
            slot = self._slots[host_id]
            slot.in_heap = False
            if slot.next_allowed > now:  # pushed back since it was scheduled
                self._schedule(slot)
                continue
            if not slot.queue or slot.active >= slot.concurrency:
                continue
            task = slot.queue.popleft()
            self._buffered -= 1
            if self._is_blocked is not None and self._is_blocked(task):
                self.blocked.append(task)  # no request: the host's turn is not spent
                self._schedule(slot)
                continue
            slot.active += 1
            slot.next_allowed = now + self._delay_for(slot.host)
            self._count(slot)
            self._schedule(slot)
            if self._buffered < self._buffer_size // 2:
                self._poll_claim()
            return task
        return None

    def _count(self, slot: Slot) -> None:
        if self._max_per_host <= 0:
            return
        n = self._handed[slot.host_id] = self._handed.get(slot.host_id, 0) + 1
        if n >= self._max_per_host:
            self._capped.add(slot.host_id)
            self._released.extend(slot.queue)
            self._buffered -= len(slot.queue)
            slot.queue.clear()

    def discard(self, url: str, host: str) -> bool:
        """Drop a buffered, unstarted task for ``url`` (it became known some other way, e.g. as
        a redirect's target); True if one was dropped. A claim already under way may still
        bring it: it is remembered, and dropped when that claim arrives."""
        for slot in self._slots.values():
            if slot.host != host:
                continue
            for task in slot.queue:
                if task.url == url:
                    slot.queue.remove(task)
                    self._buffered -= 1
                    return True
        if self._pending is not None:
            if len(self._discarded) > 10_000:
                self._discarded.clear()
            self._discarded.add(url)
        return False

    def take_blocked(self) -> list[FetchTask]:
        """The tasks found blocked since the last call (for the engine to record); gives back
        those released since (hosts that reached ``max_per_host``)."""
        blocked, released = self.blocked, self._released
        self.blocked, self._released = [], []
        if released:
            self._claims.give_back(released)
        return blocked

    @property
    def claim_running(self) -> Future[list[FetchTask]] | None:
        """The claim under way, if any: a future the dispatcher may wait on."""
        return self._pending

    def wait_time(self) -> float | None:
        """Seconds until a buffered host becomes ready; None when none is waiting."""
        now = self._clock()
        waits = [self._heap[0][0] - now] if self._heap else []
        if self._retry_at > now:
            waits.append(self._retry_at - now)
        return max(0.0, min(waits)) if waits else None

    def done(self, task: FetchTask, *, retry_after_s: float | None = None) -> None:
        """A fetch of ``task`` ended: free its host's slot, and honour a ``Retry-After``."""
        slot = self._slots[task.host_id]
        slot.active -= 1
        if retry_after_s:
            slot.next_allowed = max(slot.next_allowed, self._clock() + retry_after_s)
        self._schedule(slot)

    def _prune(self) -> None:
        """Forget idle hosts whose delay has passed: memory stays bounded by the buffer."""
        now = self._clock()
        idle = [
            h
            for h, s in self._slots.items()
            if s.active == 0 and not s.queue and s.next_allowed <= now
        ]
        for host_id in idle:
            del self._slots[host_id]

    # -- ending ----------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return self._buffered

    def exhausted(self) -> bool:
        """Nothing buffered, no claim running, and the last claim — started after the last
        result — found nothing. The caller checks that no fetch is in flight."""
        self._poll_claim()
        return (
            self._buffered == 0
            and self._pending is None
            and self._empty_generation == self._generation
        )

    def close(self, unstarted: Sequence[FetchTask] = ()) -> None:
        """The crawl ends: give back ``unstarted`` (tasks handed out and never run), every
        buffered task, what was released, and what a claim still under way brings."""
        tasks = [*unstarted, *self._released, *self._drain()]
        self._released = []
        pending, self._pending = self._pending, None
        if pending is not None:
            with contextlib.suppress(Exception):  # a failed claim claimed nothing
                tasks += pending.result()
        if tasks:
            self._claims.give_back(tasks, wait=True)

    def _drain(self) -> list[FetchTask]:
        tasks = [t for s in self._slots.values() for t in s.queue]
        for slot in self._slots.values():
            slot.queue.clear()
        self._buffered = 0
        self._heap.clear()
        for slot in self._slots.values():
            slot.in_heap = False
        return tasks
