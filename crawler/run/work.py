"""One URL's whole job, run on a worker thread: fetch, parse, resolve and scope its links.

Everything per page that a worker can do happens here, off the dispatcher thread (which only
moves results along), so the dispatcher never becomes the bottleneck. The result is a frozen
:class:`~crawler.records.PageResult` the writer stores as it is. A per-URL failure of any kind —
including a bug in parsing — becomes an error record, never an exception.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import BinaryIO, cast

from crawler import errors
from crawler.config import ScheduleSettings
from crawler.errors import ErrorKind, http_status_message
from crawler.fetch.gate import RobotsCache
from crawler.fetch.response import FetchOutcome
from crawler.fetch.robots import RobotsPolicy
from crawler.fetch.robots_tag import header_directives
from crawler.parse.extract import Extractor, needs_tree
from crawler.parse.links import LinkPolicy, follow_links
from crawler.parse.processes import ParseFailed, ParserProcesses
from crawler.parse.sitemap_fields import priority_rank
from crawler.parse.sitemaps import (
    SitemapError,
    SitemapRef,
    SitemapUrl,
    parse_sitemap,
)
from crawler.parse.soup import parse_html
from crawler.records import (
    HTML_TYPES,
    ErrorRecord,
    FetchResult,
    FetchTask,
    NewLink,
    PageResult,
    ParsedPage,
    Plan,
    RobotsRecord,
    SitemapChunk,
    SitemapEntry,
    URLState,
)
from crawler.schedule import Visit, history_of, plan
from crawler.urls import canonicalize, host_key

log = logging.getLogger(__name__)

ROBOTS_MAX_FAILURES = 3
"""After robots.txt was unreachable this many times in a row, a host's URLs fail for good."""
SITEMAP_CHUNK = 500
SITEMAP_SPOOL_BYTES = 8 * 1024 * 1024
"""A sitemap is downloaded to a temporary file; up to this much of it stays in memory."""


def _final_error(errs: list[ErrorRecord], r: FetchResult) -> bool:
    """Whether the fetch failed for good; a 4xx/5xx the fetcher did not already report as a
    final error gets its ``http_status`` row here (appended to ``errs``)."""
    if any(e.final for e in errs):
        return True
    if r.status_code < 400:
        return False
    status_error = ErrorRecord(
        ErrorKind.HTTP_STATUS,
        http_status_message(r.status_code),
        len(errs) + 1,
        True,
        r.fetched_at,
        r.status_code,
    )
    errs.append(status_error)
    return True


def blocked_result(task: FetchTask, now: dt.datetime) -> PageResult:
    """A URL robots.txt disallows: never requested, recorded with a ``robots`` error."""
    err = ErrorRecord(ErrorKind.ROBOTS, "disallowed by robots.txt", 1, True, now)
    return PageResult(task, URLState.BLOCKED, errors=(err,))


@dataclass(frozen=True, slots=True)
class SitemapReader:
    """How the worker reads a sitemap: its own fetcher (any content type, into a file), and
    where the entries go as they are parsed (the writer's queue: a sitemap may list millions)."""

    fetch: Callable[..., FetchOutcome]
    sink: Callable[[SitemapChunk], None]
    max_entries: int = 1_000_000


