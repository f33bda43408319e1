"""Security: what the crawler may touch, what it may write, and what it must never reveal.

- Only http and https ever reach a socket: seeds, links and redirects to other schemes are
  refused before any connection (a raw TCP sentinel counts connections on their port).
- Private-network links are not followed from public pages: ``test_polite_scope.py``
  (``test_private_address_not_followed_unless_allowed``, ``test_redirect_to_private_host_...``).
- ``query`` cannot write: ``test_tools.py`` covers DML, DDL, PRAGMA writes, VACUUM (INTO), ATTACH
  and stacked statements; the forms it does not list are here.
- ``export`` names cannot escape ``--dir``: ``test_tools.py`` covers ``..``, absolute paths and
  a symlinked directory; a symlinked or dangling target file is here.
- No secret (URL credentials, proxy credentials, the Authorization header they make) appears in
  logs (text and JSON, ``-vv``), ``errors`` rows, or any column of any table.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.crawlkit import (
    FAST,
    ROOT,
    crawl_in_subprocess,
    query,
    run_cli,
    write_seeds,
    write_settings,
)
from tests.mockserver import Page, Redirect, Site, SiteServer, SiteServerFactory
from tests.store import test_db
from tests.test_bad_input import SECRET, text_columns


class Sentinel:
    """A TCP listener on 127.0.0.1 that counts every connection made to it (and answers none)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


@pytest.fixture
def sentinel() -> Iterator[Sentinel]:
    s = Sentinel()
    yield s
    s.close()


def _links(title: str, hrefs: list[str]) -> Page:
    anchors = "".join(f'<a href="{h}">{i}</a>' for i, h in enumerate(hrefs))
    return Page(f"<title>{title}</title>{anchors}")


def test_only_http_and_https_reach_a_socket(
    site_server: SiteServerFactory, sentinel: Sentinel, tmp_path: Path
) -> None:
    s = sentinel.port
    other_schemes = [
        f"ftp://127.0.0.1:{s}/file",
        f"ws://127.0.0.1:{s}/socket",
        f"wss://127.0.0.1:{s}/socket",
        f"gopher://127.0.0.1:{s}/1",
        f"sftp://127.0.0.1:{s}/x",
        f"telnet://127.0.0.1:{s}",
        "file:///etc/passwd",
    ]
    srv = site_server(hosts=["127.0.0.1"])
    srv.site.add("/", _links("root", [*other_schemes, "/to-ftp", "/to-file", "/to-ws"]))
    srv.site.add("/to-ftp", Redirect(f"ftp://127.0.0.1:{s}/redirected"))
    srv.site.add("/to-file", Redirect("file:///etc/passwd"))
    srv.site.add("/to-ws", Redirect(f"ws://127.0.0.1:{s}/redirected"))
    result = crawl_in_subprocess(tmp_path, [*other_schemes, srv.url("/")])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    # The first five bad lines are named, the rest counted (docs/reliability-input.md).
    assert result.stderr.count("not an absolute http(s) URL") == 5
    assert f"... and {len(other_schemes) - 5} more bad lines" in result.stderr
    assert sentinel.connections == 0
    db = tmp_path / "crawl.db"
    assert all(url.startswith("http://") for (url,) in query(db, "select url from urls"))
    kinds = query(db, "select u.url, e.kind from errors e join urls u on u.id = e.url_id")
    assert sorted(kinds) == [
        (srv.url("/to-file"), "redirect"),
        (srv.url("/to-ftp"), "redirect"),
        (srv.url("/to-ws"), "redirect"),
    ]


# --------------------------------------------------------------------------- query, export


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("crawled")
    site = Site()
    site.add("/", Page("<title>home</title><a href='/a'>a</a>"))
    site.add("/a", Page("<title>a</title>"))
    with SiteServer(site) as srv:
        result = crawl_in_subprocess(tmp, [srv.url("/")])
    assert result.returncode == 0, result.stderr
    return tmp / "crawl.db"


def _digest(db: Path) -> str:
    h = hashlib.sha256()
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db}{suffix}")
        if path.exists() and suffix != "-shm":  # -shm is an index readers may rebuild
            h.update(path.read_bytes())
    return h.hexdigest()


WRITES_NOT_IN_TEST_TOOLS = [
    "REPLACE INTO hosts(host) VALUES ('x')",
    "INSERT INTO hosts(host) VALUES ('x') RETURNING id",
    "INSERT OR IGNORE INTO hosts(host) SELECT host FROM hosts",
    "/* just a comment */ DELETE FROM urls",
    "-- a comment\nUPDATE urls SET state = 'queued'",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA writable_schema = ON",
    "PRAGMA foreign_keys = OFF",
    "ANALYZE",
    "REINDEX",
    "CREATE TEMP TABLE t AS SELECT * FROM urls",
    "CREATE TRIGGER t AFTER INSERT ON hosts BEGIN DELETE FROM urls; END",
    "BEGIN IMMEDIATE",
    "SELECT load_extension('/nonexistent/libevil')",
    "SELECT writefile('out.txt', url) FROM urls",
    "PRAGMA wal_checkpoint(TRUNCATE)",
]


