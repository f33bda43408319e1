"""One crawler process per SQLite database: an exclusive lock beside the file.

SQLite serves one crawling process at a time (a second one would take back the first one's
claimed URLs as if they were left by a dead run). So ``crawl`` and ``recrawl`` hold
``<database>.lock`` with ``flock`` for as long as they run: the kernel releases it when the
process ends, however it ends, so a crash or ``kill -9`` never leaves a stale lock behind. The
file also says who holds it, for the message the second process prints.

On PostgreSQL, where many workers share one database on purpose, ``recrawl`` takes a session
advisory lock instead, so two schedulers never mark the same due URLs twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text

from crawler.errors import CrawlerError
from crawler.store.db import database_url, is_sqlite

RECRAWL_LOCK_KEY = 0x72656372  # "recr"


class Busy(CrawlerError):
    """Another crawler process holds the database."""


def _lock_path(db: str) -> Path:
    return Path(database_url(db).removeprefix("sqlite:///") + ".lock")


@contextlib.contextmanager
def exclusive(db: str, engine: Engine, *, what: str) -> Iterator[None]:
    """Hold the database for one crawling process (``what`` is crawl or recrawl), or raise
    :class:`Busy` naming the process that holds it."""
    if is_sqlite(db):
        with _file_lock(_lock_path(db), db):
            yield
        return
    if what != "recrawl":
        yield  # crawl and workers share a PostgreSQL frontier by design
        return
    with engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": RECRAWL_LOCK_KEY})
        held = bool(got.scalar())
        # A session lock outlives the transaction: end it, so the session does not sit "idle
        # in transaction" for hours (holding back VACUUM, or killed by
        # idle_in_transaction_session_timeout, which would drop the lock unnoticed).
        conn.commit()
        if not held:
            raise Busy(f"another recrawl is running on {engine.url.render_as_string()}")
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RECRAWL_LOCK_KEY})


@contextlib.contextmanager
def _file_lock(path: Path, db: str) -> Iterator[None]:
    """Hold ``path`` with ``flock``, and remove it on the way out, so a finished crawl leaves
    its database as the only file (docs/queries.md, "Reading safely").

    Removing a lock file others may have open is safe only with the usual protocol: whoever
    gets the lock checks that the path still names the file it locked (a holder that was just
    releasing may have unlinked it) and otherwise starts again on the new file.
    """
    while True:
        fd = _locked(path, db)
        try:
            if _names(path, fd):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # locked a file its holder unlinked on release: lock the current one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # while still holding it: the next process makes a new one
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _locked(path: Path, db: str) -> int:
    """An open descriptor of ``path`` holding its exclusive lock, or :class:`Busy`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise Busy(
            f"database '{db}' is in use by {holder}; wait for it to finish, or stop it "
            "(Ctrl-C) and run again"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` is still the file open as ``fd``."""
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)
