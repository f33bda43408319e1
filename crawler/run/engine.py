"""The dispatcher loop: frontier → pool → results → writer, and how a crawl ends.

The loop is one sentence (after Scrapy's engine): *while the pool has room and a host is ready,
start one; then hand every completed page to the writer the moment it completes.* Nothing waits
for a batch; a slow page holds up nobody. The dispatcher thread does no per-page work a worker
could do: it moves frozen results from the pool to the writer and frees host slots.

A crawl ends when the frontier is exhausted and nothing is in flight, when ``max_pages`` pages
were started, after ``max_time_s``, when ``stop`` is set (a signal), or when the writer fails.
On the way out, URLs claimed but never started are given back to the frontier.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from crawler import errors
from crawler.clock import utc_now
from crawler.records import CrawlStatus, ErrorRecord, FetchTask, PageResult, URLState
from crawler.run.frontier import Frontier
from crawler.run.pool import StreamingPool
from crawler.run.progress import Snapshot
from crawler.run.work import blocked_result
from crawler.store.writer import Writer, WriterFailed
from crawler.urls import host_key

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.5
"""Longest the dispatcher sleeps with nothing to do before looking again."""


@dataclass(slots=True)
class CrawlStats:
    """Figures of one run, kept by the dispatcher as results stream past."""

    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    pages: int = 0
    """Results with a completed HTTP exchange (any status)."""
    ok_pages: int = 0
    """Results whose URL ended ``done``."""
    failed: int = 0
    blocked: int = 0
    """URLs robots.txt disallows: never requested."""
    requeued: int = 0
    """URLs given back to the frontier for later (their host's robots.txt was unreachable)."""
    bytes: int = 0
    retries: int = 0
    changed: int = 0
    """Pages whose content changed since their previous fetch (new pages included)."""
    unchanged: int = 0
    """Pages fetched again with the same content (a 304 included)."""
    not_modified: int = 0
    """304 answers to conditional requests."""
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    """Final errors (URLs that failed for good) by kind."""

    def add(self, result: PageResult) -> None:
        f = result.fetch
        if f is not None:
            self.pages += 1
            if f.body is not None:
                self.bytes += f.content_length or 0
            self.not_modified += f.not_modified
        if result.changed is True:
            self.changed += 1
        elif result.changed is False:
            self.unchanged += 1
        if result.state is URLState.DONE:
            self.ok_pages += 1
        elif result.state is URLState.BLOCKED:
            self.blocked += 1
        elif result.state is URLState.QUEUED:
            self.requeued += 1
        else:
            self.failed += 1
        for e in result.errors:
            if e.final:
                self.errors_by_kind[e.kind.value] += 1
            else:
                self.retries += 1

    @property
    def elapsed_s(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_pages: int = 0
    max_time_s: float = 0.0


class Engine:
    def __init__(
        self,
        frontier: Frontier,
        pool: StreamingPool[FetchTask, PageResult],
        writer: Writer,
        *,
        limits: Limits = Limits(),
        stop: threading.Event | None = None,
        abort: threading.Event | None = None,
        grace_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``stop``: end gracefully (no new URLs; in-flight ones get ``grace_s`` to finish).
        ``abort``: end now (what has not finished is given back to the frontier)."""
        self._frontier = frontier
        self._pool = pool
        self._writer = writer
        self._limits = limits
        self._stop = stop or threading.Event()
        self._abort = abort or threading.Event()
        self._grace_s = grace_s
        self._clock = clock
        self.stats = CrawlStats(started=clock())
        self.status = CrawlStatus.RUNNING
        self.stop_reason = ""
        self._started = 0
        self.abandoned = 0
        """Fetches still running when the engine stopped waiting; their URLs were given back."""

    def _limit_reached(self) -> bool:
        max_pages = self._limits.max_pages
        return max_pages > 0 and self._started >= max_pages

    def _should_end(self) -> bool:
        if self._stop.is_set() or self._abort.is_set():
            self.status, self.stop_reason = CrawlStatus.INTERRUPTED, "stopped by a signal"
            return True
        if self._writer.error is not None or self._frontier.claim_error is not None:
            self.status = CrawlStatus.FAILED
            self.stop_reason = f"database error: {self._writer.error or self._frontier.claim_error}"
            return True
        max_time = self._limits.max_time_s
        if max_time > 0 and self._clock() - self.stats.started >= max_time:
            self.status, self.stop_reason = CrawlStatus.FINISHED, f"--max-time {max_time:g}s"
            return True
        return False

    def run(self) -> CrawlStats:
        """Crawl until the frontier is exhausted or a limit or signal ends it."""
        try:
            self._loop()
        finally:
            self._wind_down()
            self.stats.ended = self._clock()
        return self.stats

    def _loop(self) -> None:
        pool, frontier = self._pool, self._frontier
        while not self._should_end():
            while not pool.full() and not self._limit_reached():
                task = frontier.next_ready()
                if task is None:
                    break
                pool.submit(task)
                self._started += 1
            self._take_from_frontier()
            if not len(pool):
                if self._limit_reached():
                    self.status, self.stop_reason = (
                        CrawlStatus.FINISHED,
                        f"--max-pages {self._limits.max_pages}",
                    )
                    return
                if frontier.exhausted():
                    self.status = CrawlStatus.FINISHED
                    return
            if pool.full() or self._limit_reached():
                timeout = IDLE_WAIT_S  # nothing can start before a fetch completes: wait for one
            else:  # (a ready host in the frontier would otherwise make this a busy loop)
                wait = frontier.wait_time()
                timeout = IDLE_WAIT_S if wait is None else min(wait, IDLE_WAIT_S)
            wake: list[Future[object]] = []
            if frontier.claim_running is not None:
                wake.append(frontier.claim_running)  # type: ignore[arg-type]
            if len(pool) or wake:
                self._consume(pool.completed(timeout, wake=wake))
            else:
                self._stop.wait(timeout)

    def _consume(self, done: list[tuple[FetchTask, PageResult | BaseException]]) -> None:
        for task, outcome in done:
            if isinstance(outcome, BaseException):  # a TaskTimeout, or a bug PageWorker missed
                kind = errors.classify(outcome)
                err = ErrorRecord(kind, errors.describe(outcome), 1, True, utc_now())
                result = PageResult(task, URLState.FAILED, errors=(err,))
            else:
                result = outcome
            f = result.fetch
            self._frontier.done(task, retry_after_s=result.retry_after_s)
            if result.final_url is not None:
                self._frontier.discard(result.final_url, host_key(result.final_url))
            self.stats.add(result)
            try:
                self._writer.put(result)
            except WriterFailed:
                return
            self._frontier.note_result()
            log.debug("%s %s", f.status_code if f else result.state.value, task.url)

    def _take_from_frontier(self) -> None:
        """Record the URLs the frontier found disallowed."""
        for task in self._frontier.take_blocked():
            result = blocked_result(task, utc_now())
            self.stats.add(result)
            try:
                self._writer.put(result)
            except WriterFailed:
                return

    def snapshot(self) -> Snapshot:
        """The figures a progress display shows; read from another thread without a lock
        (plain integers: at worst a figure is one page old)."""
        s = self.stats
        return Snapshot(
            pages=s.pages,
            ok=s.ok_pages,
            failed=s.failed,
            blocked=s.blocked,
            in_flight=len(self._pool),
            bytes=s.bytes,
            elapsed_s=self._clock() - s.started,
        )

    def _wind_down(self) -> None:
        """Let in-flight fetches finish (at most ``grace_s``; they are cut short by ``stop``),
        store their results, and give back every URL that was claimed and not finished."""
        unstarted = self._pool.cancel_pending()
        deadline = self._clock() + self._grace_s
        while len(self._pool):
            left = deadline - self._clock()
            if self._abort.is_set() or left <= 0:
                abandoned = self._pool.abandon()
                self.abandoned = len(abandoned)
                unstarted += abandoned
                log.warning("gave up waiting for %d fetches in flight", len(abandoned))
                break
            self._consume(self._pool.completed(min(IDLE_WAIT_S, left)))
        self._take_from_frontier()
        self._frontier.close(unstarted)
