"""The values of a sitemap entry, read leniently: ``<lastmod>`` (W3C datetime), RSS dates
(RFC 822), ``<priority>`` and ``<changefreq>``. Pure functions of text; never raise.
"""

from __future__ import annotations

import email.utils
import functools
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from crawler.schedule import CHANGEFREQS

# W3C datetime (www.w3.org/TR/NOTE-datetime): YYYY, YYYY-MM, YYYY-MM-DD, then optionally
# Thh:mm[:ss[.s+]] and a zone (Z or ±hh:mm). Leniently also: a space or lowercase t/z, ±hhmm
# and ±hh, a comma before fractions, and no zone at all (read as UTC).
_W3C_DATETIME: Final = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?)?)?)?"
)


def priority_rank(priority: float | None) -> int:
    """A ``<priority>`` as an integer ``urls.priority`` (the frontier serves higher first).

    ``round_half_up(priority * 10) - 5``: 0.0 → -5, 0.1 → -4, ..., 0.5 → 0, ..., 1.0 → +5, so
    the protocol's default (0.5) and a missing priority (None) rank with every URL found by a
    link (0), a page its site calls important goes ahead of them, and an unimportant one after.
    Values outside 0.0..1.0 are clamped; NaN counts as None.
    """
    if priority is None or math.isnan(priority):
        return 0
    clamped = min(max(priority, 0.0), 1.0)
    return math.floor(clamped * 10 + 0.5) - 5


@functools.lru_cache(maxsize=4096)  # real sitemaps repeat a few dates many times
def parse_lastmod(text: str) -> datetime | None:
    """A W3C datetime as an aware UTC datetime, or None if it is not one; never raises.

    Missing parts are the earliest they can be (``2024`` is 2024-01-01T00:00Z); fractions of a
    second beyond microseconds are cut; a time without a zone is read as UTC (the protocol
    requires a zone; we are lenient).
    """
    match = _W3C_DATETIME.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        offset = timedelta()
        if sign is not None:
            offset_minutes = int(off_m or "0")
            if offset_minutes > 59:
                return None
            offset = timedelta(hours=int(off_h), minutes=offset_minutes)
            if sign == "-":
                offset = -offset
        parsed = datetime(
            int(year),
            int(month or "1"),
            int(day or "1"),
            int(hour or "0"),
            int(minute or "0"),
            int(second or "0"),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=UTC if zulu or sign is None else timezone(offset),
        )
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # month 13, hour 24, offset ±24h, year 1 minus an hour
        return None


def parse_rfc822(text: str) -> datetime | None:
    """An RSS ``pubDate`` (RFC 822) as an aware UTC datetime; None if it is not one."""
    try:
        parsed = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000": the zone is unknown
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def read_changefreq(text: str | None) -> str | None:
    if text is None:
        return None
    value = text.strip().lower()
    return value if value in CHANGEFREQS else None


def read_priority(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None  # NaN fails both comparisons
