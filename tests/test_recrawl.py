"""Recrawls against a real site that changes between runs (issue 5's "Done when").

Version 1 of a small site is crawled; the server then switches to version 2 (a changed page, an
unchanged page with ETag support, an unchanged page without validators whose HTML comment and
whitespace rotate, a removed page, a new page, a removed link) and ``recrawl`` runs against it.
Time is never waited for: ``--due-before`` in the future makes URLs due, and SQL moves
``next_fetch_at`` where a test needs a URL due at a given moment.

The SQL queries of docs/recrawl.md are extracted from its code blocks and run here against the
recrawled database, so the doc cannot rot.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crawler.commands.cli import main
from tests import dnsguard
from tests.crawlkit import FAST, ROOT, query, write_seeds, write_settings
from tests.mockserver import ETagPage, NotFound, Page, RequestRecord, SiteServer
from tests.store.test_db import pg_url as pg_url

pytestmark = pytest.mark.timeout(120)

DAY = 86400.0
HOUR = 3600.0
RECRAWL_MD = ROOT / "docs" / "recrawl.md"

# --------------------------------------------------------------------------- the site


def _html(title: str, body: str) -> str:
    return f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"


INDEX_V1 = _html(
    "Index",
    '<a href="/changed.html">Changed</a> <a href="/etag.html">ETag</a> '
    '<a href="/plain.html">Plain</a> <a href="/removed.html">Removed</a>',
)
INDEX_V2 = _html(
    "Index",
    '<a href="/changed.html">Changed</a> <a href="/etag.html">ETag</a> '
    '<a href="/plain.html">Plain</a> <a href="/removed.html">Removed</a> '
    '<a href="/new.html">New</a>',
)
CHANGED_V1 = _html(
    "News",
    '<p>Version one of the news.</p> <a href="/aside.html">Aside</a> '
    '<a href="/index.html">Home</a>',
)
CHANGED_V2 = _html("News", '<p>Version two of the news.</p> <a href="/index.html">Home</a>')
ETAG_BODY = _html(
    "Stable",
    '<p>Stable page with validators.</p> <a href="/index.html">Home</a> '
    '<a href="/plain.html">Plain</a>',
)
ETAG_LAST_MODIFIED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PLAIN_V1 = (
    "<!doctype html><html><head><title>Plain</title>"
    "<script>var renderedAt = 1000;</script></head><body>"
    "<!-- rendered at 2026-11-23T09:00:00Z by node 1 -->"
    "<p>Plain page, no validators.</p><p>Second paragraph.</p>"
    '<a href="/index.html">Home</a></body></html>'
)
PLAIN_V2 = (
    "<!doctype html>\n<html>\n  <head>\n    <title>Plain</title>\n"
    "    <script>var renderedAt = 2000;</script>\n  </head>\n  <body>\n"
    "    <!-- rendered at 2026-11-26T10:11:12Z by node 7 -->\n"
    "    <p>Plain   page,\n       no validators.</p>\n\n    <p>Second\tparagraph.</p>\n"
    '    <a href="/index.html">Home</a>\n  </body>\n</html>\n'
)
ASIDE = _html("Aside", "<p>An aside that never changes.</p>")
REMOVED_V1 = _html("Removed", "<p>This page will be removed.</p>")
NEW = _html("New", "<p>A brand new page.</p>")

PATHS = (
    "/index.html",
    "/changed.html",
    "/etag.html",
    "/plain.html",
    "/removed.html",
    "/aside.html",
)


def serve_v1(srv: SiteServer) -> None:
    site = srv.site
    site.add("/index.html", Page(INDEX_V1))
    site.add("/changed.html", Page(CHANGED_V1))
    site.add("/etag.html", ETagPage(ETAG_BODY, etag="v1", last_modified=ETAG_LAST_MODIFIED))
    site.add("/plain.html", Page(PLAIN_V1))
    site.add("/removed.html", Page(REMOVED_V1))
    site.add("/aside.html", Page(ASIDE))


def serve_v2(srv: SiteServer) -> None:
    site = srv.site
    site.add("/index.html", Page(INDEX_V2))
    site.add("/changed.html", Page(CHANGED_V2))
    site.add("/etag.html", ETagPage(ETAG_BODY, etag="v1", last_modified=ETAG_LAST_MODIFIED))
    site.add("/plain.html", Page(PLAIN_V2))
    site.add("/removed.html", NotFound())
    site.add("/new.html", Page(NEW))


# --------------------------------------------------------------------------- helpers


def schedule_settings(**values: Any) -> dict[str, dict[str, Any]]:
    base = {"default_interval": DAY, "min_interval": HOUR, "max_interval": 30 * DAY}
    return {"schedule": {**base, **values}}


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_main(*args: str) -> Run:
    """``crawler.commands.cli.main`` in-process, with its stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
    return Run(code, out.getvalue(), err.getvalue())


