"""Docs that rot fail here: docs/schema.md against the models and the database, settings.toml
comments against crawler.config, CLI help against the parser, CONTRIBUTING.md against the tree.

docs/schema.md is parsed, not grepped: a table's section is a ``## <name>`` (or ``###``) heading,
up to the next heading of the same or a higher level; its first markdown table whose header
starts with ``column`` lists one column per row, the name in backticks in the first cell.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sqlite3
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import JSON, Boolean, Float, Integer, LargeBinary, String
from sqlalchemy.sql.schema import Column

import models
from crawler.commands.cli import build_parser
from crawler.config import Config
from crawler.store.db import open_database
from models.base import UTCDateTime
from models.tables import CRAWL_STATUSES, ERROR_KINDS, URL_STATES

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_MD = ROOT / "docs" / "schema.md"
CONTRIBUTING_MD = ROOT / "CONTRIBUTING.md"
SETTINGS_TOML = ROOT / "settings.toml"

VIEW = "pages"
ENUMS = {
    ("urls", "state"): URL_STATES,
    ("errors", "kind"): ERROR_KINDS,
    ("crawls", "status"): CRAWL_STATUSES,
}

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_TICKED = re.compile(r"^`([^`]+)`$")


# --------------------------------------------------------------------------- parsing markdown


@dataclass(frozen=True)
class Section:
    level: int
    title: str
    lines: tuple[str, ...]
    """Up to the next heading of the same or a higher level (subsections included)."""

    @property
    def own_lines(self) -> tuple[str, ...]:
        """Up to the next heading of any level: where the section's column table must be."""
        end = next((i for i, line in enumerate(self.lines) if _HEADING.match(line)), None)
        return self.lines[:end]

    @property
    def name(self) -> str:
        """The heading's first word without backticks: ``## pages (view)`` → ``pages``."""
        words = self.title.split()
        return words[0].strip("`") if words else ""


def _sections(text: str) -> list[Section]:
    """Every heading with its body, up to the next heading of the same or a higher level."""
    lines = text.splitlines()
    heads = [(i, m) for i, line in enumerate(lines) if (m := _HEADING.match(line))]
    out = []
    for n, (i, m) in enumerate(heads):
        level = len(m[1])
        end = next((j for j, k in heads[n + 1 :] if len(k[1]) <= level), len(lines))
        out.append(Section(level, m[2], tuple(lines[i + 1 : end])))
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _tables(lines: tuple[str, ...]) -> list[tuple[list[str], list[list[str]]]]:
    """Markdown tables in ``lines``, as (header cells, body rows of cells)."""
    tables: list[tuple[list[str], list[list[str]]]] = []
    block: list[str] = []
    for line in (*lines, ""):
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and set(block[1].replace("|", "").strip()) <= set("-: "):
            tables.append((_cells(block[0]), [_cells(row) for row in block[2:]]))
        block = []
    return tables


def _first_table(lines: tuple[str, ...], header: str) -> list[list[str]] | None:
    """Rows of the first table in ``lines`` whose first header cell is ``header``."""
    for head, rows in _tables(lines):
        if head and head[0].lower() == header:
            return rows
    return None


def _ticked_names(rows: list[list[str]], where: str) -> list[str]:
    names = []
    for row in rows:
        m = _TICKED.match(row[0])
        assert m, f"{where}: first cell {row[0]!r} is not a name in backticks"
        names.append(m[1])
    return names


@pytest.fixture(scope="module")
def schema_md() -> str:
    assert SCHEMA_MD.is_file(), "docs/schema.md is missing"
    return SCHEMA_MD.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def column_tables(schema_md: str) -> dict[str, list[list[str]]]:
    """Section name → rows of its ``| column | type | meaning |`` table."""
    out: dict[str, list[list[str]]] = {}
    for section in _sections(schema_md):
        rows = _first_table(section.own_lines, "column")
        if rows is None:
            continue
        assert section.name not in out, f"docs/schema.md: two sections for {section.name!r}"
        out[section.name] = rows
    return out


