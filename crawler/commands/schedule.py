"""``crawler schedule``: how many URLs are due now, within an hour, a day, a week."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from crawler.commands.options import (
    EXIT_OK,
    HelpFormatter,
    common_flags,
    config_for,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("crawler")

NAME = "schedule"


def register(sub: Any) -> argparse.ArgumentParser:
    schedule: argparse.ArgumentParser = sub.add_parser(
        NAME,
        help="how many URLs are due now, within an hour, a day, a week",
        description="Show how many URLs are due for a recrawl now, within an hour, day, week.",
        epilog="example:\n  python -m crawler schedule --db crawl.db",
        formatter_class=HelpFormatter,
    )
    common_flags(schedule)

    return schedule


def run(args: argparse.Namespace) -> int:
    config = config_for(args)
    from crawler.errors import UsageError
    from crawler.run.runner import due_counts
    from crawler.store.db import masked

    counts = due_counts(config.store.db)
    if counts is None:
        raise UsageError(f"no crawl database at '{masked(config.store.db)}'")
    print(f"due now:            {counts['now']}")
    print(f"due within an hour: {counts['hour']}")
    print(f"due within a day:   {counts['day']}")
    print(f"due within a week:  {counts['week']}")
    print(f"scheduled in all:   {counts['scheduled']}")
    print(f"queued now:         {counts['queued']}")
    print(f"gone:               {counts['gone']}")
    return EXIT_OK