@dataclass
class Workspace:
    tmp: Path
    srv: SiteServer

    @property
    def db(self) -> Path:
        return self.tmp / "crawl.db"

    @property
    def config(self) -> Path:
        return self.tmp / "settings.toml"

    def url(self, path: str) -> str:
        return self.srv.url(path)

    def settings(self, *layers: dict[str, dict[str, Any]]) -> None:
        write_settings(self.config, FAST, *layers)

    def crawl(self) -> Run:
        seeds = write_seeds(self.tmp / "seed.txt", [self.url("/index.html")])
        run = run_main(
            "crawl", str(seeds), "--db", str(self.db), "--config", str(self.config), "-q"
        )
        assert run.code == 0, run
        return run

    def recrawl(self, *extra: str) -> Run:
        return run_main("recrawl", "--db", str(self.db), "--config", str(self.config), "-q", *extra)

    def q(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return query(self.db, sql, *params)

    def url_row(self, path: str) -> dict[str, Any]:
        con = sqlite3.connect(self.db)
        con.row_factory = sqlite3.Row
        try:
            row = con.execute("SELECT * FROM urls WHERE url = ?", (self.url(path),)).fetchone()
        finally:
            con.close()
        assert row is not None, f"{path} is not in urls"
        return dict(row)


def snapshot(src: Path, dst: Path) -> Path:
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()
    return dst


def ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)


def sql_ts(when: dt.datetime) -> str:
    """A timestamp as the crawler stores it in SQLite."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def header(record: RequestRecord, name: str) -> str | None:
    return next((v for k, v in record.headers.items() if k.lower() == name.lower()), None)


def requests_for(log: list[RequestRecord], path: str) -> list[RequestRecord]:
    return [r for r in log if r.path == path]


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


# --------------------------------------------------------------------------- the scenario


@dataclass
class Scenario:
    ws: Workspace
    between: dt.datetime
    """A time after the crawl and before the first recrawl."""
    first_db: Path
    """The database right after the first recrawl."""
    recrawls: list[Run]
    logs: list[list[RequestRecord]]
    """Server requests of each recrawl."""

    def url(self, path: str) -> str:
        return self.ws.url(path)

    def q1(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return query(self.first_db, sql, *params)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Crawl v1 (adaptive, gone_after 2), switch to v2, recrawl three times (2030, 2031, 2032)."""
    tmp = tmp_path_factory.mktemp("recrawl")
    with SiteServer() as srv:
        ws = Workspace(tmp, srv)
        ws.settings(schedule_settings(policy="adaptive", gone_after=2))
        serve_v1(srv)
        ws.crawl()
        time.sleep(0.01)  # `between` strictly after every stored timestamp of the crawl
        between = dt.datetime.now(dt.UTC)
        time.sleep(0.01)
        serve_v2(srv)
        runs, logs = [], []
        for year in (2030, 2031, 2032):
            srv.reset_log()
            run = ws.recrawl("--due-before", f"{year}-01-01T00:00:00")
            assert run.code == 0, run
            runs.append(run)
            logs.append(srv.log)
            if year == 2030:
                first_db = snapshot(ws.db, tmp / "after-first-recrawl.db")
        yield Scenario(ws, between, first_db, runs, logs)


