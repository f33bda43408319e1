"""The database: models and migrations agree, on SQLite and PostgreSQL; what users query works.

PostgreSQL tests (``-m postgres``) use the server at 127.0.0.1:5432 (user postgres, database
``test``, trust auth), each test in a fresh schema that is dropped afterwards. When the server
cannot be reached they are skipped locally and fail in CI (``CI`` set).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError
from sqlalchemy.pool import NullPool

import models
from crawler.errors import DatabaseError, ErrorKind
from crawler.records import CrawlStatus, URLState
from crawler.store.db import head_revision, include_name, make_engine, upgrade
from models import Crawl, Error, Fetch, Host, Url
from models.tables import CRAWL_STATUSES, ERROR_KINDS, URL_STATES
from tests import dnsguard
from tests.crawlkit import ROOT, query, run_cli

pytestmark = pytest.mark.timeout(60)

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TABLES = {"crawls", "hosts", "urls", "fetches", "links", "errors"}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A SQLAlchemy URL for a fresh, empty schema on the test PostgreSQL server."""
    try:
        admin = create_engine(PG_URL, poolclass=NullPool, connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except (OperationalError, ModuleNotFoundError) as exc:
        reason = f"PostgreSQL at {PG_URL} is unreachable: {str(exc).splitlines()[0]}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the PostgreSQL tests must run)")
        pytest.skip(f"{reason} (in CI this fails)")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``--db`` for each backend: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        return str(tmp_path / "crawl.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated, empty database."""
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, env={"PYTHONPATH": str(ROOT)})


T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)


def _crawl(conn, **values) -> int:  # type: ignore[no-untyped-def]
    row = {"started_at": T0, "status": "running", "settings": {"crawl": {"workers": 1}}}
    return conn.execute(insert(Crawl).values(**{**row, **values}).returning(Crawl.id)).scalar_one()


def _url(conn, url: str, **values) -> int:  # type: ignore[no-untyped-def]
    host_id = conn.execute(
        select(Host.id).where(Host.host == "http://a.test:80")
    ).scalar_one_or_none()
    if host_id is None:
        host_id = conn.execute(
            insert(Host).values(host="http://a.test:80").returning(Host.id)
        ).scalar_one()
    row = {"url": url, "host_id": host_id, "depth": 0, "state": "queued", "first_seen_at": T0}
    return conn.execute(insert(Url).values(**{**row, **values}).returning(Url.id)).scalar_one()


def _fetch(conn, url_id: int, crawl_id: int, at: dt.datetime, title: str) -> int:  # type: ignore[no-untyped-def]
    row = {
        "url_id": url_id,
        "crawl_id": crawl_id,
        "fetched_at": at,
        "status_code": 200,
        "final_url": "x",
        "elapsed_ms": 5,
        "title": title,
    }
    return conn.execute(insert(Fetch).values(**row).returning(Fetch.id)).scalar_one()


# --------------------------------------------------------------------------- models == migrations


def test_models_and_migrations_agree(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"include_name": include_name}), models.metadata
        )
        assert diff == [], "the models differ from the migrations: write a migration"
        assert set(inspect(conn).get_table_names()) >= TABLES
        assert "pages" in inspect(conn).get_view_names()
        # The comparison is not blind: a missing index is a difference.
        conn.execute(text("DROP INDEX ix_urls_next_fetch_at"))
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"include_name": include_name}), models.metadata
        )
        assert [d[0] for d in diff] == ["add_index"]
        conn.rollback()


