"""The command line: parse arguments, build the settings, call the runner, print, exit.

No crawling logic lives here. Exit statuses: 0 done; 1 the work failed (nothing could be
fetched, the database failed); 2 bad input (seed file, settings, flags, a database that is not
ours), always one line on stderr and no traceback; 130 interrupted.

Start-up is paid on every run, so this module imports only the standard library at load time:
``--version`` and ``--help`` import nothing else, and a command imports what it uses (the
settings, requests, SQLAlchemy, one tool module) once it is parsed.
``tests/commands/test_startup.py`` checks it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Collection, Sequence
from typing import Any

from crawler.commands import crawl, db, recrawl, schedule, worker
from crawler.commands.options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Parser,
    common_flags,
    config_for,
)
from crawler.tools import TOOLS, load

BUILTIN = (crawl, recrawl, worker, schedule)
"""The built-in commands listed before the reading tools in ``--help`` (``db`` comes last)."""

log = logging.getLogger("crawler")

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


def build_parser(tools: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line. Only the tools named in ``tools`` (None: all) are imported and
    get their full parser; the others are listed by name and help line alone, which is all
    ``--help`` shows and all that parsing another command needs."""
    parser = Parser(
        prog="crawler",
        description="A polite, streaming web crawler that stores everything in SQLite.",
        epilog=MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in BUILTIN:
        command.register(sub).set_defaults(run=command.run)
    for name, help_text in TOOLS.items():
        if tools is None or name in tools:
            tool = load(name)
            tool_parser = tool.register(sub)
            common_flags(tool_parser)
            tool_parser.set_defaults(tool=tool)
        else:
            sub.add_parser(name, help=help_text)
    db.register(sub).set_defaults(run=db.run)
    return parser


def _normalize_argv(argv: list[str]) -> list[str]:
    """``crawler seed.txt`` is shorthand for ``crawler crawl seed.txt``."""
    commands = {*(c.NAME for c in (*BUILTIN, db)), *TOOLS}
    if argv and argv[0] not in commands and argv[0] not in ("-h", "--help", "--version"):
        return ["crawl", *argv]
    return argv


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
    from crawler.commands.logs import setup_logging
    from crawler.errors import UsageError

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
            return int(tool.run(args, config_for(args).store.db))
        return int(args.run(args))
    except UsageError as exc:
        sys.stderr.write(f"crawler: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("crawler: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the work failed: say what, once, on one line, without a traceback
        from crawler.store.writer import reason

        log.debug("fatal error", exc_info=True)
        sys.stderr.write(f"crawler: error: {reason(exc)}\n")
        return EXIT_FAILED
