"""Start-up cost: what a command imports, and how cheaply a database at head is opened.

Every run pays its start-up, so ``--version`` and ``--help`` import no third-party library, a
crawl imports no tool module, pygments or rich, and opening a database that is already at the
latest revision reads ``alembic_version`` instead of loading Alembic.
"""

from __future__ import annotations

import json
import os
import pkgutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

import crawler.tools
from crawler.commands.cli import build_parser
from crawler.errors import DatabaseError
from crawler.store.db import HEAD_REVISION, _alembic_config, is_at_head, make_engine, upgrade
from crawler.tools import TOOLS, load
from tests.crawlkit import ROOT, write_seeds, write_settings
from tests.mockserver import Page, Site
from tests.store.test_db import pg_url as pg_url  # the one PostgreSQL fixture

pytestmark = pytest.mark.timeout(120)


# Runs ``python -m crawler ARGS`` the way the interpreter does, then records what was imported.
PROBE = """
import json, runpy, sys
out, *args = sys.argv[1:]
sys.argv = ["crawler", *args]
code = 0
try:
    runpy.run_module("crawler", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
with open(out, "w", encoding="utf-8") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""

THIRD_PARTY = ("sqlalchemy", "requests", "urllib3", "alembic", "mako", "pygments", "rich", "lxml")


def run_probe(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    """``python -m crawler ARGS`` in a fresh interpreter: its exit status and ``sys.modules``."""
    out = tmp_path / f"modules-{uuid.uuid4().hex[:8]}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.is_file(), result.stderr
    found: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return int(found["code"]), set(found["modules"])


def loaded(modules: set[str], packages: Iterable[str]) -> list[str]:
    """The ``packages`` (or any of their submodules) present in ``modules``."""
    return sorted(p for p in packages if any(m == p or m.startswith(f"{p}.") for m in modules))


def tool_modules(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.startswith("crawler.tools."))


# --------------------------------------------------------------------------- what commands import


def test_version_imports_no_third_party_library(tmp_path: Path) -> None:
    code, modules = run_probe(tmp_path, "--version")
    assert code == 0
    assert loaded(modules, THIRD_PARTY) == []
    assert loaded(modules, ("models", "crawler.config", "crawler.errors", "crawler.store.db")) == []
    assert tool_modules(modules) == []


def test_help_imports_no_third_party_library_nor_the_version(tmp_path: Path) -> None:
    code, modules = run_probe(tmp_path, "--help")
    assert code == 0
    assert loaded(modules, (*THIRD_PARTY, "importlib.metadata")) == []
    assert tool_modules(modules) == []


def test_a_tool_imports_itself_and_its_helpers_only(tmp_path: Path) -> None:
    code, modules = run_probe(tmp_path, "stats", "--help")
    assert code == 0
    assert tool_modules(modules) == [
        "crawler.tools.query",
        "crawler.tools.readonly",
        "crawler.tools.stats",
    ]
    assert loaded(modules, ("alembic", "pygments", "rich")) == []


def _site() -> Site:
    site = Site()
    site.add("/", Page('<title>home</title><a href="/a">a</a>'))
    site.add("/a", Page("<title>a</title>"))
    return site


def test_a_crawl_imports_no_tool_alembic_pygments_or_rich(site_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = site_server(_site()).url("/")
    write_seeds(tmp_path / "seed.txt", [url])
    write_settings(
        tmp_path / "settings.toml",
        {"politeness": {"delay": 0.0, "obey_robots": False}, "fetch": {"retries": 0}},
    )
    argv = ("crawl", "seed.txt", "--db", "crawl.db", "-q", "--max-pages", "1")
    code, modules = run_probe(tmp_path, *argv)  # a new database: created through Alembic
    assert code == 0
    assert "alembic" in modules
    assert loaded(modules, ("pygments", "rich")) == []  # Alembic does not need pygments
    code, modules = run_probe(tmp_path, *argv)  # at head now: Alembic is not needed
    assert code == 0
    assert loaded(modules, ("alembic", "mako", "pygments", "rich")) == []
    assert tool_modules(modules) == []


# --------------------------------------------------------------------------- the parser


def test_tools_lists_every_tool_module_by_its_name() -> None:
    names = {
        info.name
        for info in pkgutil.iter_modules(crawler.tools.__path__)
        if not info.name.startswith("_") and info.name != "readonly"
    }
    assert names == set(TOOLS)
    for name in TOOLS:
        module = load(name)
        assert name == module.NAME
        assert callable(module.register)
        assert callable(module.run)


def test_help_is_the_same_whether_tools_are_loaded_or_not() -> None:
    assert build_parser(tools=()).format_help() == build_parser().format_help()


def test_unknown_tool_is_refused_by_load() -> None:
    with pytest.raises(KeyError):
        load("readonly")


# --------------------------------------------------------------------------- the head check


def test_head_revision_is_the_head_of_the_migrations_folder() -> None:
    script = ScriptDirectory.from_config(_alembic_config())
    assert script.get_heads() == [HEAD_REVISION]


@pytest.mark.parametrize("start", [None, "0003"], ids=["new", "older"])
def test_a_database_not_at_head_is_migrated_to_head(tmp_path: Path, start: str | None) -> None:
    """A new database, and one at an older revision: neither is at head until upgraded."""
    engine = make_engine(str(tmp_path / "crawl.db"))
    cfg = _alembic_config()
    try:
        if start is not None:
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, start)
        assert not is_at_head(engine)
        upgrade(engine)
        assert is_at_head(engine)
    finally:
        engine.dispose()


def test_a_foreign_sqlite_file_is_looked_at_without_being_changed(tmp_path: Path) -> None:
    db = tmp_path / "theirs.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("create table notes (id integer primary key, body text)")
    con.close()
    before = db.read_bytes()
    engine = make_engine(str(db))
    try:
        assert not is_at_head(engine)
        assert db.read_bytes() == before
        with pytest.raises(DatabaseError, match="not a crawler database"):
            upgrade(engine)
        assert db.read_bytes() == before
    finally:
        engine.dispose()


def test_two_version_rows_are_not_at_head(tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    engine = make_engine(str(db))
    upgrade(engine)
    con = sqlite3.connect(db)
    with con:
        con.execute("insert into alembic_version values ('0003')")
    con.close()
    try:
        assert not is_at_head(engine)
    finally:
        engine.dispose()


def test_opening_a_database_at_head_does_not_load_alembic(tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    engine = make_engine(str(db))
    upgrade(engine)
    engine.dispose()
    script = (
        "import sys\n"
        "from crawler.store.db import open_database\n"
        f"open_database({str(db)!r}).dispose()\n"
        "print(sorted(m for m in ('alembic', 'mako', 'models') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.postgres
def test_head_check_on_postgresql(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        assert not is_at_head(engine)  # no alembic_version table: the query fails, not the run
        upgrade(engine)
        assert is_at_head(engine)
        with engine.begin() as conn:
            conn.execute(text("update alembic_version set version_num = '0003'"))
        assert not is_at_head(engine)
    finally:
        engine.dispose()
