"""Commands that read a crawl database: one module each, listed here for the CLI.

A tool module defines ``NAME`` (the subcommand), ``register(sub)`` returning its argparse parser
(with help text and an epilog of examples), and ``run(args, db) -> int`` (the exit status).
The CLI adds ``--db``, ``--config`` and the logging flags to every parser, so a tool only adds
its own. Tools only read: they open the database through :func:`crawler.tools.readonly.connect`.

Tool modules import SQLAlchemy, the models and more, which ``--help`` and a crawl do not need.
So the CLI lists the tools from :data:`TOOLS` (name and one-line help) and imports a tool's
module only when that tool is the command being run. A new tool module needs its line in
:data:`TOOLS`; ``tests/commands/test_startup.py`` checks the two agree.

They stay a package of their own beside :mod:`crawler.commands` because their rule is their
own: they only read. Must not import: ``crawler.run``, ``crawler.fetch``, ``crawler.parse``,
``crawler.commands`` (``tests/test_layout.py`` checks it); they read through
:mod:`crawler.store` and the models.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TOOLS: dict[str, str] = {
    "errors": "failed URLs, grouped, with the pages that link to each",
    "export": "write a table or view as JSON lines or CSV, streamed",
    "query": "run one read-only SQL statement and print its rows",
    "report": "write a self-contained HTML report with charts and tables",
    "search": "full-text search over page text: URLs, titles and snippets, best first",
    "stats": "the crawl at a glance: status codes, hosts, errors, depths, slow and large pages",
    "warc": "export the stored responses as a WARC file",
}
"""Every tool, by subcommand name (= module name), with the help line ``--help`` shows."""


def load(name: str) -> ModuleType:
    """The module of tool ``name`` (a key of :data:`TOOLS`), imported now."""
    if name not in TOOLS:
        raise KeyError(f"no tool named {name!r}")
    return importlib.import_module(f"{__name__}.{name}")