def _latest_fetch(sc: Scenario, path: str) -> dict[str, Any]:
    con = sqlite3.connect(sc.first_db)
    con.row_factory = sqlite3.Row
    try:
        row = con.execute(
            "SELECT f.*, c.command FROM fetches f JOIN urls u ON u.id = f.url_id "
            "JOIN crawls c ON c.id = f.crawl_id WHERE u.url = ? ORDER BY f.id DESC LIMIT 1",
            (sc.url(path),),
        ).fetchone()
    finally:
        con.close()
    assert row is not None, f"no fetch of {path}"
    return dict(row)


def test_etag_page_gets_a_conditional_request_and_a_304(scenario: Scenario) -> None:
    (req,) = requests_for(scenario.logs[0], "/etag.html")
    assert header(req, "If-None-Match") == '"v1"'
    assert header(req, "If-Modified-Since") == "Thu, 01 Jan 2026 00:00:00 GMT"
    assert req.status == 304
    assert req.bytes_sent == 0
    f = _latest_fetch(scenario, "/etag.html")
    assert f["command"] == "recrawl"
    assert (f["status_code"], f["not_modified"], f["changed"]) == (304, 1, 0)
    assert f["content_length"] is None
    assert f["content_hash"] is None
    # The 304 keeps the validators and the hash of the last body.
    con = sqlite3.connect(scenario.first_db)
    try:
        etag, hash_now = con.execute(
            "SELECT etag, content_hash FROM urls WHERE url = ?", (scenario.url("/etag.html"),)
        ).fetchone()
        (hash_before,) = con.execute(
            "SELECT f.content_hash FROM fetches f JOIN urls u ON u.id = f.url_id "
            "WHERE u.url = ? ORDER BY f.id LIMIT 1",
            (scenario.url("/etag.html"),),
        ).fetchone()
    finally:
        con.close()
    assert etag == '"v1"'
    assert hash_now == hash_before is not None


def test_unchanged_page_without_validators_is_not_changed(scenario: Scenario) -> None:
    (req,) = requests_for(scenario.logs[0], "/plain.html")
    assert header(req, "If-None-Match") is None
    assert header(req, "If-Modified-Since") is None
    f = _latest_fetch(scenario, "/plain.html")
    assert (f["status_code"], f["not_modified"], f["changed"]) == (200, 0, 0), (
        "a rotating comment, a script and whitespace must not count as a change"
    )
    a = _latest_fetch(scenario, "/aside.html")
    assert (a["status_code"], a["changed"]) == (200, 0)


def test_changed_page_is_changed(scenario: Scenario) -> None:
    for path in ("/changed.html", "/index.html"):
        f = _latest_fetch(scenario, path)
        assert (f["status_code"], f["not_modified"], f["changed"]) == (200, 0, 1), path


def test_removed_page_fails_then_is_gone_and_no_longer_requested(scenario: Scenario) -> None:
    sc = scenario
    f = _latest_fetch(sc, "/removed.html")
    assert (f["status_code"], f["changed"]) == (404, None)
    errors = sc.q1(
        "SELECT e.kind, e.status_code, e.final FROM errors e JOIN urls u ON u.id = e.url_id "
        "WHERE u.url = ? AND e.crawl_id = ?",
        sc.url("/removed.html"),
        f["crawl_id"],
    )
    assert errors == [("http_status", 404, 1)]
    state, not_found, failures, next_at = sc.q1(
        "SELECT state, not_found, failures, next_fetch_at FROM urls WHERE url = ?",
        sc.url("/removed.html"),
    )[0]
    assert (state, not_found, failures) == ("failed", 1, 1)
    assert ts(next_at) > ts(f["fetched_at"]), "a 404 pushes the next fetch out"
    # gone_after = 2: the second recrawl's 404 makes it gone ...
    assert len(requests_for(sc.logs[1], "/removed.html")) == 1
    row = sc.ws.url_row("/removed.html")
    assert (row["state"], row["not_found"], row["next_fetch_at"]) == ("gone", 2, None)
    # ... and the third recrawl does not ask for it, though the index still links to it.
    assert requests_for(sc.logs[2], "/index.html"), "the third recrawl ran"
    assert requests_for(sc.logs[2], "/removed.html") == []
    assert (
        "gone:               1"
        in run_main("schedule", "--db", str(sc.ws.db), "--config", str(sc.ws.config)).out
    )


