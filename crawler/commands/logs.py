"""Logging for people and for machines: stderr (text) by default, ``--log-file``, JSON lines.

Library code only calls ``logging``; this module, called once by the CLI, decides where it goes.
JSON lines carry the record's ``extra=`` fields, so a progress line is machine-readable too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(
    *, verbose: int = 0, quiet: int = 0, log_file: Path | None = None, fmt: str = "text"
) -> None:
    """Route every log record to stderr (or ``log_file``) at the level ``-v``/``-q`` ask for."""
    level = logging.INFO - 10 * verbose + 10 * quiet
    handler: logging.Handler
    if log_file is not None:
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(max(logging.DEBUG, min(level, logging.CRITICAL)))
    for noisy in ("urllib3", "alembic"):  # their INFO lines are not the user's business
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
