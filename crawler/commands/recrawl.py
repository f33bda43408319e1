"""``crawler recrawl``: fetch again the pages that are due, with conditional requests."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from crawler.commands.options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    HelpFormatter,
    Signals,
    common_flags,
    crawl_flags,
    duration,
    latest_crawl_config,
    progress_options,
    timestamp,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("crawler")

NAME = "recrawl"

EXAMPLES = """\
examples:
  python -m crawler recrawl                         fetch what is due now, then exit
  python -m crawler recrawl --due-before 2030-01-01T00:00:00 --limit 500
  python -m crawler recrawl --every 6h              keep running: a pass every six hours
  python -m crawler recrawl --watch                 keep running: wake when the next URL is due
"""


def register(sub: Any) -> argparse.ArgumentParser:
    recrawl: argparse.ArgumentParser = sub.add_parser(
        NAME,
        help="fetch again the pages that are due, with conditional requests",
        description=(
            "Fetch the URLs whose next fetch is due (ETag/Last-Modified sent, so unchanged "
            "pages cost a 304), record what changed, and schedule each URL again. Uses the "
            "settings of the database's latest crawl; --config and flags go over them."
        ),
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    recrawl.add_argument("--limit", type=int, default=0, metavar="N", help="at most N due URLs")
    recrawl.add_argument(
        "--due-before",
        type=timestamp,
        metavar="TIME",
        help="ISO 8601, UTC unless it has an offset, e.g. 2030-01-01T00:00:00 [now]",
    )
    every = recrawl.add_mutually_exclusive_group()
    every.add_argument(
        "--every", type=duration, metavar="DURATION", help="keep running: a pass every 6h, 30m"
    )
    every.add_argument(
        "--watch", action="store_true", help="keep running: wake when the next URL is due"
    )
    crawl_flags(recrawl, depth=False)
    common_flags(recrawl)

    return recrawl


def run(args: argparse.Namespace) -> int:
    from crawler.records import CrawlStatus
    from crawler.run.runner import Recrawl, recrawl_passes
    from crawler.run.summary import format_summary

    config = latest_crawl_config(args, "recrawl")
    signals = Signals()
    signals.install()
    progress = progress_options(args, config)
    code = EXIT_OK
    for outcome in recrawl_passes(
        config,
        once=Recrawl(args.due_before or dt.datetime.now(dt.UTC), args.limit)
        if not (args.every or args.watch)
        else None,
        every_s=args.every,
        limit=args.limit,
        stop=signals.stop,
        abort=signals.abort,
        progress=progress,
    ):
        print(format_summary(outcome, db=config.store.db), flush=True)
        if outcome.status is CrawlStatus.FAILED:
            return EXIT_FAILED
        if outcome.status is CrawlStatus.INTERRUPTED:
            code = EXIT_INTERRUPTED
    if signals.stop.is_set():
        code = EXIT_INTERRUPTED
    return code
