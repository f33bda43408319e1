"""Run one crawl: open the database, seed, build the parts (:mod:`crawler.run.compose`),
dispatch, finish; and the recrawl and worker loops around it.

The CLI calls :func:`run_crawl`; nothing here parses arguments or prints. Each part gets only
what it needs (a settings section, a clock, a callable), so the same parts serve recrawls and
distributed workers.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine as Engine_

from crawler.clock import utc_now
from crawler.config import Config, as_dict
from crawler.errors import SeedFileError
from crawler.parse.extract import Extractor
from crawler.records import CrawlStatus, FetchTask, PageResult
from crawler.run.compose import Parts, build_parts
from crawler.run.engine import CrawlStats, Engine, Limits
from crawler.run.pool import StreamingPool
from crawler.run.progress import Progress
from crawler.seeds import Seed, SeedProblem, read_seed_file
from crawler.store.claims import recover
from crawler.store.db import database_url, is_sqlite, make_engine, open_database
from crawler.store.discovered import pending_work, queued_count, seed_hosts
from crawler.store.lock import exclusive
from crawler.store.runs import due_counts as count_due
from crawler.store.runs import (
    finish_crawl,
    latest_settings,
    mark_due,
    next_due,
)
from crawler.store.writer import Writer
from crawler.urls import Scope, canonicalize, host_key

log = logging.getLogger(__name__)

SEED_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Recrawl:
    """What a recrawl fetches: the URLs due by ``due_before`` (at most ``limit``; 0: all)."""

    due_before: dt.datetime
    limit: int = 0


@dataclass(frozen=True, slots=True)
class CrawlOutcome:
    crawl_id: int
    status: CrawlStatus
    stop_reason: str
    stats: CrawlStats
    queued_left: int
    seeds: int
    abandoned: int = 0
    """Fetches still running when the run stopped waiting (their threads may still be busy)."""
    due: int | None = None
    """For a recrawl: the URLs that were due."""


def seed_kind(url: str) -> str:
    """A seed whose path ends in ``.xml`` or ``.xml.gz`` is read as a sitemap."""
    path = urlsplit(url).path.lower()
    return "sitemap" if path.endswith((".xml", ".xml.gz")) else "page"


def _progress(options: ProgressOptions | None, eng: Engine, db: Engine_) -> Progress | None:
    if options is None:
        return None

    def queued() -> int:
        with db.connect() as conn:
            return queued_count(conn)

    return Progress(
        eng.snapshot, queued=queued, live=options.live, interval_s=options.interval_s
    ).start()


def task_timeout(config: Config) -> float:
    """How long one URL may hold a worker before the engine gives up on it: every attempt's
    total deadline and every backoff wait, plus a margin. Only a fetch stuck where the fetcher's
    own deadline cannot reach (a server dripping its headers) ever gets there."""
    f = config.fetch
    attempts = f.retries + 1
    waits = f.retries * max(f.backoff_max_s, f.max_retry_after_s)
    return attempts * f.total_timeout + waits + 30.0


def _valid_seeds(
    path: Path, on_problem: Callable[[SeedProblem], None], on_done: Callable[[], None]
) -> Iterator[Seed]:
    for item in read_seed_file(path):
        if isinstance(item, SeedProblem):
            on_problem(item)
        else:
            yield item
    on_done()


def recrawl_passes(
    config: Config,
    *,
    once: Recrawl | None,
    every_s: float | None = None,
    limit: int = 0,
    stop: threading.Event,
    abort: threading.Event | None = None,
    progress: ProgressOptions | None = None,
    max_sleep_s: float = 3600.0,
) -> Iterator[CrawlOutcome]:
    """Recrawl passes: just ``once``, or one every ``every_s`` seconds, or (neither) whenever
    the next URL falls due — until ``stop``. The database stays locked between passes, so a
    second scheduler started meanwhile is refused rather than run alongside."""
    engine = open_database(config.store.db)
    try:
        with exclusive(config.store.db, engine, what="recrawl"):
            if once is not None:
                yield run_crawl(
                    config,
                    None,
                    stop=stop,
                    abort=abort,
                    progress=progress,
                    recrawl=once,
                    lock=False,
                )
                return
            while not stop.is_set():
                started = dt.datetime.now(dt.UTC)
                yield run_crawl(
                    config,
                    None,
                    stop=stop,
                    abort=abort,
                    progress=progress,
                    recrawl=Recrawl(started, limit),
                    lock=False,
                )
                if every_s is not None:
                    wake = started + dt.timedelta(seconds=every_s)
                else:
                    with engine.connect() as conn:
                        due = next_due(conn)
                    wake = due or started + dt.timedelta(seconds=max_sleep_s)
                wait = (wake - dt.datetime.now(dt.UTC)).total_seconds()
                log.info("next recrawl pass at %s", wake.isoformat(timespec="seconds"))
                stop.wait(max(0.0, min(wait, max_sleep_s)))
    finally:
        engine.dispose()


def due_counts(db: str) -> dict[str, int] | None:
    """For ``schedule``: URLs due now, within an hour, a day and a week (None: no database)."""
    if is_sqlite(db) and not Path(database_url(db).removeprefix("sqlite:///")).exists():
        return None
    engine = open_database(db)
    try:
        with engine.connect() as conn:
            return count_due(conn, dt.datetime.now(dt.UTC))
    finally:
        engine.dispose()


def wait_for_work(db: str, stop: threading.Event, poll_s: float = 5.0) -> bool:
    """For ``worker --forever``: wait until the shared frontier holds work again (URLs queued,
    or leases of a dead worker to take back), looking every ``poll_s`` seconds; False when
    ``stop`` is set first. An idle worker polls one cheap query instead of starting a run (and
    a ``crawls`` row) every few seconds."""
    engine = make_engine(db)
    try:
        while True:
            with engine.connect() as conn:
                if pending_work(conn):
                    return True
            if stop.wait(poll_s):
                return False
    finally:
        engine.dispose()


def stored_settings(db: str) -> tuple[int, dict[str, Any]] | None:
    """The latest run's id and settings in ``db``, or None when it has no run (or no file)."""
    if is_sqlite(db) and not Path(database_url(db).removeprefix("sqlite:///")).exists():
        return None
    engine = open_database(db)
    try:
        with engine.connect() as conn:
            return latest_settings(conn)
    finally:
        engine.dispose()


