"""``crawler warc``: a real crawl with keep_html, exported and read back with warcio."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler.commands.cli import main
from tests.crawlkit import ROOT, crawl
from tests.fetch.test_codings import ENCODERS, Encoded
from tests.mockserver import (
    Binary,
    Gzip,
    NotFound,
    Page,
    Redirect,
    SiteServer,
    generate_site,
    loopback_hosts,
)
from tests.store import test_db

GZ_BODY = "<html><head><title>gz</title></head><body>zipped \u00fc body</body></html>"


@pytest.fixture(scope="module")
def site_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A crawl of two hosts with keep_html: HTML pages, a gzip page, a redirect, a 404, a 500,
    a binary file (the last three are fetched but have no stored body)."""
    tmp = tmp_path_factory.mktemp("warc")
    with SiteServer(hosts=loopback_hosts(2)) as srv:
        gen = generate_site(srv.hosts, 12, port=srv.port, site=srv.site, seed=3)
        gen.add_linked("/gz.html", Gzip(GZ_BODY))
        for coding, encode in ENCODERS.items():  # issue 15: brotli and zstd
            gen.add_linked(f"/{coding}.html", Encoded(encode(GZ_BODY.encode()), coding))
        gen.add_linked("/moved", Redirect("/target.html"))
        srv.site.add("/target.html", Page("<title>target</title><p>moved here</p>"))
        gen.add_linked("/missing.html", NotFound(), from_path="/p/2.html")
        gen.add_linked("/broken", Page("boom", status=500))
        gen.add_linked("/file.pdf", Binary(2000, "application/pdf"))
        status = crawl(tmp, gen.root_urls, settings={"store": {"keep_html": True}})
    assert status == 0
    return tmp / "crawl.db"


