"""The SQLite database's lock file: one crawling process at a time, and nothing left behind.

A finished crawl leaves its database as the only file (docs/queries.md, "Reading safely"), so
the lock file is removed on release; the protocol that makes that safe (whoever locks checks
that the path still names the file it locked) is checked here on real files and descriptors.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from crawler.store.lock import Busy, _names, exclusive


def test_a_second_holder_is_refused_and_the_file_goes_with_the_first(tmp_path: Path) -> None:
    db = str(tmp_path / "crawl.db")
    engine = create_engine(f"sqlite:///{db}")
    lock = tmp_path / "crawl.db.lock"
    with exclusive(db, engine, what="crawl"):
        assert lock.read_text().startswith(f"pid {os.getpid()} on ")
        with (
            pytest.raises(Busy, match=f"in use by pid {os.getpid()}"),
            exclusive(db, engine, what="crawl"),
        ):
            pass
        assert lock.exists(), "a refused process must not remove the holder's file"
    assert not lock.exists()
    with exclusive(db, engine, what="crawl"):  # and the next run takes it afresh
        assert lock.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    engine.dispose()


def test_a_lock_on_a_file_its_holder_unlinked_is_not_the_lock(tmp_path: Path) -> None:
    """The race the protocol closes: B opened the file just before A removed it on release;
    B's flock then succeeds on a file nobody else will ever open, so B must start again."""
    path = tmp_path / "crawl.db.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert _names(path, fd)
        path.unlink()
        assert not _names(path, fd)
        path.write_text("")  # a third process made a new one
        assert not _names(path, fd)
    finally:
        os.close(fd)
