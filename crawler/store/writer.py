"""The single writer: one thread owns the write connection and commits results in batches.

Why one writer: SQLite allows one writer at a time, and batching many pages into one transaction
is what makes storing hundreds of pages a second cheap. Results arrive on a *bounded* queue, so a
slow disk slows the fetchers instead of filling memory (DESIGN §2.1). A batch is committed when it
holds ``batch_rows`` results or is ``batch_ms`` old, whichever comes first, so a slow page never
holds back the rows of the fast pages that finished before it.

Other writes (seeding, frontier claims, crawl status) run on the same thread through :meth:`call`,
after the pending batch is committed, so a claim always sees every link stored before it.

If a batch fails (a full disk, a broken database), the writer stops storing: the failed batch's
transaction is rolled back, :attr:`error` is set, :meth:`put` and :meth:`call` raise
:class:`WriterFailed`, and the engine ends the crawl. Nothing already committed is touched; the
URLs of the lost batch are still ``fetching`` and are requeued by the next run.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from crawler.clock import utc_now
from crawler.config import StoreSettings
from crawler.records import PageResult, SitemapChunk
from crawler.store.discovered import add_seeds
from crawler.store.hosts import HostCache
from crawler.store.results import store_results, store_sitemap_entries
from crawler.store.runs import start_crawl

Item = PageResult | SitemapChunk

log = logging.getLogger(__name__)

T = TypeVar("T")


class WriterFailed(RuntimeError):
    """The writer could not store a batch; the crawl must stop."""


@dataclass(frozen=True, slots=True)
class _Job:
    fn: Callable[[Connection], Any]
    future: Future[Any]


_STOP = object()


def reason(exc: BaseException | None) -> str:
    """One line saying why a database operation failed: the driver's own message when there
    is one (``database or disk is full``), without SQLAlchemy's statement and help link."""
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Writer:
    def __init__(
        self,
        engine: Engine,
        settings: StoreSettings,
        *,
        crawl_id: int | None = None,
        now: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self.crawl_id = crawl_id
        self._now = now
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, settings.queue_size))
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self.hosts = HostCache()
        """The writer thread's host-id cache; jobs run through :meth:`call` may use it."""
        self.error: BaseException | None = None
        self.batches = 0
        self.rows = 0
        self.max_queue_depth = 0

    # -- producer side (any thread) -------------------------------------------------------

    def start(self) -> Writer:
        self._thread.start()
        return self

    def put(self, result: Item) -> None:
        """Queue one result; blocks while the queue is full (backpressure)."""
        self._raise_if_failed()
        self._queue.put(result)
        depth = self._queue.qsize()
        if depth > self.max_queue_depth:
            self.max_queue_depth = depth

    def call(self, fn: Callable[[Connection], T]) -> Future[T]:
        """Run ``fn(conn)`` on the writer thread in its own transaction, after pending results."""
        self._raise_if_failed()
        future: Future[T] = Future()
        self._queue.put(_Job(fn, future))
        return future

    def run(self, fn: Callable[[Connection], T]) -> T:
        """:meth:`call` and wait for the answer."""
        return self.call(fn).result()

    def add_seeds(self, seeds: Sequence[tuple[str, str, str]]) -> None:
        """Queue ``(url, host, kind)`` seeds (:func:`crawler.store.discovered.add_seeds`) with
        this writer's host cache, and wait."""
        self.run(partial(add_seeds, seeds=seeds, now=self._now(), hosts=self.hosts))

    def start_crawl(self, *, seed_file: str | None, settings: dict[str, Any], command: str) -> int:
        """Insert this run's ``crawls`` row; the results put from now on count toward it."""
        crawl_id = self.run(
            partial(
                start_crawl,
                seed_file=seed_file,
                settings=settings,
                now=self._now(),
                command=command,
            )
        )
        self.crawl_id = crawl_id
        return crawl_id

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """Commit what is pending and stop the thread. Raises WriterFailed if a batch failed."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise WriterFailed(f"the database writer failed: {reason(self.error)}") from self.error

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        pending: list[Item] = []
        deadline = 0.0
        batch_s = self._settings.batch_ms / 1000
        try:
            conn = self._engine.connect()
        except Exception as exc:
            # Not logged as an error: the caller gets it as WriterFailed, and says it once.
            log.debug("writer: cannot connect to the database", exc_info=True)
            self.error = exc
            self._drain_failed()
            return
        with conn:
            while True:
                timeout = max(0.0, deadline - time.monotonic()) if pending else None
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    self._flush(conn, pending)
                    continue
                if item is _STOP:
                    self._flush(conn, pending)
                    return
                if isinstance(item, _Job):
                    self._flush(conn, pending)
                    self._run_job(conn, item)
                    continue
                if self.error is not None:
                    continue  # failed: drain so producers never block forever
                if not pending:
                    deadline = time.monotonic() + batch_s
                pending.append(item)
                # Under steady load the queue never empties: the age check keeps batch_ms a bound.
                if len(pending) >= self._settings.batch_rows or time.monotonic() >= deadline:
                    self._flush(conn, pending)

    def _drain_failed(self) -> None:
        """After a fatal error: fail every job and drop every result until told to stop."""
        while (item := self._queue.get()) is not _STOP:
            if isinstance(item, _Job):
                self._run_job(None, item)  # error is set: this fails the job

    def _flush(self, conn: Connection, pending: list[Item]) -> None:
        if not pending or self.error is not None:
            pending.clear()
            return
        try:
            # Inside the try: an exception escaping the thread would leave producers blocked.
            if self.crawl_id is None:
                raise RuntimeError("results put before the writer was given a crawl_id")
            with conn.begin():
                now = self._now()
                chunks = [p for p in pending if isinstance(p, SitemapChunk)]
                if chunks:
                    store_sitemap_entries(conn, chunks, now, self.hosts)
                results = [p for p in pending if isinstance(p, PageResult)]
                store_results(
                    conn,
                    self.crawl_id,
                    results,
                    now,
                    self.hosts,
                    keep_html=self._settings.keep_html,
                )
            self.batches += 1
            self.rows += len(pending)
        except Exception as exc:
            # Not logged as an error: put(), call() and close() raise WriterFailed from now on,
            # and the CLI prints that one line (a full disk must not print the reason twice).
            log.debug("writer: storing a batch of %d results failed", len(pending), exc_info=True)
            self.error = exc
        finally:
            pending.clear()

    def _run_job(self, conn: Connection | None, job: _Job) -> None:
        if self.error is not None or conn is None:
            failed = WriterFailed(f"the database writer failed: {reason(self.error)}")
            job.future.set_exception(failed)
            return
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            with conn.begin():
                value = job.fn(conn)
        except Exception as exc:
            job.future.set_exception(exc)
        else:
            job.future.set_result(value)