def test_upgrade_is_idempotent_and_records_head(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
        assert conn.execute(text("select count(*) from alembic_version")).scalar_one() == 1


# --------------------------------------------------------------------------- db upgrade (CLI)


def test_db_upgrade_command_creates_schema_and_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    first = cli("db", "upgrade", "--db", "new.db", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"database new.db is at schema revision {head_revision()}"
    assert "Traceback" not in first.stderr
    schema = query(db, "select type, name, sql from sqlite_master order by name")
    names = {name for _type, name, _sql in schema}
    assert TABLES | {"alembic_version", "pages"} <= names
    assert query(db, "select version_num from alembic_version") == [(head_revision(),)]
    # Nobody has it open: rollback-journal mode, one file that needs nothing beside it.
    assert query(db, "pragma journal_mode") == [("delete",)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.db"]

    again = cli("db", "upgrade", "--db", "new.db", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert query(db, "select type, name, sql from sqlite_master order by name") == schema
    assert query(db, "select count(*) from crawls") == [(0,)]


@pytest.mark.postgres
def test_db_upgrade_command_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    for _ in range(2):
        result = cli("db", "upgrade", "--db", pg_url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith(f"is at schema revision {head_revision()}")
    eng = create_engine(pg_url, poolclass=NullPool)
    with eng.connect() as conn:
        assert set(inspect(conn).get_table_names()) >= TABLES
    eng.dispose()
    assert not list(tmp_path.iterdir())  # no stray SQLite file named after the URL


# --------------------------------------------------------------------------- the pages view


def test_pages_view_shows_the_latest_fetch_of_each_url(engine: Engine) -> None:
    with engine.begin() as conn:
        crawl1 = _crawl(conn)
        crawl2 = _crawl(conn)
        twice = _url(conn, "http://a.test/twice", state="done")
        once = _url(conn, "http://a.test/once", state="done")
        _url(conn, "http://a.test/never")
        _fetch(conn, twice, crawl1, T0, "old")
        _fetch(conn, once, crawl1, T0 + dt.timedelta(seconds=1), "only")
        latest = _fetch(conn, twice, crawl2, T0 + dt.timedelta(days=1), "new")
    with engine.connect() as conn:
        rows = conn.execute(
            text("select url, host, title, crawl_id, fetch_id, state from pages order by url")
        ).all()
    assert [tuple(r) for r in rows] == [
        ("http://a.test/once", "http://a.test:80", "only", crawl1, rows[0].fetch_id, "done"),
        ("http://a.test/twice", "http://a.test:80", "new", crawl2, latest, "done"),
    ]


# --------------------------------------------------------------------------- not ours: refused


def _set_revision(db_url: str, revision: str) -> None:
    eng = make_engine(db_url)
    with eng.begin() as conn:
        conn.execute(text("update alembic_version set version_num = :r"), {"r": revision})
    eng.dispose()


def test_newer_revision_is_refused(db_url: str) -> None:
    eng = make_engine(db_url)
    upgrade(eng)
    eng.dispose()
    _set_revision(db_url, "9999_from_the_future")
    eng = make_engine(db_url)
    with pytest.raises(DatabaseError, match="9999_from_the_future") as info:
        upgrade(eng)
    assert "newer" in str(info.value)
    assert "not changed" in str(info.value)
    with eng.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "9999_from_the_future"
    eng.dispose()


def test_newer_revision_is_refused_by_the_cli_untouched(tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    eng = make_engine(str(db))
    upgrade(eng)
    eng.dispose()
    con = sqlite3.connect(db)
    with con:
        con.execute("update alembic_version set version_num = 'abcdef999'")
    con.close()
    before = db.read_bytes()
    (tmp_path / "seed.txt").write_text("http://127.0.0.1:9/\n", encoding="utf-8")
    for argv in (["db", "upgrade"], ["crawl", "seed.txt"]):
        result = cli(*argv, "--db", "crawl.db", cwd=tmp_path)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "abcdef999" in lines[0]
        assert "newer" in lines[0]
        assert db.read_bytes() == before
    assert query(db, "select count(*) from crawls") == [(0,)]


# --------------------------------------------------------------------------- enums, constraints


def test_enum_values_in_models_equal_the_code() -> None:
    for stored, enum_cls in (
        (URL_STATES, URLState),
        (ERROR_KINDS, ErrorKind),
        (CRAWL_STATUSES, CrawlStatus),
    ):
        assert len(set(stored)) == len(stored)
        assert set(stored) == {member.value for member in enum_cls}, enum_cls.__name__


@pytest.mark.parametrize(
    ("table", "column", "good"),
    [("urls", "state", "done"), ("crawls", "status", "finished"), ("errors", "kind", "timeout")],
)
def test_check_constraints_reject_unknown_values(
    engine: Engine, table: str, column: str, good: str
) -> None:
    with engine.begin() as conn:
        crawl_id = _crawl(conn)
        url_id = _url(conn, "http://a.test/")
        error = {
            "url_id": url_id,
            "crawl_id": crawl_id,
            "at": T0,
            "attempt": 1,
            "kind": "timeout",
            "message": "m",
            "final": True,
        }
        conn.execute(insert(Error).values(**error))
    statements = {
        "urls": lambda conn, v: _url(conn, "http://a.test/x", state=v),
        "crawls": lambda conn, v: _crawl(conn, status=v),
        "errors": lambda conn, v: conn.execute(insert(Error).values(**{**error, "kind": v})),
    }
    with engine.begin() as conn:
        statements[table](conn, good)
    with pytest.raises(IntegrityError, match=f"ck_{table}_{column}"), engine.begin() as conn:
        statements[table](conn, "bogus")


def test_unknown_state_written_by_hand_is_rejected(tmp_path: Path) -> None:
    """What a user poking at the file with the sqlite3 shell meets."""
    db = tmp_path / "crawl.db"
    eng = make_engine(str(db))
    upgrade(eng)
    with eng.begin() as conn:
        _url(conn, "http://a.test/")
    eng.dispose()
    con = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="ck_urls_state"):
            con.execute("update urls set state = 'Done'")
    finally:
        con.close()


# --------------------------------------------------------------------------- timestamps


def test_timestamps_round_trip_as_utc(engine: Engine) -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    local = dt.datetime(2026, 6, 1, 14, 30, 15, 250000, tzinfo=paris)
    with engine.begin() as conn:
        crawl_id = _crawl(conn, started_at=local, finished_at=None)
    with engine.connect() as conn:
        started, finished = conn.execute(
            select(Crawl.started_at, Crawl.finished_at).where(Crawl.id == crawl_id)
        ).one()
    assert finished is None
    assert started == local
    assert started.utcoffset() == dt.timedelta(0)
    assert started.tzinfo is not None
    assert (started.hour, started.microsecond) == (12, 250000)


def test_timestamps_are_stored_as_utc_text_in_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "crawl.db"
    eng = make_engine(str(db))
    upgrade(eng)
    with eng.begin() as conn:
        _crawl(
            conn,
            started_at=dt.datetime(2026, 6, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        )
    eng.dispose()
    [(stored,)] = query(db, "select started_at from crawls")
    assert stored.startswith("2026-06-01 12:30:00")


def test_naive_datetime_is_refused(engine: Engine) -> None:
    naive = dt.datetime(2026, 6, 1, 14, 30)  # the point of the test
    with pytest.raises(StatementError, match="naive"), engine.begin() as conn:
        _crawl(conn, started_at=naive)
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from crawls")).scalar_one() == 0


# --------------------------------------------------------------------------- layering


def test_models_never_import_crawler() -> None:
    code = (
        "import models, sys\n"
        "assert not any(m == 'crawler' or m.startswith('crawler.') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith('crawler'))\n"
        "print(models.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env["PYTHONPATH"] = str(ROOT)
    env = dnsguard.subprocess_env(env)  # keep the DNS guard in the child
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == ROOT / "models" / "__init__.py"


def test_the_frontier_index_is_in_hand_out_order(engine: Engine) -> None:
    """A claim walks ``ix_urls_frontier`` (priority DESC) instead of sorting every queued URL:
    SQLite's batch migrations once re-created it without DESC (fixed by revision 0005)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sql_text = conn.execute(
                text("select sql from sqlite_master where name = 'ix_urls_frontier'")
            ).scalar_one()
            plan = conn.execute(
                text(
                    "explain query plan select id from urls where state = 'queued' "
                    "order by priority desc, depth, id limit 10"
                )
            ).all()
            assert "TEMP B-TREE" not in " ".join(str(row[-1]) for row in plan)
        else:
            sql_text = conn.execute(
                text(
                    "select indexdef from pg_indexes where indexname = 'ix_urls_frontier'"
                    " and schemaname = current_schema()"  # other runs' schemas have one too
                )
            ).scalar_one()
    assert "priority DESC" in sql_text
