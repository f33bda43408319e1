"""Helpers for integration tests: write settings and seeds, run the CLI, read the database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from crawler.commands.cli import main
from tests import dnsguard

ROOT = Path(__file__).resolve().parent.parent

# Fast, impolite settings for loopback test sites: no delay, no robots, quick retries.
FAST = {
    "crawl": {"workers": 8},
    "politeness": {"delay": 0.0, "per_host_concurrency": 8, "obey_robots": False},
    "fetch": {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "total_timeout": 10.0},
    "store": {"batch_ms": 50},
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def write_settings(path: Path, *layers: dict[str, dict[str, Any]]) -> Path:
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    lines = []
    for section, values in merged.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_seeds(path: Path, urls: Iterable[str]) -> Path:
    path.write_text("".join(f"{u}\n" for u in urls), encoding="utf-8")
    return path


def crawl(
    tmp: Path, seeds: Sequence[str], *extra: str, settings: dict[str, Any] | None = None
) -> int:
    """Run ``crawler crawl`` in-process with FAST settings plus ``settings``; return its status."""
    seed_file = write_seeds(tmp / "seed.txt", seeds)
    cfg = write_settings(tmp / "settings.toml", FAST, settings or {})
    return main(
        ["crawl", str(seed_file), "--db", str(tmp / "crawl.db"), "--config", str(cfg), "-q", *extra]
    )


def crawl_in_subprocess(
    tmp: Path, seeds: Sequence[str], *extra: str, settings: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    """Like :func:`crawl`, but in its own process: when timing is judged by a server in this
    process, the crawler's threads must not compete with the server's for this GIL."""
    seed_file = write_seeds(tmp / "seed.txt", seeds)
    cfg = write_settings(tmp / "settings.toml", FAST, settings or {})
    return run_cli(
        "crawl",
        str(seed_file),
        "--db",
        str(tmp / "crawl.db"),
        "--config",
        str(cfg),
        "-q",
        *extra,
        cwd=tmp,
        env={"PYTHONPATH": str(ROOT)},
        timeout=120,
    )


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m crawler`` as a real subprocess (exit codes, stderr, signals)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    full_env.update(env or {})
    full_env = dnsguard.subprocess_env(full_env)  # a PYTHONPATH of the caller keeps the guard
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()
