"""Compose one crawl run from settings: open the database, seed, build the parts, run, finish.

The CLI calls :func:`run_crawl`; nothing here parses arguments or prints. Each part gets only
what it needs (a settings section, a clock, a callable), so the same parts serve recrawls and
distributed workers.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection
from sqlalchemy import Engine as Engine_

from crawler import sql
from crawler.config import Config, FetchSettings, as_dict
from crawler.db import database_url, is_sqlite, make_engine, open_database
from crawler.engine import CrawlStats, Engine, Limits
from crawler.errors import SeedFileError
from crawler.extract import Extractor
from crawler.fetcher import HTML_TYPES, Fetcher
from crawler.frontier import Frontier, lease_deadline
from crawler.links import LinkPolicy
from crawler.lock import exclusive
from crawler.parseproc import ParserProcesses, process_count
from crawler.politeness import MAX_CRAWL_DELAY_S, HostGate, RobotsCache
from crawler.pool import StreamingPool
from crawler.progress import Progress
from crawler.records import CrawlStatus, FetchTask, PageResult
from crawler.robots import fetch_robots, robots_fetch_settings
from crawler.seeds import Seed, SeedProblem, read_seed_file
from crawler.urls import Scope, canonicalize, host_key
from crawler.work import PageWorker, SitemapReader
from crawler.writer import Writer, utc_now

log = logging.getLogger(__name__)

SEED_BATCH = 1000
SITEMAP_MAX_BYTES = 200 * 1024 * 1024
"""Decoded bytes of one sitemap (the protocol allows 50 MB; some sites exceed it)."""


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


@dataclass(frozen=True, slots=True)
class Parts:
    frontier: Frontier
    worker: PageWorker
    fetchers: list[Fetcher]
    """To close when the run ends."""
    parsers: ParserProcesses | None = None
    """Parser processes, to close (and wait for) when the run ends."""

    def close(self) -> None:
        for fetcher in self.fetchers:
            fetcher.close()
        if self.parsers is not None:
            self.parsers.close()


def build_parts(config: Config, writer: Writer, scope: Scope, stop: threading.Event) -> Parts:
    """The frontier and the worker, wired to politeness, robots.txt, sitemaps and the writer."""
    ua = config.crawl.user_agent
    polite = config.politeness
    robots: RobotsCache | None = None

    def delay_for(host: str) -> float:
        crawl_delay = robots.crawl_delay(host) if robots is not None else 0.0
        return max(polite.delay, crawl_delay)

    def allow_private(hostname: str) -> bool:
        return config.scope.allow_private_networks or scope.is_seed_host(hostname)

    gate = HostGate(delay_for)

    def fetcher(settings: FetchSettings, body_types: frozenset[str] | None) -> Fetcher:
        return Fetcher(
            settings,
            ua,
            sleep=stop.wait,
            should_stop=stop.is_set,
            body_types=body_types,
            before_request=gate.wait_turn,
            allow_private=allow_private,
            on_retry_after=gate.push_back,
        )

    page_fetcher = fetcher(config.fetch, HTML_TYPES)
    fetchers = [page_fetcher]
    if polite.obey_robots:
        robots_fetcher = fetcher(robots_fetch_settings(config.fetch), None)
        fetchers.append(robots_fetcher)
        robots = RobotsCache(
            lambda host: fetch_robots(robots_fetcher, host, ua), ua, ttl_s=polite.robots_ttl
        )
    sitemap_fetcher = fetcher(replace(config.fetch, max_body_bytes=SITEMAP_MAX_BYTES), None)
    fetchers.append(sitemap_fetcher)
    links = LinkPolicy(
        scope,
        max_depth=config.crawl.max_depth,
        sort_query=config.scope.sort_query,
        strip_tracking=config.scope.strip_tracking,
        follow_nofollow=config.scope.follow_nofollow,
    )
    extractor = Extractor(config.extract)
    n_parsers = process_count(config.crawl.parse_processes)
    parsers = None
    if n_parsers and not extractor:  # extraction rules run on this process's soup
        parsers = ParserProcesses(n_parsers, links, keep_text=config.store.keep_text)
    worker = PageWorker(
        page_fetcher.fetch,
        links,
        schedule=config.schedule,
        now=utc_now,
        robots=robots,
        use_sitemaps=config.scope.use_sitemaps,
        sitemaps=SitemapReader(sitemap_fetcher.fetch, writer.put),
        keep_text=config.store.keep_text,
        extractor=extractor,
        robots_takes_a_slot=not is_sqlite(config.store.db),
        parsers=parsers,
    )

    shared = not is_sqlite(config.store.db)
    lease_s = config.crawl.lease_timeout
    last_recovery = [0.0]

    def take(conn: Connection, n: int, exclude: Collection[int], per_host: int) -> list[FetchTask]:
        if not shared:
            return sql.claim(
                conn, n, exclude, lease_deadline(utc_now(), lease_s), per_host=per_host
            )
        # Many processes share this frontier: the database reserves each host's next slot,
        # and claims of dead workers come back when their leases expire.
        if time.monotonic() - last_recovery[0] > min(10.0, lease_s / 2):
            last_recovery[0] = time.monotonic()
            sql.recover(conn, utc_now(), all_leases=False)
        return sql.claim_shared(
            conn,
            n,
            delay=polite.delay,
            per_host=polite.per_host_concurrency,
            lease_s=lease_s,
            max_delay=MAX_CRAWL_DELAY_S,
        )

    def claim(n: int, exclude: Collection[int], per_host: int) -> Future[list[FetchTask]]:
        def job(conn: Connection) -> list[FetchTask]:
            now = utc_now()
            tasks = take(conn, n, exclude, per_host)
            if robots is not None:  # a resumed crawl trusts robots.txt fetched earlier
                unknown = {t.host for t in tasks if not robots.known(t.host)}
                for host, body, at in sql.cached_robots(conn, unknown):
                    robots.prime(host, body, (now - at).total_seconds())
            return tasks

        return writer.call(job)

    def is_blocked(task: FetchTask) -> bool:
        return robots is not None and robots.disallows(task.url, task.host)

    if shared:  # claim only what can be fetched at once: a reserved slot must not wait
        size = config.crawl.workers
        frontier = Frontier(
            polite,
            claim,
            buffer_size=size,
            per_host_buffer=1,
            delay_for=delay_for,
            is_blocked=is_blocked,
            retry_s=0.05,
        )
    else:
        frontier = Frontier(
            polite,
            claim,
            # Enough of a host's URLs in hand to keep all its slots busy between two claims
            # (each claim makes the writer commit): a single fast host once claimed 8 at a time.
            per_host_buffer=max(8, 2 * polite.per_host_concurrency),
            delay_for=delay_for,
            is_blocked=is_blocked,
            max_per_host=config.scope.max_pages_per_host,
        )
    return Parts(frontier, worker, fetchers, parsers)


def _progress(options: ProgressOptions | None, eng: Engine, db: Engine_) -> Progress | None:
    if options is None:
        return None

    def queued() -> int:
        with db.connect() as conn:
            return sql.queued_count(conn)

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
                        due = sql.next_due(conn)
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
            return sql.due_counts(conn, dt.datetime.now(dt.UTC))
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
                if sql.pending_work(conn):
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
            return sql.latest_settings(conn)
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
    ``lock=False`` when the caller already holds the database (see :mod:`crawler.lock`).
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
        requeued = writer.run(
            partial(sql.recover, now=utc_now(), all_leases=is_sqlite(config.store.db))
        )
        if requeued:
            log.info("requeued %d URLs left fetching by an earlier run", requeued)
        n_seeds = 0
        sort_query, strip = config.scope.sort_query, config.scope.strip_tracking
        for batch in iter(lambda: list(itertools.islice(seeds, SEED_BATCH)), []):
            urls = [canonicalize(s.url, sort_query=sort_query, strip_tracking=strip) for s in batch]
            pairs = [(u, host_key(u), seed_kind(u)) for u in urls]
            writer.run(partial(sql.add_seeds, seeds=pairs, now=utc_now(), hosts=writer.hosts))
            n_seeds += len(batch)
        due = None
        if recrawl is not None:
            due = writer.run(
                partial(sql.mark_due, due_before=recrawl.due_before, limit=recrawl.limit)
            )
        crawl_id = writer.run(
            partial(
                sql.start_crawl,
                seed_file=str(seed_path) if seed_path else None,
                settings=as_dict(config),
                now=utc_now(),
                command="recrawl" if recrawl else "crawl",
            )
        )
        writer.crawl_id = crawl_id
        if seed_only:  # the run's row keeps the settings that workers will take up
            writer.run(
                partial(
                    sql.finish_crawl, crawl_id=crawl_id, status=CrawlStatus.FINISHED, now=utc_now()
                )
            )
            queued = writer.run(sql.queued_count)
            return CrawlOutcome(
                crawl_id, CrawlStatus.FINISHED, "seeded", CrawlStats(), queued, n_seeds
            )
        scope = Scope(
            seed_hosts=writer.run(sql.seed_hosts),
            allowed_domains=config.scope.allowed_domains,
            follow_external=config.scope.follow_external,
            include=config.scope.include,
            exclude=config.scope.exclude,
        )
        parts = build_parts(config, writer, scope, stop)
        workers = config.crawl.workers
        max_in_flight = config.crawl.max_in_flight or 2 * workers
        pool: StreamingPool[FetchTask, PageResult] = StreamingPool(
            parts.worker,
            workers=workers,
            max_in_flight=max_in_flight,
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
        reporter = _progress(progress, eng, engine)
        try:
            stats = eng.run()
        finally:
            if reporter is not None:
                reporter.stop()
            # Fetches given up on still hold their threads: do not wait for them.
            pool.shutdown(wait=not eng.abandoned, cancel=True)
        status = eng.status
        if status is CrawlStatus.RUNNING:
            status = CrawlStatus.FAILED
        if writer.error is None:
            writer.run(partial(sql.finish_crawl, crawl_id=crawl_id, status=status, now=utc_now()))
            queued_left = writer.run(sql.queued_count)
        else:
            queued_left = -1
        writer.close()
        return CrawlOutcome(
            crawl_id, status, eng.stop_reason, stats, queued_left, n_seeds, eng.abandoned, due
        )
    finally:
        if parts is not None:
            parts.close()
        writer.close()
