"""``crawler worker``: join a crawl in a shared (PostgreSQL) database and work until it is done."""

from __future__ import annotations

import argparse
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
    latest_crawl_config,
    progress_options,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("crawler")

NAME = "worker"

EXAMPLES = """\
examples:
  python -m crawler crawl seed.txt --seed-only --db postgresql+psycopg://crawler@db/crawl
  python -m crawler worker --db postgresql+psycopg://crawler@db/crawl      (on every machine)
  python -m crawler worker --db postgresql+psycopg://crawler@db/crawl --forever
"""


def register(sub: Any) -> argparse.ArgumentParser:
    worker: argparse.ArgumentParser = sub.add_parser(
        NAME,
        help="join a crawl in a shared (PostgreSQL) database and work until it is done",
        description=(
            "Join the crawl already seeded in a shared database and fetch from its frontier "
            "alongside any other workers, on this machine or others, until nothing is queued "
            "and no worker holds a claim. Politeness holds across all of them. Uses the "
            "settings of the database's latest crawl; --config and flags go over them."
        ),
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    worker.add_argument(
        "--forever", action="store_true", help="keep waiting for work (recrawls) instead of exiting"
    )
    crawl_flags(worker, depth=False)
    common_flags(worker)

    return worker


def run(args: argparse.Namespace) -> int:
    from crawler.records import CrawlStatus
    from crawler.run.runner import run_crawl, wait_for_work
    from crawler.run.summary import format_summary

    config = latest_crawl_config(args, "work on")
    signals = Signals()
    signals.install()
    progress = progress_options(args, config)
    while True:
        outcome = run_crawl(config, None, stop=signals.stop, abort=signals.abort, progress=progress)
        print(format_summary(outcome, db=config.store.db), flush=True)
        if outcome.status is CrawlStatus.FAILED:
            return EXIT_FAILED
        if signals.stop.is_set() or outcome.status is CrawlStatus.INTERRUPTED:
            return EXIT_INTERRUPTED
        if not args.forever:
            return EXIT_OK
        if not wait_for_work(config.store.db, signals.stop):
            return EXIT_INTERRUPTED