@pytest.fixture(scope="module")
def section_by_name(schema_md: str) -> dict[str, Section]:
    return {s.name: s for s in _sections(schema_md) if s.level <= 3}


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh database at the head revision, made the way a crawl makes it."""
    path = tmp_path_factory.mktemp("docs") / "x.db"
    open_database(str(path)).dispose()
    return path


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --------------------------------------------------------------------------- tables and columns


def _doc_type(column: Column[object]) -> str:
    """The word docs/schema.md uses for a column's type."""
    t = column.type
    if isinstance(t, UTCDateTime):
        return "timestamp"
    if isinstance(t, Boolean):
        return "boolean"
    if isinstance(t, Integer):  # BigInteger too
        return "integer"
    if isinstance(t, Float):
        return "real"
    if isinstance(t, JSON):
        return "JSON"
    if isinstance(t, String):  # Text too
        return "text"
    if isinstance(t, LargeBinary):
        return "binary"
    raise AssertionError(f"no doc type word for {column.table.name}.{column.name}: {t!r}")


def test_every_table_has_a_section_with_exactly_its_columns(
    column_tables: dict[str, list[list[str]]],
) -> None:
    for table in models.metadata.sorted_tables:
        rows = column_tables.get(table.name)
        assert rows is not None, f"docs/schema.md: no '## {table.name}' section with a column table"
        where = f"docs/schema.md, {table.name}"
        documented = _ticked_names(rows, where)
        assert len(documented) == len(set(documented)), f"{where}: a column is listed twice"
        actual = [c.name for c in table.columns]
        assert not set(actual) - set(documented), f"{where}: undocumented columns"
        assert not set(documented) - set(actual), f"{where}: documents columns that do not exist"


def test_column_types_and_nullability_match_the_models(
    column_tables: dict[str, list[list[str]]],
) -> None:
    """The type cell is the column's type word, plus " or NULL" exactly when it is nullable."""
    for table in models.metadata.sorted_tables:
        rows = {r[0].strip("`"): r for r in column_tables.get(table.name, [])}
        for column in table.columns:
            cells = rows.get(column.name)
            if cells is None:
                continue  # reported by test_every_table_has_a_section_with_exactly_its_columns
            assert len(cells) == 3, (
                f"{table.name}.{column.name}: expected | column | type | meaning |"
            )
            doc_type, meaning = cells[1], cells[2]
            expected = _doc_type(column) + (" or NULL" if column.nullable else "")
            assert doc_type == expected, f"{table.name}.{column.name}: type is {expected!r}"
            assert meaning, f"{table.name}.{column.name}: no meaning"


def test_no_section_documents_a_table_that_does_not_exist(
    column_tables: dict[str, list[list[str]]],
) -> None:
    known = set(models.metadata.tables) | {VIEW}
    assert set(column_tables) <= known, f"unknown: {sorted(set(column_tables) - known)}"


def test_pages_view_columns_are_documented(
    column_tables: dict[str, list[list[str]]], sqlite_db: Path
) -> None:
    actual = [row[1] for row in _query(sqlite_db, f"PRAGMA table_info({VIEW})")]
    assert actual, "the pages view is missing from a fresh database"
    rows = column_tables.get(VIEW)
    assert rows is not None, "docs/schema.md: no '## pages' section with a column table"
    documented = _ticked_names(rows, "docs/schema.md, pages")
    assert documented == actual, "docs/schema.md: the pages view's columns, in view order"


def test_every_index_is_documented_and_no_other(schema_md: str, sqlite_db: Path) -> None:
    in_models = {ix.name for t in models.metadata.tables.values() for ix in t.indexes}
    in_db = {
        str(name)
        for (name,) in _query(sqlite_db, "select name from sqlite_master where type = 'index'")
        if not str(name).startswith("sqlite_autoindex_")
    }
    assert in_models == in_db, "models and migrations disagree on indexes (see test_db.py)"
    mentioned = set(re.findall(r"`(ix_\w+)`", schema_md))
    assert in_models <= mentioned, f"undocumented indexes: {sorted(in_models - mentioned)}"
    assert mentioned <= in_models, f"documented indexes that do not exist: {mentioned - in_models}"


# --------------------------------------------------------------------------- enum values


@pytest.mark.parametrize(("table", "column"), list(ENUMS), ids=lambda v: str(v))
def test_every_enum_value_is_documented_in_its_table_section(
    section_by_name: dict[str, Section], table: str, column: str
) -> None:
    section = section_by_name.get(table)
    assert section is not None, f"docs/schema.md: no '## {table}' section"
    rows = _first_table(section.lines, column)
    assert rows is not None, f"docs/schema.md, {table}: no '| {column} | meaning |' table"
    where = f"docs/schema.md, {table}.{column}"
    documented = _ticked_names(rows, where)
    values = ENUMS[(table, column)]
    assert not set(values) - set(documented), f"{where}: undocumented values"
    assert not set(documented) - set(values), f"{where}: documents values that do not exist"
    assert all(len(r) >= 2 and r[1] for r in rows), f"{where}: a value without its meaning"


