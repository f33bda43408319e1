"""``crawler crawl``: crawl a seed file's URLs and the in-scope pages they link to."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.commands.options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    HelpFormatter,
    Signals,
    common_flags,
    config_for,
    crawl_flags,
    progress_options,
)

if TYPE_CHECKING:
    from crawler.config import Config
    from crawler.seeds import SeedProblem

log = logging.getLogger("crawler")

NAME = "crawl"

EXAMPLES = """\
examples:
  python -m crawler seed.txt                      crawl into ./crawl.db (shorthand for 'crawl')
  python -m crawler crawl seed.txt --db out.db --workers 8 --max-pages 1000
  python -m crawler crawl seed.txt --config my-settings.toml -v
  sqlite3 crawl.db 'select status_code, count(*) from pages group by 1'
"""


def register(sub: Any) -> argparse.ArgumentParser:
    crawl: argparse.ArgumentParser = sub.add_parser(
        NAME,
        help="crawl seed URLs and the in-scope pages they link to",
        description="Crawl every seed URL and every in-scope page it links to, into a database.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    crawl.add_argument(
        "seed_file", type=Path, nargs="?", help="one URL per line; # comments, blanks ok"
    )
    crawl.add_argument(
        "--seed-only",
        action="store_true",
        help="add the seeds to the database and exit, for workers to crawl (see worker)",
    )
    crawl.add_argument(
        "--resume",
        action="store_true",
        help="continue the latest crawl in the database, with its settings (no seed file needed)",
    )
    crawl_flags(crawl)
    common_flags(crawl)

    return crawl


def run(args: argparse.Namespace) -> int:
    config = _crawlconfig_for(args)
    from crawler.records import CrawlStatus
    from crawler.run.runner import run_crawl
    from crawler.run.summary import format_summary

    signals = Signals()
    signals.install()
    progress = progress_options(args, config)
    problems = _SeedProblems()
    outcome = run_crawl(
        config,
        args.seed_file,
        stop=signals.stop,
        abort=signals.abort,
        on_seed_problem=problems.add,
        on_seeds_read=problems.finish,
        progress=progress,
        seed_only=args.seed_only,
    )
    if args.seed_only:
        print(f"{outcome.seeds} seeds added; {outcome.queued_left} URLs queued for workers")
        return EXIT_OK
    print(format_summary(outcome, db=config.store.db, resume=_resume_command(args)))
    if outcome.abandoned:
        # Threads still stuck in fetches given up on would hold the process open until their
        # sockets time out; everything complete is stored, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(EXIT_INTERRUPTED if outcome.status is CrawlStatus.INTERRUPTED else EXIT_OK)
    if outcome.status is CrawlStatus.INTERRUPTED:
        return EXIT_INTERRUPTED
    if outcome.status is CrawlStatus.FAILED:
        return EXIT_FAILED
    stats = outcome.stats
    if stats.pages + stats.failed > 0 and stats.ok_pages == 0:
        return EXIT_FAILED  # there was work, and none of it succeeded
    return EXIT_OK


class _SeedProblems:
    """Bad seed lines on stderr: the first :attr:`SHOWN` one per line (``FILE:LINE: why:
    'text'``), then, once the file is read, how many more there were. A file of junk that passes
    the text check (no NUL byte) would otherwise print a line for each of its lines."""

    SHOWN = 5

    def __init__(self) -> None:
        self.count = 0
        self.source = ""

    def add(self, problem: SeedProblem) -> None:
        self.count += 1
        self.source = problem.source
        if self.count <= self.SHOWN:
            print(problem, file=sys.stderr)

    def finish(self) -> None:
        if self.count > self.SHOWN:
            more = self.count - self.SHOWN
            print(f"{self.source}: ... and {more} more bad lines", file=sys.stderr)


def _resume_command(args: argparse.Namespace) -> str:
    """The exact command that continues this crawl (a database password shown as ***)."""
    from crawler.store.db import masked

    parts = ["python -m crawler crawl --resume"]
    if args.db:
        parts.append(f"--db {shlex.quote(masked(args.db))}")
    if args.config:
        parts.append(f"--config {shlex.quote(str(args.config))}")
    return " ".join(parts)


def _crawlconfig_for(args: argparse.Namespace) -> Config:
    """Settings for ``crawl``; with ``--resume``, on top of the resumed crawl's own."""
    from crawler.errors import UsageError
    from crawler.run.runner import stored_settings
    from crawler.store.db import masked

    config = config_for(args)
    if args.seed_file is None and not args.resume:
        raise UsageError("crawl needs a seed file, or --resume to continue the latest crawl")
    if not args.resume:
        return config
    latest = stored_settings(config.store.db)
    if latest is None:
        raise UsageError(f"nothing to resume: no crawl in database '{masked(config.store.db)}'")
    crawl_id, stored = latest
    log.info("resuming crawl %d with its settings", crawl_id)
    return config_for(args, stored)
