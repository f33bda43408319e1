"""``crawler report``: a real crawl turned into one HTML file, checked as text and in chromium."""

from __future__ import annotations

import html
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from crawler.commands.cli import main
from tests.crawlkit import crawl
from tests.mockserver import (
    FailThenSucceed,
    NotFound,
    Page,
    Redirect,
    SiteServer,
    Slow,
    generate_site,
    loopback_hosts,
)
from tests.store import test_db

HOSTILE_TITLE = "<script>alert('pwned')</script><img src=x onerror=alert(2)> & \"quoted\""
CHARTS = ("Status codes", "Fetches over time", "Response times", "Depth", "Errors by kind")
CHARTS += ("Errors by host",)


@pytest.fixture(scope="module")
def site_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three hosts with a slow page whose title is hostile markup, a 404 linked from two pages,
    a 500 that is retried for good, a 503 that succeeds on retry, a redirect loop."""
    tmp = tmp_path_factory.mktemp("report")
    with SiteServer(hosts=loopback_hosts(3)) as srv:
        gen = generate_site(srv.hosts, 15, port=srv.port, site=srv.site, seed=7)
        page = f"<html><head><title>{html.escape(HOSTILE_TITLE)}</title></head><body>x</body>"
        gen.add_linked("/hostile.html", Slow(1.0, Page(page)))
        gen.add_linked("/missing.html", NotFound(), from_path="/p/3.html")
        gen.add_linked("/missing.html", NotFound(), from_path="/p/4.html")
        gen.add_linked("/boom", Page("boom", status=500), host=srv.hosts[1])
        gen.add_linked("/flaky.html", FailThenSucceed(1, Page("<title>ok</title>"), status=503))
        gen.add_linked("/loop", Redirect("/loop"), host=srv.hosts[2], expected=False)
        status = crawl(tmp, gen.root_urls, settings={"store": {"keep_html": True}})
    assert status == 0
    return tmp / "crawl.db"


@pytest.fixture(scope="module")
def report(site_db: Path) -> Path:
    out = site_db.with_name("report.html")
    assert main(["report", "--db", str(site_db), "-o", str(out), "-q"]) == 0
    return out


def _count(db: Path, sql: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def test_the_report_has_every_chart_and_table(report: Path, site_db: Path) -> None:
    text = report.read_text(encoding="utf-8")
    for title in CHARTS:
        assert f"<h2>{title}</h2>" in text
    assert text.count('<svg class="chart"') == len(CHARTS)
    assert "<h2>Top broken links</h2>" in text
    assert "<h2>Slowest pages</h2>" in text
    assert text.count("<table") == 3  # crawl runs, broken links, slowest pages
    # The figures are the database's.
    fetches = _count(site_db, "SELECT count(*) FROM fetches")
    assert f"<b>{fetches}</b><span>fetches</span>" in text
    n404 = _count(site_db, "SELECT count(*) FROM fetches WHERE status_code = 404")
    assert f"<title>HTTP 404: {n404}</title>" in text
    errors = _count(site_db, "SELECT count(*) FROM errors")
    assert f"<b>{errors}</b><span>error rows</span>" in text
    for kind in ("http_status", "redirect"):
        assert f">{kind}</text>" in text  # a bar of "errors by kind"


def _table(text: str, heading: str) -> str:
    start = text.index(f"<h2>{heading}</h2>")
    return text[start : text.index("</table>", start)]


def test_broken_links_come_with_their_referrers(report: Path, site_db: Path) -> None:
    broken = _table(report.read_text(encoding="utf-8"), "Top broken links")
    rows = broken.split("<tr>")[2:]  # after the heading row
    first = rows[0]  # linked from two pages: the most linked-to comes first
    assert "/missing.html</a>" in first
    assert "HTTP 404 Not Found" in first
    assert "/p/3.html</a>" in first
    assert "/p/4.html</a>" in first
    assert any("/boom</a>" in r and "HTTP 500 Internal Server Error" in r for r in rows)
    # A redirect loop never got an answer: its error message is the problem.
    assert any("/loop</a>" in r and "redirect:" in r for r in rows)
    assert not any("/flaky.html" in r for r in rows)  # succeeded on retry: not broken


def test_slowest_pages_and_a_hostile_title_is_only_text(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    slowest = _table(text, "Slowest pages")
    first = slowest.split("<tr>")[2]
    assert "/hostile.html</a>" in first
    assert html.escape(HOSTILE_TITLE) in first
    assert "alert('pwned')</script>" not in text
    assert "onerror=alert" not in text.replace(html.escape("onerror=alert"), "")
    assert text.count("<script") == 1  # the report's own sorting script, inline
    assert "<img" not in text


def test_the_report_references_nothing_outside_itself(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    for tag in ("<link", "<img", "<iframe", "<object", "<embed", "<video", "<audio", "<source"):
        assert tag not in text.lower(), tag
    assert "@import" not in text
    assert "url(" not in text
    assert not re.search(r"<script[^>]*\ssrc=", text, re.IGNORECASE)
    # Every src=/href= is on an <a> (a link to a crawled page, followed only on a click).
    for match in re.finditer(r"<(\w+)[^<>]*\s(?:src|href)\s*=", text, re.IGNORECASE):
        assert match.group(1).lower() == "a", match.group(0)
    for match in re.finditer(r'<a href="([^"]*)"', text):
        assert match.group(1).startswith("http://127.0.0."), match.group(1)


def test_unknown_crawl_is_a_usage_error(
    site_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    assert main(["report", "--db", str(site_db), "--crawl", "42", "-o", str(out), "-q"]) == 2
    assert "no crawl 42" in capsys.readouterr().err
    assert not out.exists()


def test_one_crawl_and_an_empty_database_still_make_a_page(site_db: Path, tmp_path: Path) -> None:
    one = tmp_path / "one.html"
    assert main(["report", "--db", str(site_db), "--crawl", "1", "-o", str(one), "-q"]) == 0
    assert "crawl 1 ·" in one.read_text(encoding="utf-8")
    empty_db = tmp_path / "empty.db"
    assert main(["db", "upgrade", "--db", str(empty_db), "-q"]) == 0
    empty = tmp_path / "empty.html"
    assert main(["report", "--db", str(empty_db), "-o", str(empty), "-q"]) == 0
    text = empty.read_text(encoding="utf-8")
    assert "nothing to show" in text
    assert "No broken links." in text


# --------------------------------------------------------------------------- in a real browser


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI installs it: see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def _screenshot(page: Path, png: Path, tmp: Path) -> str:
    """Render ``page`` in headless chromium, save a screenshot; return chromium's stderr."""
    proc = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={png}",
            "--window-size=1280,2000",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={**os.environ, "HOME": str(tmp)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def _console_lines(stderr: str) -> list[str]:
    """The page's console messages (chromium logs them as INFO:CONSOLE) and uncaught errors."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_the_console_check_catches_a_script_error(tmp_path: Path) -> None:
    """The check below is not vacuous: a page that throws is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><p>x</p><script>undefinedFunction()</script>", "utf-8")
    stderr = _screenshot(page, tmp_path / "bad.png", tmp_path)
    assert any("Uncaught" in line for line in _console_lines(stderr)), stderr[-3000:]


def test_renders_in_headless_chromium_without_console_errors(report: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    stderr = _screenshot(report, png, tmp_path)
    assert _console_lines(stderr) == [], stderr[-3000:]
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2000)
    assert len(data) > 50_000  # charts and tables, not a blank page


pg_url = test_db.pg_url  # a fresh PostgreSQL schema (fails in CI when the server is down)


@pytest.mark.postgres
def test_postgresql_database(pg_url: str, tmp_path: Path) -> None:
    """The same queries run on PostgreSQL (GROUP BY of a CASE, booleans, OFFSET)."""
    with SiteServer() as srv:
        gen = generate_site(srv.hosts, 5, port=srv.port, site=srv.site)
        gen.add_linked("/missing.html", NotFound())
        gen.add_linked("/boom", Page("boom", status=500))
        assert crawl(tmp_path, gen.root_urls, "--db", pg_url) == 0
    out = tmp_path / "pg.html"
    assert main(["report", "--db", pg_url, "-o", str(out), "-q"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.count('<svg class="chart"') == len(CHARTS)
    broken = _table(text, "Top broken links")
    assert "HTTP 404 Not Found" in broken
    assert "HTTP 500 Internal Server Error" in broken
    assert f"<b>{len(gen.expected_urls)}</b><span>fetches</span>" in text  # 404 and 500 too
