"""Compose the parts of one crawl from its settings, in named steps.

:func:`build_parts` wires the frontier and the page worker to politeness (the per-host gate and
delays), robots.txt, sitemaps, parser processes and the writer. Each step takes only what it
needs; the only state shared between parts is held by small named objects (:class:`HostDelays`),
never by closures. Nothing here runs a crawl (:mod:`crawler.run.runner` does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from threading import Event

from sqlalchemy import Connection

from crawler.checks import robots_product_token
from crawler.clock import utc_now
from crawler.config import Config, FetchSettings, PolitenessSettings
from crawler.fetch import httpheaders
from crawler.fetch.fetcher import Fetcher
from crawler.fetch.gate import MAX_CRAWL_DELAY_S, HostGate, RobotsCache
from crawler.fetch.robots import fetch_robots, robots_fetch_settings
from crawler.parse.extract import Extractor, needs_tree
from crawler.parse.links import LinkPolicy
from crawler.parse.processes import ParserProcesses, process_count
from crawler.records import HTML_TYPES, FetchTask
from crawler.run.frontier import Frontier
from crawler.run.work import PageWorker, SitemapReader
from crawler.store.claims import Claims, LocalClaims, SharedClaims, WriterClaims
from crawler.store.db import is_sqlite
from crawler.store.hosts import cached_robots
from crawler.store.writer import Writer
from crawler.urls import Scope

SITEMAP_MAX_BYTES = 200 * 1024 * 1024
"""Decoded bytes of one sitemap (the protocol allows 50 MB; some sites exceed it)."""


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


class HostDelays:
    """A host's delay now: ``[politeness] delay``, or its robots.txt Crawl-delay when larger.
    The gate and the frontier both ask it; :attr:`robots` is set once robots.txt is wired."""

    def __init__(self, politeness: PolitenessSettings) -> None:
        self._delay = politeness.delay
        self.robots: RobotsCache | None = None

    def __call__(self, host: str) -> float:
        crawl_delay = self.robots.crawl_delay(host) if self.robots is not None else 0.0
        return max(self._delay, crawl_delay)


class RobotsPrimer:
    """Run in each claim's transaction: a resumed crawl trusts robots.txt fetched earlier."""

    def __init__(self, robots: RobotsCache) -> None:
        self._robots = robots

    def __call__(self, conn: Connection, tasks: list[FetchTask]) -> None:
        now = utc_now()
        unknown = {t.host for t in tasks if not self._robots.known(t.host)}
        for host, body, at in cached_robots(conn, unknown):
            self._robots.prime(host, body, (now - at).total_seconds())


class Blocked:
    """True for a task whose host's known robots.txt disallows it (no slot is spent)."""

    def __init__(self, robots: RobotsCache) -> None:
        self._robots = robots

    def __call__(self, task: FetchTask) -> bool:
        return self._robots.disallows(task.url, task.host)


def make_fetcher(
    config: Config,
    scope: Scope,
    gate: HostGate,
    stop: Event,
    settings: FetchSettings,
    body_types: frozenset[str] | None,
) -> Fetcher:
    """A fetcher paced by the gate, stopped by ``stop``, guarded against private networks."""
    allow_all = config.scope.allow_private_networks
    return Fetcher(
        settings,
        config.crawl.user_agent,
        sleep=stop.wait,
        should_stop=stop.is_set,
        body_types=body_types,
        before_request=gate.wait_turn,
        allow_private=lambda hostname: allow_all or scope.is_seed_host(hostname),
        on_retry_after=gate.push_back,
    )


def link_policy(config: Config, scope: Scope) -> LinkPolicy:
    return LinkPolicy(
        scope,
        max_depth=config.crawl.max_depth,
        sort_query=config.scope.sort_query,
        strip_tracking=config.scope.strip_tracking,
        follow_nofollow=config.scope.follow_nofollow,
    )


def parser_processes(
    config: Config, links: LinkPolicy, extractor: Extractor
) -> ParserProcesses | None:
    """``[crawl] parse_processes`` children, unless extraction needs this process's tree."""
    n = process_count(config.crawl.parse_processes)
    if not n or needs_tree(extractor):
        return None
    return ParserProcesses(n, links, keep_text=config.store.keep_text)


def claim_strategy(config: Config) -> Claims:
    """The local claim on SQLite; on a shared database, the claim that reserves host slots."""
    lease_s = config.crawl.lease_timeout
    if is_sqlite(config.store.db):
        return LocalClaims(lease_s, utc_now)
    polite = config.politeness
    return SharedClaims(
        delay=polite.delay,
        per_host=polite.per_host_concurrency,
        lease_s=lease_s,
        max_delay=MAX_CRAWL_DELAY_S,
        now=utc_now,
    )


def frontier_for(
    config: Config, claims: WriterClaims, delays: HostDelays, robots: RobotsCache | None
) -> Frontier:
    polite = config.politeness
    blocked = Blocked(robots) if robots is not None else None
    if not is_sqlite(config.store.db):  # claim only what can be fetched at once: a reserved
        return Frontier(  # slot must not wait
            polite,
            claims,
            buffer_size=config.crawl.workers,
            per_host_buffer=1,
            delay_for=delays,
            is_blocked=blocked,
            retry_s=0.05,
        )
    return Frontier(
        polite,
        claims,
        # Enough of a host's URLs in hand to keep all its slots busy between two claims
        # (each claim makes the writer commit): a single fast host once claimed 8 at a time.
        per_host_buffer=max(8, 2 * polite.per_host_concurrency),
        delay_for=delays,
        is_blocked=blocked,
        max_per_host=config.scope.max_pages_per_host,
    )


def build_parts(config: Config, writer: Writer, scope: Scope, stop: Event) -> Parts:
    """The frontier and the worker, wired to politeness, robots.txt, sitemaps and the writer."""
    httpheaders.install()  # same headers, parsed without the email package (its docstring)
    polite = config.politeness
    delays = HostDelays(polite)
    fetcher = partial(make_fetcher, config, scope, HostGate(delays), stop)
    page_fetcher = fetcher(config.fetch, HTML_TYPES)
    fetchers = [page_fetcher]
    robots: RobotsCache | None = None
    if polite.obey_robots:
        robots_fetcher = fetcher(robots_fetch_settings(config.fetch), None)
        fetchers.append(robots_fetcher)
        ua = config.crawl.user_agent
        robots = RobotsCache(
            partial(fetch_robots, robots_fetcher, user_agent=ua), ua, ttl_s=polite.robots_ttl
        )
        delays.robots = robots
    sitemap_fetcher = fetcher(replace(config.fetch, max_body_bytes=SITEMAP_MAX_BYTES), None)
    fetchers.append(sitemap_fetcher)
    links = link_policy(config, scope)
    extractor = Extractor(config.extract)
    parsers = parser_processes(config, links, extractor)
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
        robots_token=robots_product_token(config.crawl.user_agent),
    )
    primer = RobotsPrimer(robots) if robots is not None else None
    claims = WriterClaims(writer, claim_strategy(config), primer)
    return Parts(frontier_for(config, claims, delays, robots), worker, fetchers, parsers)
