"""The command line: parse arguments, build the settings, call the runner, print, exit.

No crawling logic lives here. Exit statuses: 0 done; 1 the work failed (nothing could be
fetched, the database failed); 2 bad input (seed file, settings, flags, a database that is not
ours), always one line on stderr and no traceback; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from crawler import __version__
from crawler.config import Config, load_config
from crawler.errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_SETTINGS = Path("settings.toml")
COMMANDS = ("crawl", "db")

log = logging.getLogger("crawler")

CRAWL_EXAMPLES = """\
examples:
  python -m crawler seed.txt                      crawl into ./crawl.db (shorthand for 'crawl')
  python -m crawler crawl seed.txt --db out.db --workers 8 --max-pages 1000
  python -m crawler crawl seed.txt --config my-settings.toml -v
  sqlite3 crawl.db 'select status_code, count(*) from pages group by 1'
"""

MAIN_EXAMPLES = """\
commands:
  crawl        crawl the URLs of a seed file and what they link to (the default command)
  db upgrade   create or migrate the database schema explicitly

examples:
  python -m crawler seed.txt
  python -m crawler crawl seed.txt --db out.db --max-depth 2
  python -m crawler db upgrade --db out.db

settings: defaults < settings.toml (or --config FILE) < CRAWLER_<SECTION>_<KEY> env < flags
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(EXIT_USAGE)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH_OR_URL", help="SQLite file or SQLAlchemy URL [crawl.db]")
    p.add_argument("--config", metavar="FILE", type=Path, help="settings file [./settings.toml]")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less log output")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="crawler",
        description="A polite, streaming web crawler that stores everything in SQLite.",
        epilog=MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"crawler {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    crawl = sub.add_parser(
        "crawl",
        help="crawl seed URLs and the in-scope pages they link to",
        description="Crawl every seed URL and every in-scope page it links to, into a database.",
        epilog=CRAWL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    crawl.add_argument("seed_file", type=Path, help="one URL per line; # comments, blanks ok")
    crawl.add_argument("--workers", type=int, metavar="N", help="fetcher threads [16]")
    crawl.add_argument("--max-pages", type=int, metavar="N", help="stop after N pages [no limit]")
    crawl.add_argument("--max-depth", type=int, metavar="N", help="links from a seed [no limit]")
    crawl.add_argument("--max-time", type=float, metavar="SECONDS", help="stop after [no limit]")
    crawl.add_argument("--user-agent", metavar="UA", help="User-Agent header [crawler/0.1]")
    crawl.add_argument("--timeout", type=float, metavar="SECONDS", help="total per request [60]")
    _common(crawl)

    db = sub.add_parser("db", help="database maintenance", description="Database maintenance.")
    db_sub = db.add_subparsers(
        dest="db_command", metavar="ACTION", parser_class=_Parser, required=True
    )
    upgrade = db_sub.add_parser(
        "upgrade",
        help="create or migrate the schema to the latest version",
        description="Create or migrate the database schema (a crawl also does this on open).",
        epilog="example:\n  python -m crawler db upgrade --db crawl.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(upgrade)
    return parser


def _normalize_argv(argv: list[str]) -> list[str]:
    """``crawler seed.txt`` is shorthand for ``crawler crawl seed.txt``."""
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        return ["crawl", *argv]
    return argv


def _setup_logging(verbose: int, quiet: int) -> None:
    level = logging.INFO - 10 * verbose + 10 * quiet
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.DEBUG, min(level, logging.CRITICAL)))
    for noisy in ("urllib3", "alembic"):  # their INFO lines are not the user's business
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _config(args: argparse.Namespace) -> Config:
    path: Path | None = args.config
    if path is None and DEFAULT_SETTINGS.is_file():
        path = DEFAULT_SETTINGS
    overrides: dict[str, dict[str, Any]] = {"store": {"db": args.db}}
    if args.command == "crawl":
        overrides["crawl"] = {
            "workers": args.workers,
            "max_pages": args.max_pages,
            "max_depth": args.max_depth,
            "max_time_s": args.max_time,
            "user_agent": args.user_agent,
        }
        overrides["fetch"] = {"total_timeout": args.timeout}
    return load_config(path, overrides=overrides)


class _Signals:
    """First SIGINT/SIGTERM: stop gracefully. Second SIGINT: stop now (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop.set()
        log.warning("stopping: finishing pages in flight (press Ctrl-C again to stop at once)")

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._handle)
            signal.signal(signal.SIGTERM, self._handle)


def _cmd_crawl(args: argparse.Namespace, config: Config) -> int:
    from crawler.records import CrawlStatus
    from crawler.runner import run_crawl
    from crawler.summary import format_summary

    signals = _Signals()
    signals.install()
    outcome = run_crawl(
        config,
        args.seed_file,
        stop=signals.stop,
        on_seed_problem=lambda p: print(p, file=sys.stderr),  # str(p) is "FILE:LINE: why: text"
    )
    print(format_summary(outcome, db=config.store.db))
    if outcome.status is CrawlStatus.INTERRUPTED:
        return EXIT_INTERRUPTED
    if outcome.status is CrawlStatus.FAILED:
        return EXIT_FAILED
    stats = outcome.stats
    if stats.pages + stats.failed > 0 and stats.ok_pages == 0:
        return EXIT_FAILED  # there was work, and none of it succeeded
    return EXIT_OK


def _cmd_db(args: argparse.Namespace, config: Config) -> int:
    from crawler.db import head_revision, open_database

    if args.db_command != "upgrade":
        build_parser().parse_args(["db", "--help"])
        return EXIT_USAGE
    open_database(config.store.db).dispose()
    print(f"database {config.store.db} is at schema revision {head_revision()}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(_normalize_argv(raw))
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.verbose, args.quiet)
    try:
        config = _config(args)
        if args.command == "crawl":
            return _cmd_crawl(args, config)
        return _cmd_db(args, config)
    except UsageError as exc:
        sys.stderr.write(f"crawler: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("crawler: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the work failed: say what, once, without a traceback
        log.debug("fatal error", exc_info=True)
        sys.stderr.write(f"crawler: error: {exc}\n")
        return EXIT_FAILED
