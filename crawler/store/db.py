"""Open the database: engine creation (SQLite pragmas, PostgreSQL) and Alembic migrations.

A crawl runs ``upgrade`` when it opens the database, so users never run migrations by hand;
``python -m crawler db upgrade`` does the same explicitly. Before touching a file, this module
checks it is ours: a file that is not SQLite, a SQLite database with foreign tables, or one
migrated by a newer version of the crawler is refused with :class:`DatabaseError`, never altered.

A SQLite path is the file's name, never URL syntax (``run#1.db``, ``a%20b.db``): the engine gets
it inside a URL object. The database is in WAL mode while anything has it open, and the last
connection to close switches it back to a rollback journal, so a finished crawl is one file
(see ``_on_sqlite_close``). Messages show a database URL with its password masked
(:func:`masked`); a URL we cannot use or a server we cannot reach is one line, exit status 2.

Every run opens the database, and nearly every time it is already at the latest revision. So
:func:`upgrade` first reads ``alembic_version`` with one query and compares it with
:data:`HEAD_REVISION`; only a database that is new, older, or anything else unexpected goes
through Alembic, whose import and script loading cost more than a small crawl.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from crawler.errors import DatabaseError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 30_000
HEAD_REVISION = "0005"
"""The latest revision in ``migrations/versions``; ``tests/commands/test_startup.py`` checks it
is."""


def database_url(db: str) -> str:
    """A plain path means SQLite; anything with ``://`` is a SQLAlchemy URL.

    For a path the result is ``sqlite:///`` and the path as it is, unescaped: good for
    :func:`sqlite_file` and for messages, but never to be parsed as a URL (``%20``, ``?``
    would change its meaning): :func:`engine_url` builds the URL object for the engine."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().absolute()}"


def is_sqlite(db: str) -> bool:
    return database_url(db).startswith("sqlite")


def sqlite_file(db: str) -> Path | None:
    """The file a SQLite ``db`` names, exactly (``run#1.db``, ``a%20b.db``, ``a?b.db`` are
    file names, not URL syntax); None for an in-memory database or one that is not SQLite."""
    if "://" not in db:
        return Path(db).expanduser().absolute()
    if not is_sqlite(db):
        return None
    try:
        database = make_url(db).database
    except ArgumentError:
        return None
    if not database or database == ":memory:":
        return None
    return Path(database)


def engine_url(db: str) -> URL:
    """The URL object for ``create_engine``: a path goes in as the database *name*, so no
    character of it is read as URL syntax."""
    if "://" not in db:
        return URL.create("sqlite", database=str(sqlite_file(db)))
    return make_url(db)


def masked(db: str) -> str:
    """``db`` for a message: a URL with its password as ``***``; a path as given."""
    if "://" not in db:
        return db
    try:
        return make_url(db).render_as_string(hide_password=True)
    except ArgumentError:
        # Not parseable as a URL: still hide whatever sits between "user:" and "@".
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", db)


def _check_sqlite_file(path: Path) -> None:
    if path.is_dir():
        raise DatabaseError(f"database '{path}' is a directory")
    if path.exists():
        try:
            with path.open("rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise DatabaseError(f"cannot read database '{path}': {exc.strerror}") from exc
        if head and head != SQLITE_MAGIC:
            raise DatabaseError(f"'{path}' is not a SQLite database; refusing to touch it")
        if not _writable(path.parent) or not _writable(path):
            # SQLite would say "unable to open database file" or "attempt to write a readonly
            # database"; WAL mode needs to create -wal and -shm files next to the database.
            raise DatabaseError(
                f"cannot write database '{path}': it or its directory '{path.parent}' is read-only"
            )
    elif not path.parent.is_dir():
        raise DatabaseError(f"cannot create database '{path}': no such directory '{path.parent}'")
    elif not _writable(path.parent):
        raise DatabaseError(
            f"cannot create database '{path}': directory '{path.parent}' is read-only"
        )


def _writable(path: Path) -> bool:
    """``access(2)`` W_OK: false for a read-only mount even for root, and for missing rights."""
    return os.access(path, os.W_OK)


def _on_sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def _on_sqlite_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # WAL lets users query while the writer commits; NORMAL is durable across process crashes
    # (not power loss) in WAL mode, which is the trade every embedded crawler makes.
    # The driver's own transaction handling skips DDL (a failed migration would leave half a
    # schema behind): turn it off, and let the "begin" listener emit BEGIN for every transaction.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def _on_sqlite_close(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    """Leave a database that nobody has open as one self-contained file: the last connection
    to close switches it out of WAL (a checkpoint, then the -wal and -shm files are removed,
    and the header says "rollback journal"), so a reader that cannot write, or a copy of the
    file, needs nothing beside it. While any other connection is open, in this process or
    another, SQLite refuses at once (busy_timeout 0) and the database stays in WAL mode; the
    next connection of a crawl switches it back to WAL."""
    try:
        dbapi_conn.execute("PRAGMA busy_timeout = 0")
        dbapi_conn.execute("PRAGMA journal_mode = DELETE").fetchall()
    except sqlite3.Error:
        pass  # others have it open: they, or a later crawl, leave it as it should be


def make_engine(db: str) -> Engine:
    """Create the engine for ``db`` (a path or a URL), after checking a SQLite file is ours."""
    try:
        url = engine_url(db)
        if url.get_backend_name() == "sqlite":
            path = sqlite_file(db)
            if path is not None:
                _check_sqlite_file(path)
            engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
            )
            event.listen(engine, "connect", _on_sqlite_connect)
            event.listen(engine, "begin", _on_sqlite_begin)
            if path is not None:
                event.listen(engine, "close", _on_sqlite_close)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ModuleNotFoundError) as exc:
        raise unusable(db, exc) from exc


def unusable(db: str, exc: Exception) -> DatabaseError:
    """The one-line error for a database URL we cannot use (malformed, unknown dialect, driver
    missing), with its password masked."""
    if isinstance(exc, ModuleNotFoundError):
        return DatabaseError(
            f"cannot use database '{masked(db)}': driver not installed ({exc.name}); "
            "for PostgreSQL: pip install 'crawler[postgres]'"
        )
    return DatabaseError(f"cannot use database '{masked(db)}': {first_line(exc)}")


def first_line(exc: BaseException) -> str:
    """The first line of a driver's message (psycopg adds "Is the server running...?" lines)."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(orig).strip().splitlines()
    return lines[0].strip() if lines else type(orig).__name__


def unreachable(db: str, exc: Exception) -> DatabaseError:
    """The one-line error for a database that cannot be opened (server down, wrong password,
    no such database): bad input like a missing file, exit status 2, password masked."""
    return DatabaseError(f"cannot open database '{masked(db)}': {first_line(exc)}")


def include_name(name: str | None, type_: str, _parents: Any) -> bool:
    """For autogenerate: SQLite's FTS5 index tables are ours but not models (see 0004)."""
    return not (type_ == "table" and name is not None and name.startswith("fetches_fts"))


def _load_alembic() -> None:
    """Import Alembic with Mako's pygments plugin hidden. Alembic imports Mako to write new
    revision files, which the crawler never does, and Mako imports pygments (when installed) to
    colour its HTML error pages: a third of Alembic's import time for nothing. Without the
    plugin Mako uses its own plain-text fallback."""
    plugin = "mako.ext.pygmentplugin"
    if "alembic.command" in sys.modules or plugin in sys.modules:
        return
    sys.modules[plugin] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import alembic.command  # noqa: F401
    finally:
        del sys.modules[plugin]


def _alembic_config() -> AlembicConfig:
    _load_alembic()
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("migrations")))
    return cfg