def test_new_page_is_fetched(scenario: Scenario) -> None:
    assert len(requests_for(scenario.logs[0], "/new.html")) == 1
    f = _latest_fetch(scenario, "/new.html")
    assert (f["status_code"], f["changed"], f["command"]) == (200, 1, "recrawl")
    (depth,) = scenario.q1("SELECT depth FROM urls WHERE url = ?", scenario.url("/new.html"))[0]
    assert depth == 1


def test_every_fetch_is_a_row(scenario: Scenario) -> None:
    rows = dict(
        scenario.q1(
            "SELECT u.url, count(*) FROM fetches f JOIN urls u ON u.id = f.url_id GROUP BY u.url"
        )
    )
    assert rows == {**{scenario.url(p): 2 for p in PATHS}, scenario.url("/new.html"): 1}
    commands = scenario.q1("SELECT command, status FROM crawls ORDER BY id")
    assert commands == [("crawl", "finished"), ("recrawl", "finished")]


def test_recrawl_summary_has_the_right_numbers(scenario: Scenario) -> None:
    out = scenario.recrawls[0].out
    assert "due:     6 URLs; 3 changed, 3 unchanged (1 answered 304 Not Modified)" in out, out
    assert "pages:   7 fetched, 6 ok, 1 failed" in out, out
    assert "errors:  1 (http_status 1)" in out, out
    # The third recrawl: the gone page is not due.
    third = scenario.recrawls[2].out
    assert "due:     6 URLs; 0 changed, 6 unchanged (1 answered 304 Not Modified)" in third, third


def test_adaptive_intervals_move_the_right_way(scenario: Scenario) -> None:
    intervals = dict(scenario.q1("SELECT url, fetch_interval FROM urls"))
    u = scenario.url
    # The crawl's first fetches compare with nothing: every page starts at default_interval.
    for path in ("/changed.html", "/index.html"):
        assert intervals[u(path)] == pytest.approx(0.8 * DAY), path
    for path in ("/etag.html", "/plain.html", "/aside.html"):
        assert intervals[u(path)] == pytest.approx(1.4 * DAY), path
    assert intervals[u("/new.html")] == pytest.approx(DAY)
    assert intervals[u("/removed.html")] == pytest.approx(DAY), "a 404 keeps the interval"
    for url, fetched, next_at, interval in scenario.q1(
        "SELECT url, last_fetched_at, next_fetch_at, fetch_interval FROM urls WHERE state = 'done'"
    ):
        delta = (ts(next_at) - ts(fetched)).total_seconds()
        assert delta == pytest.approx(interval, abs=5), url


def test_fixed_policy_keeps_default_interval(tmp_path: Path, site_server: Any) -> None:
    ws = Workspace(tmp_path, site_server())
    ws.settings(schedule_settings(policy="fixed", default_interval=2 * DAY))
    serve_v1(ws.srv)
    ws.crawl()
    serve_v2(ws.srv)
    assert ws.recrawl("--due-before", "2030-01-01T00:00:00").code == 0
    done = ws.q(
        "SELECT url, fetch_interval, last_fetched_at, next_fetch_at FROM urls WHERE state = 'done'"
    )
    assert len(done) == 6
    for url, interval, fetched, next_at in done:
        assert interval == 2 * DAY, url
        assert (ts(next_at) - ts(fetched)).total_seconds() == pytest.approx(2 * DAY, abs=5)


def test_removed_links_are_visible_and_304_pages_keep_theirs(scenario: Scenario) -> None:
    removed = scenario.q1(
        """
        SELECT src.url, dst.url FROM links l
        JOIN urls src ON src.id = l.src_url_id JOIN urls dst ON dst.id = l.dst_url_id
        WHERE l.last_seen_at < (SELECT max(f.fetched_at) FROM fetches f
                                WHERE f.url_id = l.src_url_id AND f.status_code < 400)
        """
    )
    assert removed == [(scenario.url("/changed.html"), scenario.url("/aside.html"))]
    etag_links = scenario.q1(
        "SELECT l.last_seen_at, (SELECT max(fetched_at) FROM fetches WHERE url_id = u.id) "
        "FROM links l JOIN urls u ON u.id = l.src_url_id WHERE u.url = ?",
        scenario.url("/etag.html"),
    )
    assert len(etag_links) == 2
    assert all(seen >= fetched for seen, fetched in etag_links), "a 304 saw its links again"


