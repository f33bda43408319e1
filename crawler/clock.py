"""The wall clock every stage stamps its records with: timezone-aware UTC (DESIGN §4)."""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    """Now, as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)
