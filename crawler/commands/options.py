"""What the crawl commands share: their flags, the settings they resolve, their signals.

Imports only the standard library at load time (``--help`` must stay fast, see
:mod:`crawler.commands.cli`); settings and the runner are imported when a command runs. Flag
help shows the defaults of :mod:`crawler.config` (``[=crawl.workers]`` in a help text becomes
``[16]`` when help is formatted), so the two cannot disagree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from crawler.config import Config
    from crawler.run.runner import ProgressOptions

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_SETTINGS = Path("settings.toml")

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

_SETTING = re.compile(r"\[=(\w+)\.(\w+)\]")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(EXIT_USAGE)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows ``[=section.key]`` in a flag's help as that setting's default (0: no limit)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text is None or "[=" not in text:
            return text
        return _SETTING.sub(lambda m: f"[{_default_text(m[1], m[2])}]", text)


def _default_text(section: str, key: str) -> str:
    from crawler.config import Config

    value = getattr(getattr(Config(), section), key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return "no limit"
    return f"{value:g}" if isinstance(value, float) else str(value)


def common_flags(p: argparse.ArgumentParser) -> None:
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


def crawl_flags(p: argparse.ArgumentParser, *, depth: bool = True) -> None:
    p.add_argument("--workers", type=int, metavar="N", help="fetcher threads [=crawl.workers]")
    p.add_argument(
        "--max-pages", type=int, metavar="N", help="stop after N pages [=crawl.max_pages]"
    )
    if depth:
        p.add_argument(
            "--max-depth", type=int, metavar="N", help="links from a seed [=crawl.max_depth]"
        )
    p.add_argument(
        "--max-time", type=float, metavar="SECONDS", help="stop after [=crawl.max_time_s]"
    )
    p.add_argument("--user-agent", metavar="UA", help="User-Agent header [=crawl.user_agent]")
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="total per request [=fetch.total_timeout]"
    )


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
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


def timestamp(text: str) -> dt.datetime:
    """ISO 8601; UTC unless it carries an offset."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2030-01-01T00:00:00)"
        ) from None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def config_for(args: argparse.Namespace, stored: dict[str, Any] | None = None) -> Config:
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


class Signals:
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


def progress_options(args: argparse.Namespace, config: Config) -> ProgressOptions | None:
    """Progress as ``-q``, the terminal and ``--log-file`` ask: live, log lines, or none."""
    from crawler.run.runner import ProgressOptions

    if args.quiet:
        return None
    live = sys.stderr.isatty() and args.log_file is None
    return ProgressOptions(live=live, interval_s=config.crawl.progress_interval)


def latest_crawl_config(args: argparse.Namespace, what: str) -> Config:
    """Settings for a command that continues the database's latest crawl (recrawl, worker):
    that crawl's stored settings, with ``--config``, env and flags over them."""
    from crawler.errors import UsageError
    from crawler.run.runner import stored_settings
    from crawler.store.db import masked

    base = config_for(args)
    latest = stored_settings(base.store.db)
    if latest is None:
        raise UsageError(f"nothing to {what}: no crawl in database '{masked(base.store.db)}'")
    return config_for(args, latest[1])