@dataclass(frozen=True, slots=True)
class ProgressOptions:
    live: bool
    """A live display (stderr is a terminal); otherwise log lines every ``interval_s``."""
    interval_s: float


def run_crawl(
    config: Config,
    seed_path: Path | None,
    *,
    stop: threading.Event,
    abort: threading.Event | None = None,
    on_seed_problem: Callable[[SeedProblem], None] = lambda _problem: None,
    on_seeds_read: Callable[[], None] = lambda: None,
    progress: ProgressOptions | None = None,
    recrawl: Recrawl | None = None,
    lock: bool = True,
    seed_only: bool = False,
) -> CrawlOutcome:
    """One run: a crawl of ``seed_path`` (and what the frontier holds), or a ``recrawl`` pass.
    ``lock=False`` when the caller already holds the database (see :mod:`crawler.store.lock`).
    ``on_seeds_read`` is called once the whole seed file is read (its problems all reported)."""
    # Compiles the selectors and imports the hook, so a rule that cannot work is refused
    # before a database or a crawls row exists (build_parts makes the one the run uses).
    Extractor(config.extract)
    seeds: Iterator[Seed] = iter(())
    if seed_path is not None:
        seeds = _valid_seeds(seed_path, on_seed_problem, on_seeds_read)
        first = next(seeds, None)  # fail before creating a database for a seed file with no URL
        if first is None:
            raise SeedFileError(f"no valid seed URL in '{seed_path}'")
        seeds = itertools.chain([first], seeds)

    engine = open_database(config.store.db)
    try:
        if not lock:
            return _run(config, seed_path, engine, seeds, stop, abort, progress, recrawl, seed_only)
        with exclusive(config.store.db, engine, what="recrawl" if recrawl else "crawl"):
            return _run(config, seed_path, engine, seeds, stop, abort, progress, recrawl, seed_only)
    finally:
        engine.dispose()


