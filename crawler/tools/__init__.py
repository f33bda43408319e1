"""Commands that read a crawl database: one module each, found here by the CLI.

A tool module defines ``NAME`` (the subcommand), ``register(sub)`` returning its argparse parser
(with help text and an epilog of examples), and ``run(args, db) -> int`` (the exit status).
The CLI adds ``--db``, ``--config`` and the logging flags to every parser, so a tool only adds
its own. Tools only read: they open the database through :func:`crawler.tools.readonly.connect`.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def discover() -> list[ModuleType]:
    """Every tool module in this package, by name (modules starting with ``_`` are helpers)."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "readonly":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register") and hasattr(module, "run"):
            found.append(module)
    return found
