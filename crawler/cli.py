"""The command line: parse arguments, build the settings, call the runner, print, exit.

No crawling logic lives here. Exit statuses: 0 done; 1 the work failed (nothing could be
fetched, the database failed); 2 bad input (seed file, settings, flags, a database that is not
ours), always one line on stderr and no traceback; 130 interrupted.

Start-up is paid on every run, so this module imports only the standard library at load time:
``--version`` and ``--help`` import nothing else, and a command imports what it uses (the
settings, requests, SQLAlchemy, one tool module) once it is parsed. ``tests/test_startup.py``
checks it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from crawler.tools import TOOLS, load

if TYPE_CHECKING:
    from crawler.config import Config
    from crawler.runner import ProgressOptions
    from crawler.seeds import SeedProblem

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_SETTINGS = Path("settings.toml")
BUILTIN = ("crawl", "recrawl", "worker", "schedule", "db")

log = logging.getLogger("crawler")

FLAG_NAMES = {
    ("store", "db"): "--db",
    ("crawl", "workers"): "--workers",
    ("crawl", "max_pages"): "--max-pages",
    ("crawl", "max_depth"): "--max-depth",
    ("crawl", "max_time_s"): "--max-time",
    ("crawl", "user_agent"): "--user-agent",
    ("fetch", "total_timeout"): "--timeout",
}
"""The flag each setting given on the command line comes from, named in its error message."""

CRAWL_EXAMPLES = """\
examples:
  python -m crawler seed.txt                      crawl into ./crawl.db (shorthand for 'crawl')
  python -m crawler crawl seed.txt --db out.db --workers 8 --max-pages 1000
  python -m crawler crawl seed.txt --config my-settings.toml -v
  sqlite3 crawl.db 'select status_code, count(*) from pages group by 1'
"""

WORKER_EXAMPLES = """\
examples:
  python -m crawler crawl seed.txt --seed-only --db postgresql+psycopg://crawler@db/crawl
  python -m crawler worker --db postgresql+psycopg://crawler@db/crawl      (on every machine)
  python -m crawler worker --db postgresql+psycopg://crawler@db/crawl --forever
"""

RECRAWL_EXAMPLES = """\
examples:
  python -m crawler recrawl                         fetch what is due now, then exit
  python -m crawler recrawl --due-before 2030-01-01T00:00:00 --limit 500
  python -m crawler recrawl --every 6h              keep running: a pass every six hours
  python -m crawler recrawl --watch                 keep running: wake when the next URL is due
"""

MAIN_EXAMPLES = """\
commands:
  crawl        crawl the URLs of a seed file and what they link to (the default command)
  recrawl      fetch again what is due, with conditional requests; record what changed
  worker       join a crawl in a shared PostgreSQL database (many machines, one frontier)
  schedule     how many URLs are due now, within an hour, a day, a week
  stats        the crawl at a glance          errors   failures, with the pages linking to them
  search       full-text search of page text  query    read-only SQL (table, csv, jsonl)
  export       a table as JSON lines or CSV   warc     stored responses as a WARC file
  report       one self-contained HTML report with charts
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