@pytest.mark.parametrize("sql", WRITES_NOT_IN_TEST_TOOLS)
def test_query_cannot_write(crawled: Path, sql: str, tmp_path: Path) -> None:
    before = _digest(crawled)
    mode = query(crawled, "pragma journal_mode")
    counts = query(crawled, "select (select count(*) from urls), (select count(*) from hosts)")
    result = run_cli("query", "--db", str(crawled), sql, cwd=tmp_path)
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 2), result.stderr
    if result.returncode == 2:  # refused (or failed) by the query tool, not by argparse
        assert result.stderr.startswith(("crawler: query refused: ", "crawler: query failed: "))
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert _digest(crawled) == before
    assert query(crawled, "select (select count(*) from urls), (select count(*) from hosts)") == (
        counts
    )
    assert query(crawled, "pragma journal_mode") == mode
    assert list(tmp_path.iterdir()) == []


def test_export_never_writes_through_a_symlinked_target(crawled: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    (outdir / "urls.csv").symlink_to(victim)
    (outdir / "dangling.csv").symlink_to(tmp_path / "nowhere" / "new.csv")
    for name in ("urls.csv", "dangling.csv"):
        result = run_cli(
            "export",
            "--db",
            str(crawled),
            "--table",
            "urls",
            "--dir",
            str(outdir),
            "-o",
            name,
            cwd=tmp_path,
        )
        assert result.returncode == 2, (name, result.stderr)
        assert "outside" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert not (tmp_path / "nowhere").exists()


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_proxy_credentials_never_appear(
    site_server: SiteServerFactory, sentinel: Sentinel, tmp_path: Path, fmt: str
) -> None:
    """``HTTP_PROXY=http://user:SECRET@127.0.0.1:PORT`` pointing at a proxy that hangs up:
    every fetch fails, and neither the logs nor the ``errors`` rows nor the database show it."""
    srv = site_server(hosts=["127.0.0.1"])
    srv.site.add("/", Page("<title>home</title>"))
    log_file = tmp_path / "crawl.log"
    proxy = f"http://proxyuser:{SECRET}@127.0.0.1:{sentinel.port}"
    seed = "http://127.0.0.9:1/"  # not the site server: through the proxy, nothing answers
    seed_file = write_seeds(tmp_path / "seed.txt", [seed])
    cfg = write_settings(tmp_path / "settings.toml", FAST, {"fetch": {"retries": 1}})
    result = run_cli(
        "crawl",
        str(seed_file),
        "--db",
        "crawl.db",
        "--config",
        str(cfg),
        "-vv",
        "--log-format",
        fmt,
        "--log-file",
        str(log_file),
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "HTTP_PROXY": proxy, "http_proxy": proxy},
    )
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, result.stderr + result.stdout
    assert sentinel.connections >= 1, "the crawler went through the proxy"
    for where, text in {
        "stderr": result.stderr,
        "stdout": result.stdout,
        "log": log_file.read_text(encoding="utf-8"),
    }.items():
        assert SECRET not in text, where
    db = tmp_path / "crawl.db"
    assert query(db, "select count(*) from errors") != [(0,)]
    leaks = [(t, c) for t, c, v in text_columns(db) if SECRET in v]
    assert leaks == []


def test_no_authorization_header_is_ever_sent_or_stored(
    site_server: SiteServerFactory, tmp_path: Path
) -> None:
    """A credentialed seed is refused (``test_bad_input``), so the crawler never makes an
    ``Authorization`` header of its own; nothing header-like is stored either."""
    srv = site_server(hosts=["127.0.0.1"])
    srv.site.add("/", _links("home", ["/a"]))
    srv.site.add("/a", Page("<title>a</title>"))
    result = crawl_in_subprocess(
        tmp_path,
        [f"http://bob:{SECRET}@127.0.0.1:{srv.port}/", srv.url("/")],
        "-vv",
        settings={"store": {"keep_html": True}},
    )
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stderr
    assert srv.log, "the site was crawled"
    assert all(
        name.lower() not in ("authorization", "proxy-authorization")
        for r in srv.log
        for name in r.headers
    )
    found = [(t, c) for t, c, v in text_columns(tmp_path / "crawl.db") if "Basic " in v]
    assert found == []


def test_credentials_published_on_a_page_are_not_stored(
    site_server: SiteServerFactory, tmp_path: Path
) -> None:
    srv = site_server(hosts=["127.0.0.1"])
    port = srv.port
    srv.site.add("/", _links("home", [f"http://eve:{SECRET}@127.0.0.1:{port}/x", "/r"]))
    srv.site.add("/r", Redirect(f"http://eve:{SECRET}@127.0.0.1:{port}/y"))
    result = crawl_in_subprocess(tmp_path, [srv.url("/")])
    assert result.returncode in (0, 1), result.stderr
    leaks = [(t, c) for t, c, v in text_columns(tmp_path / "crawl.db") if SECRET in v]
    assert leaks == []


pg_url = test_db.pg_url  # a fresh schema per test; fails in CI when the server is down


@pytest.mark.postgres
def test_a_database_password_is_not_stored_in_the_crawls_settings(
    pg_url: str, tmp_path: Path, site_server: SiteServerFactory
) -> None:
    """``crawls.settings`` is read by anyone who can query the database: the ``--db`` URL it
    records must not carry the password (the test server trusts any password)."""
    srv = site_server(hosts=["127.0.0.1"])
    srv.site.add("/", Page("root"))
    db = pg_url.replace("postgres@", f"postgres:{SECRET}@", 1)
    seed_file = tmp_path / "seed.txt"
    seed_file.write_text(srv.url("/") + "\n")
    result = run_cli("crawl", str(seed_file), "--db", db, "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("select settings from crawls")).scalar_one()
    engine.dispose()
    assert SECRET not in json.dumps(stored)
    assert "***@127.0.0.1:5432/test" in json.dumps(stored)