def _stored(db: Path) -> dict[str, tuple[int, bytes, datetime]]:
    """final_url -> (status, decoded body, fetched_at) of every stored body, straight from SQL."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT f.final_url, f.status_code, b.body, f.fetched_at "
            "FROM bodies b JOIN fetches f ON f.id = b.fetch_id"
        ).fetchall()
    finally:
        con.close()
    out = {}
    for url, status, body, fetched_at in rows:
        assert url not in out, f"two stored bodies for {url}: the test assumes one"
        when = datetime.fromisoformat(fetched_at).replace(tzinfo=UTC)
        out[url] = (status, zlib.decompress(body), when)
    return out


def _records(path: Path) -> list[Any]:
    """(type, WARC headers, HTTP headers, payload) of every record, read with warcio."""
    with path.open("rb") as f:
        return _read(f)


def _read(stream: Any) -> list[Any]:
    out = []
    for rec in ArchiveIterator(stream):
        payload = rec.content_stream().read()
        out.append((rec.rec_type, rec.rec_headers, rec.http_headers, payload))
    return out


def _export(db: Path, out: Path, *extra: str) -> int:
    return main(["warc", "--db", str(db), "-o", str(out), "-q", *extra])


def test_every_stored_body_is_a_response_record(site_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "crawl.warc.gz"
    assert _export(site_db, out) == 0
    records = _records(out)
    stored = _stored(site_db)
    assert len(stored) > 20

    kind, info_headers, _, info = records[0]
    assert kind == "warcinfo"
    assert info_headers.protocol == "WARC/1.1"
    assert b"software: crawler/" in info

    responses = records[1:]
    assert all(r[0] == "response" for r in responses)
    assert len(responses) == len(stored)
    seen = {}
    for _, warc_headers, http_headers, payload in responses:
        assert warc_headers.protocol == "WARC/1.1"
        uri = warc_headers.get_header("WARC-Target-URI")
        seen[uri] = (
            int(http_headers.get_statuscode()),
            payload,
            datetime.fromisoformat(warc_headers.get_header("WARC-Date").replace("Z", "+00:00")),
        )
        assert http_headers.get_header("Content-Length") == str(len(payload))
        assert http_headers.get_header("Content-Encoding") is None
        assert http_headers.get_header("Transfer-Encoding") is None
        assert http_headers.get_header("Content-Type").startswith("text/html")
        assert http_headers.statusline == "200 OK"
    assert seen == stored


def test_bodies_are_decoded_and_redirects_keep_the_final_url(site_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "crawl.warc.gz"
    assert _export(site_db, out) == 0
    by_uri = {r[1].get_header("WARC-Target-URI"): r for r in _records(out)[1:]}
    gz = next(r for uri, r in by_uri.items() if uri.endswith("/gz.html"))
    assert gz[3] == GZ_BODY.encode()  # decoded: what the crawler stored, not the gzip bytes
    assert gz[2].get_header("Content-Length") == str(len(GZ_BODY.encode()))
    for coding in ENCODERS:  # br and zstd too: decoded bytes, and no header claiming otherwise
        rec = next(r for uri, r in by_uri.items() if uri.endswith(f"/{coding}.html"))
        assert rec[3] == GZ_BODY.encode(), coding
        assert rec[2].get_header("Content-Encoding") is None, coding
    # The redirect's response is recorded under the URL that answered.
    assert any(uri.endswith("/target.html") for uri in by_uri)
    assert not any(uri.endswith("/moved") for uri in by_uri)
    # Not stored: 4xx/5xx bodies and non-HTML files.
    for path in ("/missing.html", "/broken", "/file.pdf"):
        assert not any(uri.endswith(path) for uri in by_uri)


def _warcio_cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("warcio")
    cmd = (
        [str(script)]
        if script.is_file()
        else [sys.executable, "-c", "import sys; from warcio.cli import main; sys.exit(main())"]
    )
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, check=False)


def test_warcio_index_and_check_read_the_file(site_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "crawl.warc.gz"
    assert _export(site_db, out) == 0
    index = _warcio_cli("index", "-f", "warc-type,warc-target-uri,http:status", str(out))
    assert index.returncode == 0, index.stderr
    lines = [json.loads(line) for line in index.stdout.splitlines()]
    stored = _stored(site_db)
    assert lines[0]["warc-type"] == "warcinfo"
    assert {(e["warc-target-uri"], int(e["http:status"])) for e in lines[1:]} == {
        (url, status) for url, (status, _, _) in stored.items()
    }
    assert len(lines) == 1 + len(stored)
    check = _warcio_cli("check", "-v", str(out))  # block and payload digests verify
    assert check.returncode == 0, check.stdout + check.stderr
    assert "digest pass" in check.stdout


def test_one_crawl_only_and_uncompressed_output(site_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "run1.warc"
    assert _export(site_db, out, "--crawl", "1") == 0
    assert out.read_bytes().startswith(b"WARC/1.1\r\n")  # .warc: not gzipped
    assert len(_records(out)) == 1 + len(_stored(site_db))


def test_unknown_crawl_is_a_clear_usage_error(
    site_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "none.warc.gz"
    assert _export(site_db, out, "--crawl", "99") == 2
    assert "no stored responses in crawl 99" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_stdout_through_the_cli(site_db: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crawler", "warc", "--db", str(site_db), "-o", "-"],
        capture_output=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    records = _read(io.BytesIO(proc.stdout))
    assert [r[0] for r in records[:2]] == ["warcinfo", "response"]
    assert len(records) == 1 + len(_stored(site_db))


def test_database_without_bodies_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SiteServer() as srv:
        gen = generate_site(srv.hosts, 3, port=srv.port, site=srv.site)
        assert crawl(tmp_path, gen.root_urls) == 0  # keep_html is off by default
    capsys.readouterr()
    out = tmp_path / "crawl.warc.gz"
    assert _export(tmp_path / "crawl.db", out) == 2
    err = capsys.readouterr().err
    assert "no stored responses in this database" in err
    assert "keep_html = true" in err
    assert not out.exists()


pg_url = test_db.pg_url  # a fresh PostgreSQL schema (fails in CI when the server is down)


@pytest.mark.postgres
def test_postgresql_database(pg_url: str, tmp_path: Path) -> None:
    """The same export from PostgreSQL: a server-side cursor in a read-only transaction."""
    with SiteServer() as srv:
        gen = generate_site(srv.hosts, 5, port=srv.port, site=srv.site)
        gen.add_linked("/gz.html", Gzip(GZ_BODY))
        settings = {"store": {"keep_html": True}}
        assert crawl(tmp_path, gen.root_urls, "--db", pg_url, settings=settings) == 0
    out = tmp_path / "pg.warc.gz"
    assert main(["warc", "--db", pg_url, "-o", str(out), "-q"]) == 0
    records = _records(out)
    uris = {r[1].get_header("WARC-Target-URI"): r[3] for r in records[1:]}
    assert set(uris) == gen.expected_urls
    assert uris[gen.url("/gz.html")] == GZ_BODY.encode()