class _Version(argparse._VersionAction):
    """``--version``, which reads the installed version only when asked (see ``crawler``)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from crawler import __version__

        self.version = f"crawler {__version__}"
        super().__call__(parser, namespace, values, option_string)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH_OR_URL", help="SQLite file or SQLAlchemy URL [crawl.db]")
    p.add_argument("--config", metavar="FILE", type=Path, help="settings file [./settings.toml]")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument(
        "-q", "--quiet", action="count", default=0, help="less log output, no progress display"
    )
    p.add_argument("--log-file", type=Path, metavar="FILE", help="write the log here, not stderr")
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="json: one object a line"
    )


def build_parser(tools: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line. Only the tools named in ``tools`` (None: all) are imported and
    get their full parser; the others are listed by name and help line alone, which is all
    ``--help`` shows and all that parsing another command needs."""
    parser = _Parser(
        prog="crawler",
        description="A polite, streaming web crawler that stores everything in SQLite.",
        epilog=MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    crawl = sub.add_parser(
        "crawl",
        help="crawl seed URLs and the in-scope pages they link to",
        description="Crawl every seed URL and every in-scope page it links to, into a database.",
        epilog=CRAWL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    _crawl_flags(crawl)
    _common(crawl)

    recrawl = sub.add_parser(
        "recrawl",
        help="fetch again the pages that are due, with conditional requests",
        description=(
            "Fetch the URLs whose next fetch is due (ETag/Last-Modified sent, so unchanged "
            "pages cost a 304), record what changed, and schedule each URL again. Uses the "
            "settings of the database's latest crawl; --config and flags go over them."
        ),
        epilog=RECRAWL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    recrawl.add_argument("--limit", type=int, default=0, metavar="N", help="at most N due URLs")
    recrawl.add_argument(
        "--due-before",
        type=_timestamp,
        metavar="TIME",
        help="ISO 8601, UTC unless it has an offset, e.g. 2030-01-01T00:00:00 [now]",
    )
    every = recrawl.add_mutually_exclusive_group()
    every.add_argument(
        "--every", type=_duration, metavar="DURATION", help="keep running: a pass every 6h, 30m"
    )
    every.add_argument(
        "--watch", action="store_true", help="keep running: wake when the next URL is due"
    )
    _crawl_flags(recrawl, depth=False)
    _common(recrawl)

    worker = sub.add_parser(
        "worker",
        help="join a crawl in a shared (PostgreSQL) database and work until it is done",
        description=(
            "Join the crawl already seeded in a shared database and fetch from its frontier "
            "alongside any other workers, on this machine or others, until nothing is queued "
            "and no worker holds a claim. Politeness holds across all of them. Uses the "
            "settings of the database's latest crawl; --config and flags go over them."
        ),
        epilog=WORKER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument(
        "--forever", action="store_true", help="keep waiting for work (recrawls) instead of exiting"
    )
    _crawl_flags(worker, depth=False)
    _common(worker)

    schedule = sub.add_parser(
        "schedule",
        help="how many URLs are due now, within an hour, a day, a week",
        description="Show how many URLs are due for a recrawl now, within an hour, day, week.",
        epilog="example:\n  python -m crawler schedule --db crawl.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(schedule)

    for name, help_text in TOOLS.items():
        if tools is None or name in tools:
            tool = load(name)
            tool_parser = tool.register(sub)
            _common(tool_parser)
            tool_parser.set_defaults(tool=tool)
        else:
            sub.add_parser(name, help=help_text)

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


def _crawl_flags(p: argparse.ArgumentParser, *, depth: bool = True) -> None:
    p.add_argument("--workers", type=int, metavar="N", help="fetcher threads [16]")
    p.add_argument("--max-pages", type=int, metavar="N", help="stop after N pages [no limit]")
    if depth:
        p.add_argument("--max-depth", type=int, metavar="N", help="links from a seed [no limit]")
    p.add_argument("--max-time", type=float, metavar="SECONDS", help="stop after [no limit]")
    p.add_argument("--user-agent", metavar="UA", help="User-Agent header [crawler/0.1]")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="total per request [60]")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(text: str) -> float:
    """``6h``, ``30m``, ``1h30m``, ``2d``, or plain seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or _DURATION.sub("", text).strip():
            raise argparse.ArgumentTypeError(
                f"not a duration: {text!r} (try 6h, 30m, 1d)"
            ) from None
        seconds = sum(float(n) * _UNITS[u.lower()] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return seconds


def _timestamp(text: str) -> dt.datetime:
    """ISO 8601; UTC unless it carries an offset."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2030-01-01T00:00:00)"
        ) from None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _normalize_argv(argv: list[str]) -> list[str]:
    """``crawler seed.txt`` is shorthand for ``crawler crawl seed.txt``."""
    commands = {*BUILTIN, *TOOLS}
    if argv and argv[0] not in commands and argv[0] not in ("-h", "--help", "--version"):
        return ["crawl", *argv]
    return argv


def _config(args: argparse.Namespace, stored: dict[str, Any] | None = None) -> Config:
    """The run's settings. With ``stored`` (a resumed crawl's), those are the base, and only an
    explicit ``--config`` file goes over them (a ./settings.toml of defaults would undo them)."""
    from crawler.config import load_config

    path: Path | None = args.config
    if path is None and stored is None and DEFAULT_SETTINGS.is_file():
        path = DEFAULT_SETTINGS
    overrides: dict[str, dict[str, Any]] = {"store": {"db": args.db}}
    if args.command in ("crawl", "recrawl", "worker"):
        overrides["crawl"] = {
            "workers": args.workers,
            "max_pages": args.max_pages,
            "max_depth": getattr(args, "max_depth", None),
            "max_time_s": args.max_time,
            "user_agent": args.user_agent,
        }
        overrides["fetch"] = {"total_timeout": args.timeout}
    return load_config(
        path,
        overrides=overrides,
        base=stored,
        base_source="the resumed crawl",
        flag_names=FLAG_NAMES,
        on_ignored=_warn_ignored_once,
    )


@functools.cache
def _warn_ignored_once(var: str) -> None:
    """Settings load twice for some commands (recrawl, worker, --resume): warn once a run."""
    from crawler.config import warn_ignored

    warn_ignored(var)


class _Signals:
    """First SIGINT/SIGTERM: stop gracefully (pages in flight finish, within ``shutdown_grace``).
    Second: stop now (what has not finished goes back to the frontier). Third: exit at once."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.abort = threading.Event()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.abort.is_set():
            os._exit(EXIT_INTERRUPTED)  # the user insists; committed data is safe (WAL)
        if self.stop.is_set():
            self.abort.set()
            log.warning("stopping now: storing what is complete")
            return
        self.stop.set()
        log.warning("stopping: finishing pages in flight (press Ctrl-C again to stop at once)")

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._handle)
            signal.signal(signal.SIGTERM, self._handle)


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


def _cmd_crawl(args: argparse.Namespace, config: Config) -> int:
    from crawler.records import CrawlStatus
    from crawler.runner import run_crawl
    from crawler.summary import format_summary

    signals = _Signals()
    signals.install()
    progress = _progress_options(args, config)
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


def _resume_command(args: argparse.Namespace) -> str:
    """The exact command that continues this crawl (a database password shown as ***)."""
    from crawler.db import masked

    parts = ["python -m crawler crawl --resume"]
    if args.db:
        parts.append(f"--db {shlex.quote(masked(args.db))}")
    if args.config:
        parts.append(f"--config {shlex.quote(str(args.config))}")
    return " ".join(parts)


def _crawl_config(args: argparse.Namespace) -> Config:
    """Settings for ``crawl``; with ``--resume``, on top of the resumed crawl's own."""
    from crawler.db import masked
    from crawler.errors import UsageError
    from crawler.runner import stored_settings

    config = _config(args)
    if args.seed_file is None and not args.resume:
        raise UsageError("crawl needs a seed file, or --resume to continue the latest crawl")
    if not args.resume:
        return config
    latest = stored_settings(config.store.db)
    if latest is None:
        raise UsageError(f"nothing to resume: no crawl in database '{masked(config.store.db)}'")
    crawl_id, stored = latest
    log.info("resuming crawl %d with its settings", crawl_id)
    return _config(args, stored)


def _progress_options(args: argparse.Namespace, config: Config) -> ProgressOptions | None:
    """Progress as ``-q``, the terminal and ``--log-file`` ask: live, log lines, or none."""
    from crawler.runner import ProgressOptions

    if args.quiet:
        return None
    live = sys.stderr.isatty() and args.log_file is None
    return ProgressOptions(live=live, interval_s=config.crawl.progress_interval)


def _latest_crawl_config(args: argparse.Namespace, what: str) -> Config:
    """Settings for a command that continues the database's latest crawl (recrawl, worker):
    that crawl's stored settings, with ``--config``, env and flags over them."""
    from crawler.db import masked
    from crawler.errors import UsageError
    from crawler.runner import stored_settings

    base = _config(args)
    latest = stored_settings(base.store.db)
    if latest is None:
        raise UsageError(f"nothing to {what}: no crawl in database '{masked(base.store.db)}'")
    return _config(args, latest[1])


def _cmd_recrawl(args: argparse.Namespace) -> int:
    from crawler.records import CrawlStatus
    from crawler.runner import Recrawl, recrawl_passes
    from crawler.summary import format_summary

    config = _latest_crawl_config(args, "recrawl")
    signals = _Signals()
    signals.install()
    progress = _progress_options(args, config)
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


def _cmd_worker(args: argparse.Namespace) -> int:
    from crawler.records import CrawlStatus
    from crawler.runner import run_crawl, wait_for_work
    from crawler.summary import format_summary

    config = _latest_crawl_config(args, "work on")
    signals = _Signals()
    signals.install()
    progress = _progress_options(args, config)
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


def _cmd_schedule(config: Config) -> int:
    from crawler.db import masked
    from crawler.errors import UsageError
    from crawler.runner import due_counts

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


def _cmd_db(args: argparse.Namespace, config: Config) -> int:
    from crawler.db import head_revision, masked, open_database

    if args.db_command != "upgrade":
        build_parser(tools=()).parse_args(["db", "--help"])
        return EXIT_USAGE
    open_database(config.store.db).dispose()
    print(f"database {masked(config.store.db)} is at schema revision {head_revision()}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    raw = _normalize_argv(list(sys.argv[1:] if argv is None else argv))
    # The command, when there is one, is the first word now: load only its tool, if it is one.
    parser = build_parser(tools=raw[:1])
    args = parser.parse_args(raw)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # Imported once the arguments are parsed: --help and --version never need them, and
    # crawler.errors imports requests.
    from crawler.errors import UsageError
    from crawler.logs import setup_logging

    try:
        setup_logging(
            verbose=args.verbose, quiet=args.quiet, log_file=args.log_file, fmt=args.log_format
        )
    except OSError as exc:
        sys.stderr.write(f"crawler: cannot write log file '{args.log_file}': {exc.strerror}\n")
        return EXIT_USAGE
    try:
        tool = getattr(args, "tool", None)
        if tool is not None:
            return int(tool.run(args, _config(args).store.db))
        if args.command == "crawl":
            return _cmd_crawl(args, _crawl_config(args))
        if args.command == "recrawl":
            return _cmd_recrawl(args)
        if args.command == "worker":
            return _cmd_worker(args)
        if args.command == "schedule":
            return _cmd_schedule(_config(args))
        return _cmd_db(args, _config(args))
    except UsageError as exc:
        sys.stderr.write(f"crawler: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("crawler: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the work failed: say what, once, on one line, without a traceback
        from crawler.writer import reason

        log.debug("fatal error", exc_info=True)
        sys.stderr.write(f"crawler: error: {reason(exc)}\n")
        return EXIT_FAILED
