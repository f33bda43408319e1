"""One URL's whole job, run on a worker thread: fetch, parse, resolve and scope its links.

Everything per page that a worker can do happens here, off the dispatcher thread (which only
moves results along), so the dispatcher never becomes the bottleneck. The result is a frozen
:class:`~crawler.records.PageResult` the writer stores as it is. A per-URL failure of any kind —
including a bug in parsing — becomes an error record, never an exception.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from crawler import errors
from crawler.errors import ErrorKind, http_status_message
from crawler.fetcher import FetchOutcome
from crawler.parser import HTML_TYPES, parse_html
from crawler.records import ErrorRecord, FetchTask, NewLink, PageResult, ParsedPage, URLState
from crawler.urls import Scope, host_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """What the worker needs to decide which links to follow."""

    scope: Scope
    max_depth: int = 0
    sort_query: bool = False
    strip_tracking: bool = False
    follow_nofollow: bool = False


class PageWorker:
    """Callable run by the pool: ``FetchTask -> PageResult``."""

    def __init__(
        self,
        fetch: Callable[..., FetchOutcome],
        links: LinkPolicy,
        *,
        interval_s: float,
        now: Callable[[], dt.datetime],
    ) -> None:
        self._fetch = fetch
        self._links = links
        self._interval_s = interval_s
        self._now = now

    def __call__(self, task: FetchTask) -> PageResult:
        try:
            return self._process(task)
        except Exception as exc:  # a bug must cost one URL, never the crawl
            log.exception("unexpected error processing %s", task.url)
            err = ErrorRecord(ErrorKind.OTHER, errors.describe(exc), 1, True, self._now())
            return PageResult(task, URLState.FAILED, errors=(err,))

    def _process(self, task: FetchTask) -> PageResult:
        outcome = self._fetch(task.url, etag=task.etag, last_modified=task.last_modified)
        errs = list(outcome.errors)
        r = outcome.result
        now = self._now()
        next_at = now + dt.timedelta(seconds=self._interval_s)
        if r is None:
            return PageResult(
                task,
                URLState.FAILED,
                errors=tuple(errs),
                next_fetch_at=next_at,
                fetch_interval_s=self._interval_s,
            )
        final_error = any(e.final for e in errs)
        if r.status_code >= 400 and not final_error:
            errs.append(
                ErrorRecord(
                    ErrorKind.HTTP_STATUS,
                    http_status_message(r.status_code),
                    len(errs) + 1,
                    True,
                    r.fetched_at,
                    r.status_code,
                )
            )
            final_error = True
        state = URLState.FAILED if final_error else URLState.DONE

        parsed: ParsedPage | None = None
        new_links: tuple[NewLink, ...] = ()
        # The fetcher downloads a body only for 2xx HTML (or an untyped body, which browsers
        # sniff and which is nearly always HTML).
        if not final_error and r.body is not None and r.content_type in (None, *HTML_TYPES):
            try:
                parsed = parse_html(
                    r.body,
                    r.final_url,
                    charset=r.charset,
                    sort_query=self._links.sort_query,
                    strip_tracking=self._links.strip_tracking,
                )
            except Exception as exc:
                errs.append(
                    ErrorRecord(ErrorKind.PARSE, errors.describe(exc), len(errs) + 1, True, now)
                )
            else:
                new_links = self._follow(task, parsed)

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
            next_fetch_at=next_at,
            fetch_interval_s=self._interval_s,
        )

    def _follow(self, task: FetchTask, page: ParsedPage) -> tuple[NewLink, ...]:
        policy = self._links
        depth_ok = policy.max_depth <= 0 or task.depth + 1 <= policy.max_depth
        may_follow = depth_ok and not page.nofollow
        out = []
        for link in page.links:
            try:
                host = host_key(link.url)
            except ValueError:
                continue
            follow = (
                may_follow
                and (policy.follow_nofollow or not link.nofollow)
                and policy.scope.allows(link.url)
            )
            out.append(NewLink(link.url, host, link.nofollow, follow))
        return tuple(out)