def _run(
    config: Config,
    seed_path: Path | None,
    engine: Engine_,
    seeds: Iterator[Seed],
    stop: threading.Event,
    abort: threading.Event | None,
    progress: ProgressOptions | None,
    recrawl: Recrawl | None,
    seed_only: bool = False,
) -> CrawlOutcome:
    writer = Writer(engine, config.store).start()
    parts: Parts | None = None
    try:
        n_seeds = _recover_and_seed(config, writer, seeds)
        due = None
        if recrawl is not None:
            due = writer.run(partial(mark_due, due_before=recrawl.due_before, limit=recrawl.limit))
        crawl_id = writer.start_crawl(
            seed_file=str(seed_path) if seed_path else None,
            settings=as_dict(config),
            command="recrawl" if recrawl else "crawl",
        )
        if seed_only:  # the run's row keeps the settings that workers will take up
            _, queued = _finish(writer, crawl_id, CrawlStatus.FINISHED)
            return CrawlOutcome(
                crawl_id, CrawlStatus.FINISHED, "seeded", CrawlStats(), queued, n_seeds
            )
        parts = build_parts(config, writer, _scope(config, writer), stop)
        eng = _dispatch(config, parts, writer, engine, stop, abort, progress)
        status, queued_left = _finish(writer, crawl_id, eng.status)
        writer.close()
        return CrawlOutcome(
            crawl_id, status, eng.stop_reason, eng.stats, queued_left, n_seeds, eng.abandoned, due
        )
    finally:
        if parts is not None:
            parts.close()
        writer.close()


def _recover_and_seed(config: Config, writer: Writer, seeds: Iterator[Seed]) -> int:
    """Requeue what a dead run left ``fetching``, then queue the seeds; how many seeds."""
    requeued = writer.run(partial(recover, now=utc_now(), all_leases=is_sqlite(config.store.db)))
    if requeued:
        log.info("requeued %d URLs left fetching by an earlier run", requeued)
    n_seeds = 0
    sort_query, strip = config.scope.sort_query, config.scope.strip_tracking
    for batch in iter(lambda: list(itertools.islice(seeds, SEED_BATCH)), []):
        urls = [canonicalize(s.url, sort_query=sort_query, strip_tracking=strip) for s in batch]
        writer.add_seeds([(u, host_key(u), seed_kind(u)) for u in urls])
        n_seeds += len(batch)
    return n_seeds


def _scope(config: Config, writer: Writer) -> Scope:
    return Scope(
        seed_hosts=writer.run(seed_hosts),
        allowed_domains=config.scope.allowed_domains,
        follow_external=config.scope.follow_external,
        include=config.scope.include,
        exclude=config.scope.exclude,
    )


def _dispatch(
    config: Config,
    parts: Parts,
    writer: Writer,
    db: Engine_,
    stop: threading.Event,
    abort: threading.Event | None,
    progress: ProgressOptions | None,
) -> Engine:
    """Run the dispatcher over a pool of fetcher threads until the crawl ends."""
    workers = config.crawl.workers
    pool: StreamingPool[FetchTask, PageResult] = StreamingPool(
        parts.worker,
        workers=workers,
        max_in_flight=config.crawl.max_in_flight or 2 * workers,
        thread_name_prefix="fetch",
        task_timeout=task_timeout(config),
    )
    eng = Engine(
        parts.frontier,
        pool,
        writer,
        limits=Limits(config.crawl.max_pages, config.crawl.max_time_s),
        stop=stop,
        abort=abort,
        grace_s=config.crawl.shutdown_grace,
    )
    reporter = _progress(progress, eng, db)
    try:
        eng.run()
    finally:
        if reporter is not None:
            reporter.stop()
        # Fetches given up on still hold their threads: do not wait for them.
        pool.shutdown(wait=not eng.abandoned, cancel=True)
    return eng


def _finish(writer: Writer, crawl_id: int, status: CrawlStatus) -> tuple[CrawlStatus, int]:
    """Record how the run ended; the status and the URLs left queued (-1: writer failed)."""
    if status is CrawlStatus.RUNNING:
        status = CrawlStatus.FAILED
    if writer.error is not None:
        return status, -1
    writer.run(partial(finish_crawl, crawl_id=crawl_id, status=status, now=utc_now()))
    return status, writer.run(queued_count)