def head_revision() -> str:
    """The revision :func:`upgrade` brings a database to."""
    return HEAD_REVISION


def _stored_revisions(engine: Engine) -> list[str] | None:
    """The rows of ``alembic_version``, or None when they cannot be read (no such table).

    A SQLite file is read through a plain DBAPI connection: the engine's connect hook switches
    it to WAL, which rewrites the header of a file that may turn out not to be ours. An error
    connecting to PostgreSQL is raised: the slow path would only meet it again."""
    query = "SELECT version_num FROM alembic_version"
    if engine.dialect.name == "sqlite":
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        try:
            raw = engine.dialect.connect(*cargs, **cparams)
            try:
                cursor = raw.cursor()
                cursor.execute(query)
                return [row[0] for row in cursor.fetchall()]
            finally:
                raw.close()
        except sqlite3.Error:
            return None
    with engine.connect() as conn:
        try:
            return [row[0] for row in conn.exec_driver_sql(query)]
        except DBAPIError:
            return None


def is_at_head(engine: Engine) -> bool:
    """True when the database is certainly ours and at :data:`HEAD_REVISION`: nothing to do.
    False for anything else (a new file, an older or unknown revision, no such table), which
    :func:`upgrade` then checks and migrates through Alembic."""
    return _stored_revisions(engine) == [HEAD_REVISION]


def _check_ours(engine: Engine) -> None:
    """Refuse databases we would damage: foreign tables, or a revision we do not know."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from models import metadata

    script = ScriptDirectory.from_config(_alembic_config())
    # Look at a SQLite file through a plain connection: the engine's connect hook switches it to
    # WAL, which rewrites the header of a file we may be about to refuse.
    sqlite = engine.dialect.name == "sqlite"
    probe = create_engine(engine.url, poolclass=NullPool) if sqlite else engine
    try:
        with probe.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        if probe is not engine:
            probe.dispose()
    if current is None:
        ours = set(metadata.tables) | {"alembic_version"}
        foreign = tables - ours - {"sqlite_sequence"}
        if foreign:
            names = ", ".join(sorted(foreign)[:5])
            raise DatabaseError(
                f"'{engine.url.render_as_string(hide_password=True)}' is not a crawler database "
                f"(it has other tables: {names}); refusing to touch it"
            )
        return
    try:
        script.get_revision(current)
    except Exception as exc:
        raise DatabaseError(
            f"database revision {current} is newer than this crawler knows "
            f"(head {script.get_current_head()}): upgrade the crawler; the database was not changed"
        ) from exc


def upgrade(engine: Engine) -> None:
    """Bring the schema to the latest revision (idempotent; serialized on PostgreSQL)."""
    try:
        if is_at_head(engine):
            return
        _migrate(engine)
    except DBAPIError as exc:
        raise unreachable(engine.url.render_as_string(hide_password=True), exc) from exc


def _migrate(engine: Engine) -> None:
    """Check the database is ours, then run Alembic's ``upgrade head`` on it."""
    _load_alembic()
    from alembic import command

    _check_ours(engine)
    cfg = _alembic_config()
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Batch mode rebuilds tables that others reference: SQLite's documented recipe
            # is foreign keys off (only possible outside a transaction), then a check.
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise DatabaseError("migration left rows that break foreign keys")
        finally:
            if sqlite:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]


def open_database(db: str) -> Engine:
    """The one entry point the CLI uses: check, create the engine, migrate."""
    engine = make_engine(db)
    upgrade(engine)
    return engine