def test_what_changed_since_a_date_is_one_query(scenario: Scenario) -> None:
    rows = scenario.q1(
        """
        SELECT u.url FROM fetches f JOIN urls u ON u.id = f.url_id
        WHERE f.changed = 1 AND f.fetched_at >= ?
          AND EXISTS (SELECT 1 FROM fetches p WHERE p.url_id = f.url_id AND p.id < f.id)
        ORDER BY u.url
        """,
        sql_ts(scenario.between),
    )
    assert [r[0] for r in rows] == sorted(
        [scenario.url("/changed.html"), scenario.url("/index.html")]
    )
    # Without the EXISTS, new pages count as changed too; before the crawl, everything did.
    everything = scenario.q1(
        "SELECT count(DISTINCT url_id) FROM fetches WHERE changed = 1 AND fetched_at >= ?",
        "2000-01-01",
    )
    assert everything == [(7,)]


# --------------------------------------------------------------------------- docs/recrawl.md


def doc_queries() -> dict[str, str]:
    """``-- name`` (the first line of each ```sql block) → the query."""
    text = RECRAWL_MD.read_text(encoding="utf-8")
    out = {}
    for block in re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL):
        first = block.splitlines()[0]
        assert first.startswith("-- "), f"docs/recrawl.md: a sql block without a name: {first}"
        out[first[3:].strip()] = block
    return out


def test_doc_has_at_least_five_named_queries() -> None:
    names = set(doc_queries())
    assert len(names) >= 5
    assert {
        "what changed since Monday",
        "which links were removed",
        "pages gone",
        "pages due next",
        "304 rate per host",
    } <= names


def test_every_doc_query_runs_on_the_recrawled_database(scenario: Scenario) -> None:
    for name, sql in doc_queries().items():
        try:
            scenario.ws.q(sql)
        except sqlite3.Error as exc:
            pytest.fail(f"docs/recrawl.md, query {name!r}: {exc}")


def test_doc_queries_give_the_right_answers(scenario: Scenario) -> None:
    queries = doc_queries()
    u, q = scenario.url, scenario.ws.q

    changed = q(queries["what changed since Monday"])
    assert sorted(r[0] for r in changed) == sorted([u("/changed.html"), u("/index.html")])

    removed = q(queries["which links were removed"])
    assert [(r[0], r[1]) for r in removed] == [(u("/changed.html"), u("/aside.html"))]

    gone = q(queries["pages gone"])
    assert [r[0] for r in gone] == [u("/removed.html")]

    due = q(queries["pages due next"])
    expected = {u(p) for p in PATHS if p != "/removed.html"} | {u("/new.html")}
    assert {r[0] for r in due} == expected
    times = [r[1] for r in due]
    assert times == sorted(times)

    # Recrawls fetched 7 + 7 + 6 URLs; the ETag page answered 304 each time.
    rate = q(queries["304 rate per host"])
    assert [r[1:] for r in rate] == [(20, 3, 15.0)]

    for name in set(queries) - {
        "what changed since Monday",
        "which links were removed",
        "pages gone",
        "pages due next",
        "304 rate per host",
    }:
        assert q(queries[name]), f"docs/recrawl.md, query {name!r}: no rows"


# --------------------------------------------------------------------------- flags


@pytest.fixture
def crawled(tmp_path: Path, site_server: Any) -> Workspace:
    """v1 crawled with the fixed policy (everything due in a day); the server keeps v1."""
    ws = Workspace(tmp_path, site_server())
    ws.settings(schedule_settings(policy="fixed"))
    serve_v1(ws.srv)
    ws.crawl()
    ws.srv.reset_log()
    return ws


def _recrawl_fetches(ws: Workspace) -> int:
    return ws.q(
        "SELECT count(*) FROM fetches f JOIN crawls c ON c.id = f.crawl_id "
        "WHERE c.command = 'recrawl'"
    )[0][0]