def test_schema_md_has_the_sections_users_rely_on(section_by_name: dict[str, Section]) -> None:
    titles = {s.title.lower() for s in section_by_name.values()}
    for wanted in ("stability", "indexes", "how `content_hash` is computed"):
        assert wanted in titles, f"docs/schema.md: no '{wanted}' section"


# --------------------------------------------------------------------------- settings.toml


def _settings_comments() -> dict[tuple[str, str], str]:
    """(section, key) → the comment line right above the key in settings.toml."""
    out: dict[tuple[str, str], str] = {}
    section = ""
    previous = ""
    for raw in SETTINGS_TOML.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if m := re.fullmatch(r"\[([A-Za-z0-9_]+)\]", line):
            section = m[1]
        elif m := re.match(r"([A-Za-z0-9_]+)\s*=", line):
            out[(section, m[1])] = previous
        previous = line
    return out


def _config_settings() -> list[tuple[str, str]]:
    """(section, key) of every field of every section dataclass of ``Config``."""
    hints = typing.get_type_hints(Config)
    return [
        (section.name, f.name)
        for section in dataclasses.fields(Config)
        if section.name != "extract"  # rule tables: a commented example (test_config checks it)
        for f in dataclasses.fields(hints[section.name])
    ]


@pytest.mark.parametrize(("section", "key"), _config_settings(), ids=lambda v: str(v))
def test_every_setting_has_a_comment_in_settings_toml(section: str, key: str) -> None:
    comments = _settings_comments()
    assert (section, key) in comments, f"settings.toml: [{section}] {key} is missing"
    comment = comments[(section, key)]
    assert comment.startswith("#"), f"settings.toml: no comment line above [{section}] {key}"
    assert comment.lstrip("#").strip(), f"settings.toml: empty comment above [{section}] {key}"


# --------------------------------------------------------------------------- command line


def _subcommands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], str | None, argparse.ArgumentParser]]:
    """(command path, help text, parser) of every subcommand, nested ones included."""
    out = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, sub in action.choices.items():
            path = (*prefix, name)
            out.append((path, helps.get(name), sub))
            out.extend(_subcommands(sub, path))
    return out


def test_every_cli_subcommand_has_help_and_an_example() -> None:
    commands = _subcommands(build_parser())
    assert commands, "the CLI has no subcommands"
    paths = {path for path, _, _ in commands}
    for path, help_text, sub in commands:
        name = " ".join(path)
        assert help_text, f"'{name}' has no help text"
        assert help_text.strip(), f"'{name}' has no help text"
        is_leaf = not any(p[: len(path)] == path and len(p) > len(path) for p in paths)
        if is_leaf:
            epilog = sub.epilog or ""
            assert "example" in epilog.lower(), f"'{name}': no example in its epilog"
            assert f"crawler {name}" in epilog, f"'{name}': the example does not run '{name}'"


# --------------------------------------------------------------------------- CONTRIBUTING.md


def test_contributing_exists_and_its_references_are_real() -> None:
    assert CONTRIBUTING_MD.is_file(), "CONTRIBUTING.md is missing"
    text = CONTRIBUTING_MD.read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, flags=re.MULTILINE))
    for target in set(re.findall(r"`make ([\w-]+)", text)):
        assert target in targets, f"CONTRIBUTING.md mentions 'make {target}': no such target"
    for path in set(
        re.findall(r"`((?:crawler|models|migrations|tests|docs|bench)/[\w./]+)`", text)
    ):
        if path.startswith("migrations/versions/000"):  # the example revision
            continue
        assert (ROOT / path).exists(), f"CONTRIBUTING.md mentions '{path}', which does not exist"
    for module, names in re.findall(r"from (crawler\.\w+) import ([\w, ]+)", text):
        imported = __import__(module, fromlist=["_"])
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(imported, name), f"CONTRIBUTING.md imports {module}.{name}: gone"


def test_every_test_file_the_makefile_names_exists() -> None:
    """`make test-latest-quick` (run by CI) names test files; pytest stops with exit 4 on a path
    that no longer exists, so a moved test would fail CI rather than be run."""
    makefile = (ROOT / "Makefile").read_text()
    named = set(re.findall(r"\btests/[\w/]+\.py\b", makefile))
    assert named, "the Makefile names no test files any more: update this test"
    assert sorted(p for p in named if not (ROOT / p).is_file()) == []
