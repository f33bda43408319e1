"""``crawler db``: database maintenance (``db upgrade``)."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from crawler.commands.options import (
    EXIT_OK,
    EXIT_USAGE,
    HelpFormatter,
    Parser,
    common_flags,
    config_for,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("crawler")

NAME = "db"


def register(sub: Any) -> argparse.ArgumentParser:
    db: argparse.ArgumentParser = sub.add_parser(
        NAME, help="database maintenance", description="Database maintenance."
    )
    db_sub = db.add_subparsers(
        dest="db_command", metavar="ACTION", parser_class=Parser, required=True
    )
    upgrade = db_sub.add_parser(
        "upgrade",
        help="create or migrate the schema to the latest version",
        description="Create or migrate the database schema (a crawl also does this on open).",
        epilog="example:\n  python -m crawler db upgrade --db crawl.db",
        formatter_class=HelpFormatter,
    )
    common_flags(upgrade)
    db.set_defaults(db_parser=db)
    return db


def run(args: argparse.Namespace) -> int:
    config = config_for(args)
    from crawler.store.db import head_revision, masked, open_database

    if args.db_command != "upgrade":
        args.db_parser.parse_args(["--help"])
        return EXIT_USAGE
    open_database(config.store.db).dispose()
    print(f"database {masked(config.store.db)} is at schema revision {head_revision()}")
    return EXIT_OK
