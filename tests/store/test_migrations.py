"""Each migration keeps the data it finds: upgrade a populated database revision by revision."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command

from crawler.store.db import _alembic_config, head_revision, make_engine, upgrade


def _upgrade_to(db: Path, revision: str) -> None:
    engine = make_engine(str(db))
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    engine.dispose()


def test_0001_to_head_keeps_every_row_and_the_view(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _upgrade_to(db, "0001")
    con = sqlite3.connect(db)
    con.executescript(
        """
        INSERT INTO crawls (id, started_at, status, settings)
            VALUES (1, '2026-01-01 00:00:00', 'finished', '{}');
        INSERT INTO hosts (id, host) VALUES (1, 'http://a.example:80');
        INSERT INTO urls (id, url, host_id, depth, state, first_seen_at)
            VALUES (1, 'http://a.example/', 1, 0, 'done', '2026-01-01 00:00:00'),
                   (2, 'http://a.example/b', 1, 1, 'queued', '2026-01-01 00:00:00');
        INSERT INTO fetches
            (url_id, crawl_id, fetched_at, status_code, final_url, elapsed_ms, title)
            VALUES (1, 1, '2026-01-01 00:00:01', 200, 'http://a.example/', 5, 'Home');
        INSERT INTO links (src_url_id, dst_url_id, first_seen_at, last_seen_at)
            VALUES (1, 2, '2026-01-01 00:00:01', '2026-01-01 00:00:01');
        """
    )
    con.commit()
    con.close()

    engine = make_engine(str(db))
    upgrade(engine)
    engine.dispose()

    con = sqlite3.connect(db)
    try:
        assert con.execute("select version_num from alembic_version").fetchone() == (
            head_revision(),
        )
        assert con.execute(
            "select id, url, state, kind, lastmod from urls order by id"
        ).fetchall() == [
            (1, "http://a.example/", "done", "page", None),
            (2, "http://a.example/b", "queued", "page", None),
        ]
        assert con.execute("select url, title, status_code from pages").fetchall() == [
            ("http://a.example/", "Home", 200)
        ]
        assert con.execute("select count(*) from links").fetchone() == (1,)
        indexes = {r[0] for r in con.execute("select name from sqlite_master where type='index'")}
        assert {"ix_urls_frontier", "ix_urls_host_id_state", "ix_urls_next_fetch_at"} <= indexes
        assert con.execute("pragma integrity_check").fetchone() == ("ok",)
        assert con.execute("pragma foreign_key_check").fetchall() == []
    finally:
        con.close()


def test_downgrade_to_0001_and_back(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    _upgrade_to(db, "head")
    engine = make_engine(str(db))
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    engine.dispose()
    con = sqlite3.connect(db)
    cols = {r[1] for r in con.execute("pragma table_info(urls)")}
    con.close()
    assert {"kind", "lastmod", "changefreq"} <= cols