def test_limit_recrawls_at_most_n(crawled: Workspace) -> None:
    run = crawled.recrawl("--due-before", "2030-01-01T00:00:00", "--limit", "2")
    assert run.code == 0, run
    assert "due:     2 URLs" in run.out
    assert _recrawl_fetches(crawled) == 2
    assert len(crawled.srv.log) == 2
    # The rest stays due, untouched.
    assert crawled.q("SELECT count(*) FROM urls WHERE state = 'queued'") == [(0,)]


def test_due_before_in_the_past_recrawls_nothing(crawled: Workspace) -> None:
    run = crawled.recrawl("--due-before", "2000-01-01T00:00:00")
    assert run.code == 0, run
    assert "due:     0 URLs" in run.out
    assert _recrawl_fetches(crawled) == 0
    assert crawled.srv.log == []


def test_no_due_before_means_now(crawled: Workspace) -> None:
    run = crawled.recrawl()
    assert run.code == 0, run
    assert "due:     0 URLs" in run.out  # everything was fetched moments ago, due in a day
    with sqlite3.connect(crawled.db) as con:
        con.execute(
            "UPDATE urls SET next_fetch_at = ? WHERE url = ?",
            (sql_ts(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)), crawled.url("/aside.html")),
        )
    con.close()
    run = crawled.recrawl()
    assert "due:     1 URLs" in run.out, run
    assert [r.path for r in crawled.srv.log] == ["/aside.html"]


def test_due_before_with_an_offset_is_honoured(crawled: Workspace) -> None:
    with sqlite3.connect(crawled.db) as con:
        con.execute("UPDATE urls SET next_fetch_at = '2030-01-01 12:00:00.000000'")
    con.close()
    # 13:30 at +02:00 is 11:30 UTC: nothing is due yet (read as UTC, everything would be).
    run = crawled.recrawl("--due-before", "2030-01-01T13:30:00+02:00")
    assert "due:     0 URLs" in run.out, run
    # 14:30 at +02:00 is 12:30 UTC: all six are.
    run = crawled.recrawl("--due-before", "2030-01-01T14:30:00+02:00")
    assert "due:     6 URLs" in run.out, run
    assert _recrawl_fetches(crawled) == 6


@pytest.mark.parametrize("bad", ["yesterday", "2030-13-01", "2030-01-01T25:00"])
def test_bad_due_before_is_a_usage_error(crawled: Workspace, bad: str) -> None:
    run = crawled.recrawl("--due-before", bad)
    assert run.code == 2
    assert run.out == ""
    assert len(run.err.strip().splitlines()) == 1, run.err
    assert "--due-before" in run.err
    assert "ISO 8601" in run.err


def test_recrawl_without_a_crawl_is_a_usage_error(tmp_path: Path) -> None:
    missing = run_main("recrawl", "--db", str(tmp_path / "none.db"))
    assert missing.code == 2
    assert missing.err.strip().splitlines() == [
        f"crawler: nothing to recrawl: no crawl in database '{tmp_path / 'none.db'}'"
    ]
    assert not (tmp_path / "none.db").exists(), "no database is created"
    empty = tmp_path / "empty.db"
    assert run_main("db", "upgrade", "--db", str(empty)).code == 0
    run = run_main("recrawl", "--db", str(empty))
    assert run.code == 2
    assert len(run.err.strip().splitlines()) == 1
    assert "no crawl" in run.err


