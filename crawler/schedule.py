"""When each URL is due again: fixed or adaptive intervals, back-off, and when a URL is gone.

Pure: values in, values out. The worker calls :func:`plan` after every fetch; the writer stores
the :class:`Plan` in ``urls`` (``next_fetch_at``, ``fetch_interval``, ``failures``,
``not_found``, and ``state = 'gone'``).

The rules
---------
*Success* (a 2xx, or a 304 Not Modified): the failure counts reset, and

- ``policy = "fixed"``: the interval is ``default_interval`` (or the page's sitemap
  ``<changefreq>``, when it has one);
- ``policy = "adaptive"``, after Apache Nutch's ``AdaptiveFetchSchedule``: a page that changed
  is due sooner, ``interval × (1 − DEC_RATE)``; a page that did not change (a 304, or the same
  ``content_hash``) later, ``interval × (1 + INC_RATE)``; clamped to ``[min_interval,
  max_interval]``. The rates are Nutch's shipped defaults (``nutch-default.xml``:
  ``db.fetch.schedule.adaptive.inc_rate = 0.4``, ``dec_rate = 0.2``); a page whose change is
  unknown (not HTML, so no hash; or its first fetch, with nothing to compare with, which Nutch
  too counts as ``STATUS_UNKNOWN``) keeps its interval. Nutch's optional ``sync_delta`` (pulling
  the next fetch towards a ``Last-Modified`` date) is not used: servers' dates are too often
  wrong.

*404 or 410*: the interval is kept, and the next fetch is pushed out,
``interval × 2^(n−1)`` after the n-th such answer in a row (at most ``max_interval``); after
``gone_after`` in a row the URL is ``gone`` and no longer scheduled.

*Any other failure* (5xx, timeout, refused, ...): never changes the interval (a server's bad day
says nothing about how often the page changes); the next try backs off exponentially,
``min_interval × 2^(n−1)`` after the n-th failure in a row, at most ``max_interval``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from crawler.config import ScheduleSettings
from crawler.records import FetchTask, Plan

#: The values ``<changefreq>`` may take (sitemaps.org), each lowercased.
CHANGEFREQS: Final = frozenset(
    {"always", "hourly", "daily", "weekly", "monthly", "yearly", "never"}
)
#: The interval :func:`changefreq_seconds` gives ``always``: a page that claims to change at every
#: request is not fetched more often than an ``hourly`` one.
ALWAYS_FLOOR_S: Final = 3600.0
_CHANGEFREQ_SECONDS: Final[dict[str, float | None]] = {
    "always": ALWAYS_FLOOR_S,
    "hourly": 3600.0,
    "daily": 86_400.0,
    "weekly": 604_800.0,
    "monthly": 2_592_000.0,  # 30 days
    "yearly": 31_536_000.0,  # 365 days
    "never": None,
}


def changefreq_seconds(changefreq: str) -> float | None:
    """The recrawl interval a ``<changefreq>`` hints at, in seconds; None for none.

    ``hourly`` 3,600; ``daily`` 86,400; ``weekly`` 604,800; ``monthly`` 30 days; ``yearly``
    365 days; ``always`` :data:`ALWAYS_FLOOR_S` (one hour: a hint is no reason to refetch a page
    continuously); ``never`` (an archived page) and anything unknown: None, so the caller keeps
    its own schedule. Case and outer whitespace are ignored.
    """
    return _CHANGEFREQ_SECONDS.get(changefreq.strip().lower())


INC_RATE = 0.4
"""Nutch ``db.fetch.schedule.adaptive.inc_rate``: growth of the interval of an unchanged page."""
DEC_RATE = 0.2
"""Nutch ``db.fetch.schedule.adaptive.dec_rate``: shrinkage of the interval of a changed page."""
GONE_STATUSES = frozenset({404, 410})


@dataclass(frozen=True, slots=True)
class Visit:
    """What one fetch of a URL told about its schedule."""

    ok: bool
    """The fetch succeeded (2xx or 304): the URL ends ``done``."""
    status: int | None = None
    changed: bool | None = None
    """The content changed since the last fetch; None when unknown."""


@dataclass(frozen=True, slots=True)
class History:
    """What the ``urls`` row knew before this fetch."""

    interval: float | None = None
    failures: int = 0
    not_found: int = 0
    hint_interval: float | None = None
    """From the page's sitemap ``<changefreq>``: its interval before any of our own."""
    first: bool = False
    """No content was stored before (no ``content_hash``): a "changed" says nothing."""


def history_of(task: FetchTask) -> History:
    """The schedule history a claimed URL carries."""
    hint = changefreq_seconds(task.changefreq) if task.changefreq else None
    return History(task.interval, task.failures, task.not_found, hint, task.content_hash is None)


def _clamp(value: float, settings: ScheduleSettings) -> float:
    return min(max(value, settings.min_interval), settings.max_interval)


def plan(settings: ScheduleSettings, history: History, visit: Visit, now: dt.datetime) -> Plan:
    """The URL's schedule after ``visit`` (see the module docstring for the rules)."""
    base = history.interval or history.hint_interval or settings.default_interval
    if not visit.ok:
        failures = history.failures + 1
        if visit.status in GONE_STATUSES:
            not_found = history.not_found + 1
            if not_found >= settings.gone_after:
                return Plan(None, base, failures, not_found, gone=True)
            wait = min(settings.max_interval, base * 2 ** (not_found - 1))
        else:
            not_found = 0
            wait = min(settings.max_interval, settings.min_interval * 2 ** (failures - 1))
        return Plan(now + dt.timedelta(seconds=wait), base, failures, not_found)

    if settings.policy == "adaptive":
        if visit.changed is True and not history.first:
            interval = _clamp(base * (1 - DEC_RATE), settings)
        elif visit.changed is False:
            interval = _clamp(base * (1 + INC_RATE), settings)
        else:
            interval = _clamp(base, settings)
    else:
        interval = history.hint_interval or settings.default_interval
    return Plan(now + dt.timedelta(seconds=interval), interval, 0, 0)