class PageWorker:
    """Callable run by the pool: ``FetchTask -> PageResult``."""

    def __init__(
        self,
        fetch: Callable[..., FetchOutcome],
        links: LinkPolicy,
        *,
        schedule: ScheduleSettings,
        now: Callable[[], dt.datetime],
        robots: RobotsCache | None = None,
        use_sitemaps: bool = False,
        sitemaps: SitemapReader | None = None,
        keep_text: bool = False,
        extractor: Extractor | None = None,
        robots_takes_a_slot: bool = False,
        parsers: ParserProcesses | None = None,
        robots_token: str | None = None,
    ) -> None:
        self._fetch = fetch
        self._links = links
        self._schedule = schedule
        self._now = now
        self._robots = robots
        self._use_sitemaps = use_sitemaps
        self._sitemaps = sitemaps
        self._keep_text = keep_text
        self._robots_takes_a_slot = robots_takes_a_slot
        """Shared database: a host's reserved slot covers one request, so a task that had to
        fetch robots.txt goes back to the frontier and its page waits for the next slot."""
        self._extractor = extractor
        self._robots_token = robots_token
        """Our product token, for ``X-Robots-Tag: ourbot: ...`` (None: only agent-free ones)."""
        self._parsers = parsers
        """Parser processes (``[crawl] parse_processes``), used when no extraction rule needs a
        BeautifulSoup document here."""

    def __call__(self, task: FetchTask) -> PageResult:
        try:
            return self._process(task)
        except Exception as exc:  # a bug must cost one URL, never the crawl
            log.exception("unexpected error processing %s", task.url)
            err = ErrorRecord(ErrorKind.OTHER, errors.describe(exc), 1, True, self._now())
            return PageResult(task, URLState.FAILED, errors=(err,))

    def _process(self, task: FetchTask) -> PageResult:
        robots: RobotsRecord | None = None
        if self._robots is not None:
            verdict = self._check_robots(task, self._robots)
            if isinstance(verdict, PageResult):  # not fetched: blocked, refused or put back
                return replace(verdict, plan=self._plan(task, verdict))
            robots = verdict
            if robots is not None and self._robots_takes_a_slot:
                return PageResult(task, URLState.QUEUED, robots=robots)
        if task.kind == "sitemap" and self._sitemaps is not None:
            result = self._read_sitemap(task, self._sitemaps)
        else:
            result = self._page(task)
        return replace(result, robots=robots, plan=self._plan(task, result))

    def _plan(self, task: FetchTask, result: PageResult) -> Plan | None:
        """When the URL is due again, from what this fetch found (``crawler.schedule``)."""
        if result.state not in (URLState.DONE, URLState.FAILED):
            return None
        f = result.fetch
        visit = Visit(
            ok=result.state is URLState.DONE,
            status=f.status_code if f is not None else None,
            changed=result.changed,
        )
        return plan(self._schedule, history_of(task), visit, self._now())

    # -- robots.txt ------------------------------------------------------------------------

    def _check_robots(
        self, task: FetchTask, cache: RobotsCache
    ) -> RobotsRecord | PageResult | None:
        """The task's fate under robots.txt: a result if it must not be fetched now, else the
        robots.txt this call fetched (for the writer to cache), or None."""
        policy, fresh, failures = cache.get(task.host)
        now = self._now()
        if policy.refused:
            err = ErrorRecord(ErrorKind.OTHER, policy.refused, 1, True, now)
            return PageResult(task, URLState.FAILED, errors=(err,))
        record = self._robots_record(task, policy, now) if fresh else None
        if policy.unreachable:
            final = failures >= ROBOTS_MAX_FAILURES
            what = "giving up on this URL" if final else f"trying again in {cache.retry_s:g}s"
            kind, cause = policy.failure or (ErrorKind.ROBOTS, "")
            cause = f": {cause}" if cause else ""
            message = f"robots.txt of {task.host} unreachable ({failures} in a row){cause}; {what}"
            err = ErrorRecord(kind, message, 1, final, now)
            if final:
                return PageResult(task, URLState.FAILED, errors=(err,), robots=record)
            return PageResult(
                task, URLState.QUEUED, errors=(err,), robots=record, retry_after_s=cache.retry_s
            )
        if not policy.can_fetch(task.url):
            return replace(blocked_result(task, now), robots=record)
        return record

    def _robots_record(
        self, task: FetchTask, policy: RobotsPolicy, now: dt.datetime
    ) -> RobotsRecord:
        sitemaps: tuple[str, ...] = ()
        if self._use_sitemaps and not policy.unreachable:
            found = []
            for url in policy.sitemaps:
                try:
                    canonical = self._canonical(url)
                except ValueError:
                    continue
                if self._links.scope.allows(canonical) or host_key(canonical) == task.host:
                    found.append(canonical)
            sitemaps = tuple(found)
        body = None if policy.unreachable else policy.body
        return RobotsRecord(task.host_id, body, now, policy.crawl_delay, sitemaps)

    # -- pages -----------------------------------------------------------------------------

    def _page(self, task: FetchTask) -> PageResult:
        outcome = self._fetch(
            task.url,
            etag=task.etag,
            last_modified=task.last_modified,
            follow_redirect=partial(self._follow_inline, task.host),
        )
        errs = list(outcome.errors)
        r = outcome.result
        now = self._now()
        if r is None:
            return PageResult(task, URLState.FAILED, errors=tuple(errs))
        final_error = _final_error(errs, r)
        state = URLState.FAILED if final_error else URLState.DONE

        parsed: ParsedPage | None = None
        new_links = self._redirect_link(task, r)
        # The fetcher downloads a body only for 2xx HTML (or an untyped body, which browsers
        # sniff and which is nearly always HTML).
        if not final_error and r.body is not None and r.content_type in (None, *HTML_TYPES):
            try:
                parsed, new_links = self._header_robots(r, *self._parse(task, r, r.body))
            except Exception as exc:
                message = str(exc) if isinstance(exc, ParseFailed) else errors.describe(exc)
                errs.append(ErrorRecord(ErrorKind.PARSE, message, len(errs) + 1, True, now))
            else:
                errs.extend(
                    ErrorRecord(ErrorKind.PARSE, problem, len(errs) + 1 + i, True, now)
                    for i, problem in enumerate(parsed.extract_errors)
                )

        changed: bool | None
        if r.not_modified:
            changed = False
        elif parsed is not None:
            changed = parsed.content_hash != task.content_hash
        else:
            changed = None
        return PageResult(
            task,
            state,
            fetch=r,
            parsed=parsed,
            errors=tuple(errs),
            links=new_links,
            changed=changed,
            noindex=parsed is None and self._file_noindex(r),
            retry_after_s=r.retry_after_s if r.status_code in (429, 503) else None,
            final_url=self._redirect_target(task, r),
        )

    def _parse(
        self, task: FetchTask, r: FetchResult, body: bytes
    ) -> tuple[ParsedPage, tuple[NewLink, ...]]:
        """The page and its links: in a parser process when one is ready and no extraction
        rule needs this process's BeautifulSoup document, else on this thread."""
        extractor = self._extractor if needs_tree(self._extractor) else None
        if self._parsers is not None and extractor is None:
            done = self._parsers.parse(body, r.final_url, r.charset, task.depth)
            if done is not None:
                return done
        parsed = parse_html(
            body,
            r.final_url,
            charset=r.charset,
            sort_query=self._links.sort_query,
            strip_tracking=self._links.strip_tracking,
            keep_text=self._keep_text,
            extract=None if extractor is None else lambda soup: extractor.apply(task.url, soup, r),
        )
        return parsed, follow_links(self._links, task.depth, parsed)

    def _header_robots(
        self, r: FetchResult, parsed: ParsedPage, links: tuple[NewLink, ...]
    ) -> tuple[ParsedPage, tuple[NewLink, ...]]:
        """The page's ``X-Robots-Tag`` directives added to its meta robots, after parsing (so
        parser processes need not see headers): the same effect as the meta tag."""
        found = header_directives(r.headers, self._robots_token)
        if not found:
            return parsed, links
        noindex, nofollow = "noindex" in found, "nofollow" in found
        parsed = replace(
            parsed, noindex=parsed.noindex or noindex, nofollow=parsed.nofollow or nofollow
        )
        if nofollow:  # recorded, not followed: what follow_links does for a meta nofollow
            links = tuple(link._replace(follow=False) for link in links)
        return parsed, links

    def _file_noindex(self, r: FetchResult) -> bool:
        """``X-Robots-Tag: noindex`` on a response nothing parsed (a PDF, an image): the header
        is the only way such a file can say it (nofollow means nothing: it has no links)."""
        return "noindex" in header_directives(r.headers, self._robots_token)

    def _canonical(self, url: str) -> str:
        """The crawl's canonical form (with its query options); ValueError if not http(s)."""
        links = self._links
        return canonicalize(url, sort_query=links.sort_query, strip_tracking=links.strip_tracking)

    def _follow_inline(self, host: str, target: str) -> bool:
        """Whether the fetcher may request a redirect hop at once, in the same fetch: only when
        it stays on the task's host (whose robots.txt is known), robots.txt allows it and it is
        in scope (``include``/``exclude``). Any other hop is not requested; it becomes a link
        (:meth:`_redirect_link`) and goes through the frontier like any link: scope, dedup, its
        host's robots.txt, gate and private-network guard."""
        try:
            url = self._canonical(target)
            same_host = host_key(url) == host
        except ValueError:
            return False
        if not same_host or not self._links.scope.allows(url):
            return False
        return self._robots is None or not self._robots.disallows(url, host)

    def _redirect_link(self, task: FetchTask, r: FetchResult) -> tuple[NewLink, ...]:
        """The redirect the fetcher did not follow, as a link from this URL: ``queued`` when in
        scope (and not deeper than ``max_depth``), else ``excluded``; none if not a URL."""
        if r.location is None:
            return ()
        try:
            url = self._canonical(r.location)
            host = host_key(url)
        except ValueError:
            return ()
        policy = self._links
        depth_ok = policy.max_depth <= 0 or task.depth + 1 <= policy.max_depth
        follow = depth_ok and policy.scope.allows(url)
        return (NewLink(url, host, False, follow),)

    def _redirect_target(self, task: FetchTask, r: FetchResult) -> str | None:
        """The canonical URL a redirect ended on, when it is another in-scope URL: the writer
        marks it known, so the page is not fetched a second time under its own name."""
        if not r.redirects or r.status_code >= 300:
            return None
        try:
            target = self._canonical(r.final_url)
        except ValueError:
            return None
        if target == task.url or not self._links.scope.allows(target):
            return None
        return target

    # -- sitemaps --------------------------------------------------------------------------

    def _read_sitemap(self, task: FetchTask, reader: SitemapReader) -> PageResult:
        """Download a sitemap to a temporary file, then stream its entries to the writer."""
        with tempfile.SpooledTemporaryFile(max_size=SITEMAP_SPOOL_BYTES) as spool:
            follow = partial(self._follow_sitemap_hop, task.host)
            outcome = reader.fetch(task.url, sink=spool, follow_redirect=follow)
            errs = list(outcome.errors)
            r = outcome.result
            final_error = r is None or _final_error(errs, r)
            if r is None or final_error:
                return PageResult(task, URLState.FAILED, fetch=r, errors=tuple(errs))
            if r.location is not None:  # a hop not requested: the 3xx's body is no sitemap
                links = self._sitemap_redirect(task, reader, r.location)
                return PageResult(task, URLState.DONE, fetch=r, errors=tuple(errs), links=links)
            spool.seek(0)
            stream = cast(BinaryIO, spool)
            entries = parse_sitemap(
                stream,
                base_url=r.final_url,
                max_entries=reader.max_entries,
                sort_query=self._links.sort_query,
                strip_tracking=self._links.strip_tracking,
            )
            try:
                while chunk := list(itertools.islice(entries, SITEMAP_CHUNK)):
                    reader.sink(SitemapChunk(task, self._sitemap_entries(task, chunk)))
            except SitemapError as exc:
                message = f"sitemap: {exc}"
                errs.append(ErrorRecord(ErrorKind.PARSE, message, len(errs) + 1, True, self._now()))
        return PageResult(task, URLState.DONE, fetch=r, errors=tuple(errs))

    def _follow_sitemap_hop(self, host: str, target: str) -> bool:
        """Whether a sitemap's redirect hop is requested in the same fetch: only when it stays
        on the sitemap's host (whose robots.txt is known) and robots.txt allows it. Scope is not
        asked: a host's own sitemaps are read whatever ``include``/``exclude`` say, as its
        robots.txt ``Sitemap:`` lines are. Any other hop becomes a sitemap URL of its own
        (:meth:`_sitemap_redirect`)."""
        try:
            url = self._canonical(target)
            same_host = host_key(url) == host
        except ValueError:
            return False
        return same_host and (self._robots is None or not self._robots.disallows(url, host))

    def _sitemap_redirect(
        self, task: FetchTask, reader: SitemapReader, location: str
    ) -> tuple[NewLink, ...]:
        """A sitemap's hop the fetcher did not request: on the same host (robots.txt disallows
        it) or, in scope, on another host, it is queued as a sitemap of its own, discovered
        from this one, so its host's robots.txt, gate and private-network guard decide when it
        is claimed (``blocked``/``robots`` for a disallowed one). Out of scope, it is an
        ``excluded`` URL linked from the sitemap, as the redirect of a page would be."""
        try:
            url = self._canonical(location)
            host = host_key(url)
        except ValueError:
            return ()
        if host == task.host or self._links.scope.allows(url):
            reader.sink(SitemapChunk(task, (SitemapEntry(url, host, "sitemap"),)))
            return ()
        return (NewLink(url, host, False, False),)

    def _sitemap_entries(
        self, task: FetchTask, chunk: Sequence[SitemapUrl | SitemapRef]
    ) -> tuple[SitemapEntry, ...]:
        policy = self._links
        depth_ok = policy.max_depth <= 0 or task.depth + 1 <= policy.max_depth
        out = []
        for item in chunk:
            url = item.url
            if not policy.scope.allows(url):
                continue  # sitemaps list what a site wants crawled: out of scope is not ours
            if isinstance(item, SitemapRef):
                out.append(SitemapEntry(url, host_key(url), "sitemap", lastmod=item.lastmod))
            elif depth_ok:
                out.append(
                    SitemapEntry(
                        url,
                        host_key(url),
                        "page",
                        priority=priority_rank(item.priority),
                        lastmod=item.lastmod,
                        changefreq=item.changefreq,
                    )
                )
        return tuple(out)