def test_schedule_counts_match_the_database(crawled: Workspace) -> None:
    now = dt.datetime.now(dt.UTC)
    offsets = {
        "/index.html": -dt.timedelta(minutes=5),  # due now
        "/changed.html": dt.timedelta(minutes=30),  # within the hour
        "/etag.html": dt.timedelta(hours=5),  # within the day
        "/plain.html": dt.timedelta(days=3),  # within the week
        "/removed.html": dt.timedelta(days=20),
        "/aside.html": dt.timedelta(days=20),
    }
    with sqlite3.connect(crawled.db) as con:
        for path, ahead in offsets.items():
            con.execute(
                "UPDATE urls SET next_fetch_at = ? WHERE url = ?",
                (sql_ts(now + ahead), crawled.url(path)),
            )
    con.close()
    run = run_main("schedule", "--db", str(crawled.db), "--config", str(crawled.config))
    assert run.code == 0, run
    shown = {
        label: int(n)
        for label, n in re.findall(r"^(due now|due within an? \w+):\s+(\d+)$", run.out, re.M)
    }
    assert shown == {
        "due now": 1,
        "due within an hour": 2,
        "due within a day": 3,
        "due within a week": 4,
    }, run.out
    for label, ahead in (("due now", 0), ("due within a week", 7 * DAY)):
        (n,) = crawled.q(
            "SELECT count(*) FROM urls WHERE state IN ('done', 'failed') AND next_fetch_at <= ?",
            sql_ts(now + dt.timedelta(seconds=ahead)),
        )[0]
        assert shown[label] == n
    assert "scheduled in all:   6" in run.out
    missing = run_main("schedule", "--db", str(crawled.tmp / "nope.db"))
    assert missing.code == 2
    assert len(missing.err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- long-running


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env["PYTHONPATH"] = str(ROOT)
    return dnsguard.subprocess_env(env)  # keep the DNS guard in the child


def _argv(ws: Workspace, *args: str) -> list[str]:
    return [sys.executable, "-m", "crawler", *args, "--db", str(ws.db), "--config", str(ws.config)]


def popen(ws: Workspace, *args: str) -> subprocess.Popen[str]:
    """The CLI as a subprocess that keeps running (signals, locks)."""
    return subprocess.Popen(
        _argv(ws, *args),
        cwd=ws.tmp,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_args(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a subprocess, to its end."""
    return subprocess.run(
        _argv(ws, *args),
        cwd=ws.tmp,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def finish(proc: subprocess.Popen[str], timeout_s: float = 30) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, out, err


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def lock_holder(ws: Workspace) -> str:
    path = ws.tmp / "crawl.db.lock"
    return path.read_text(encoding="utf-8").strip() if path.exists() else ""


def test_overlapping_runs_are_refused_while_a_recrawl_runs(crawled: Workspace) -> None:
    ws = crawled
    with reaped(popen(ws, "recrawl", "--every", "1h", "-q")) as first:
        holder = wait_for(lambda: lock_holder(ws), 20, "the first recrawl to take the lock")
        assert holder.startswith(f"pid {first.pid} on ")
        assert first.poll() is None

        second = run_args(ws, "recrawl", "-q")
        assert second.returncode != 0
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"pid {first.pid}" in lines[0]
        assert "in use" in lines[0]

        seeds = write_seeds(ws.tmp / "seed.txt", [ws.url("/index.html")])
        crawl = run_args(ws, "crawl", str(seeds), "-q")
        assert crawl.returncode != 0
        lines = crawl.stderr.strip().splitlines()
        assert len(lines) == 1, crawl.stderr
        assert f"pid {first.pid}" in lines[0]

        first.send_signal(signal.SIGINT)
        code, out, err = finish(first)
        assert code == 130, (out, err)
        assert "crawl" in out  # its one pass printed a summary

    assert lock_holder(ws) == "", "the lock file names no holder once released"
    third = run_args(ws, "recrawl", "-q")
    assert third.returncode == 0, third.stderr
    statuses = ws.q("SELECT command, status FROM crawls ORDER BY id")
    assert statuses[0] == ("crawl", "finished")
    assert ("recrawl", "interrupted") in statuses[1:] or ("recrawl", "finished") in statuses[1:]


def test_watch_wakes_for_the_next_due_url(crawled: Workspace) -> None:
    ws = crawled
    due_in = 3.0
    due_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=due_in)
    due_mono = time.monotonic() + due_in
    with sqlite3.connect(ws.db) as con:
        con.execute(
            "UPDATE urls SET next_fetch_at = ? WHERE url = ?",
            (sql_ts(due_at), ws.url("/aside.html")),
        )
    con.close()
    with reaped(popen(ws, "recrawl", "--watch", "-q")) as proc:
        req = wait_for(
            lambda: requests_for(ws.srv.log, "/aside.html"), due_in + 15, "the due URL's fetch"
        )[0]
        assert req.started >= due_mono - 0.5, "fetched before it was due"
        assert req.started <= due_mono + 5, "not fetched within a few seconds of being due"
        assert [r.path for r in ws.srv.log] == ["/aside.html"], "only the due URL"
        time.sleep(0.2)
        assert proc.poll() is None, "--watch keeps running"
        proc.send_signal(signal.SIGINT)
        code, out, err = finish(proc)
    assert code == 130, (out, err)
    (interval_due,) = ws.q("SELECT next_fetch_at FROM urls WHERE url = ?", ws.url("/aside.html"))[0]
    assert ts(interval_due) > due_at + dt.timedelta(hours=23), "scheduled again a day later"


# --------------------------------------------------------------------------- edge cases


def test_a_5xx_keeps_the_validators_for_the_next_conditional_request(
    tmp_path: Path, site_server: Any
) -> None:
    ws = Workspace(tmp_path, site_server())
    ws.settings(schedule_settings(), {"fetch": {"retries": 0}})
    serve_v1(ws.srv)
    ws.crawl()
    ws.srv.site.add("/etag.html", Page("<p>down for maintenance</p>", status=503))
    run = ws.recrawl("--due-before", "2030-01-01T00:00:00")
    assert run.code == 0, run
    row = ws.url_row("/etag.html")
    assert (row["state"], row["failures"], row["etag"]) == ("failed", 1, '"v1"')
    ws.srv.site.add("/etag.html", ETagPage(ETAG_BODY, etag="v1", last_modified=ETAG_LAST_MODIFIED))
    ws.srv.reset_log()
    run = ws.recrawl("--due-before", "2031-01-01T00:00:00")
    (req,) = requests_for(ws.srv.log, "/etag.html")
    assert header(req, "If-None-Match") == '"v1"'
    assert req.status == 304
    row = ws.url_row("/etag.html")
    assert (row["state"], row["failures"]) == ("done", 0)


def test_sitemap_lastmod_after_the_last_fetch_makes_a_url_due(crawled: Workspace) -> None:
    ws = crawled
    with sqlite3.connect(ws.db) as con:
        con.execute(
            "UPDATE urls SET lastmod = ? WHERE url = ?",
            (sql_ts(dt.datetime.now(dt.UTC)), ws.url("/plain.html")),
        )
        con.execute(
            "UPDATE urls SET lastmod = '2000-01-01 00:00:00.000000' WHERE url = ?",
            (ws.url("/aside.html"),),
        )
    con.close()
    assert "due now:            1" in run_main("schedule", "--db", str(ws.db)).out
    run = ws.recrawl()
    assert "due:     1 URLs" in run.out, run
    assert [r.path for r in ws.srv.log] == ["/plain.html"]
    assert "due:     0 URLs" in ws.recrawl().out, "fetched since its lastmod: not due again"


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_db(pg_url: str) -> str:
    """A fresh schema on the test PostgreSQL server: the fixture of tests/store/test_db.py."""
    return pg_url


@pytest.mark.postgres
def test_postgresql_recrawl_lock_refuses_a_second_recrawl(pg_db: str) -> None:
    from sqlalchemy import text

    from crawler.store.db import open_database
    from crawler.store.lock import Busy, exclusive

    first, second = open_database(pg_db), open_database(pg_db)
    try:
        with exclusive(pg_db, first, what="recrawl"):
            with (
                pytest.raises(Busy, match="another recrawl is running"),
                exclusive(pg_db, second, what="recrawl"),
            ):
                pass
            # The holder's session keeps no transaction open while it waits for hours.
            with second.connect() as conn:
                states = (
                    conn.execute(
                        text(
                            "SELECT a.state FROM pg_locks l JOIN pg_stat_activity a "
                            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
                        )
                    )
                    .scalars()
                    .all()
                )
            assert states == ["idle"], states
            # crawl (and workers) share a PostgreSQL database on purpose: not refused.
            with exclusive(pg_db, second, what="crawl"):
                pass
        with exclusive(pg_db, second, what="recrawl"):
            pass
    finally:
        first.dispose()
        second.dispose()
