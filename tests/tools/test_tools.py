"""The read-only commands (stats, errors, query, export, search) and docs/queries.md, on a real
crawl of a generated loopback site (404s, a redirect, duplicates, keep_text and keep_html on),
made once for the module. Output is checked, not just exit statuses."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import shutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crawler.commands.cli import main
from crawler.tools.query import more_than_one_statement
from tests.crawlkit import ROOT, crawl, query, run_cli
from tests.mockserver import (
    EXTERNAL_HOST,
    NotFound,
    Page,
    Redirect,
    SiteServer,
    generate_site,
    loopback_hosts,
)
from tests.store import test_db

pytestmark = pytest.mark.timeout(120)

pg_schema = test_db.pg_url  # the fixture: a URL to a fresh PostgreSQL schema

QUERIES_MD = ROOT / "docs" / "queries.md"
LONG_PATH = "/" + "very-long-segment-" * 20 + "end.html"
UNIQUE_WORD = "xylophone"
DUPLICATE = (
    "<html><head><title>Copy</title></head><body><h1>Copy</h1><p>same words</p></body></html>"
)
BIG = (
    "<html><head><title>Big</title></head><body><h1>Big</h1><p>"
    + "word " * 4000
    + "</p></body></html>"
)


@dataclass(frozen=True)
class Fixture:
    db: Path
    hosts: tuple[str, str]
    port: int
    missing: str
    """A 404 on the first host, linked from two pages."""
    missing_from: tuple[str, str]
    gone: str
    """A 404 on the second host."""
    moved: str
    """Redirects to /p/7.html."""
    unique: str
    long_url: str
    copies: tuple[str, str]
    big: str

    def url(self, path: str, host: int = 0) -> str:
        return f"http://{self.hosts[host]}:{self.port}{path}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    tmp = tmp_path_factory.mktemp("tools")
    with SiteServer(hosts=loopback_hosts(2)) as srv:
        h0, h1 = srv.hosts
        gen = generate_site(srv.hosts, 10, port=srv.port, seed=11, site=srv.site)
        missing = gen.add_linked("/missing.html", NotFound(), from_path="/p/2.html")
        gen.add_linked("/missing.html", NotFound(), from_path="/p/5.html")
        gone = gen.add_linked("/gone.html", NotFound(), from_path="/p/3.html", host=h1)
        moved = gen.add_linked("/old-page", Redirect("/p/7.html"), from_path="/p/1.html")
        unique = gen.add_linked(
            "/unique.html",
            Page(
                "<html><head><title>Zebra page</title></head><body><h1>Zebra</h1>"
                f"<p>the {UNIQUE_WORD} plays alone</p></body></html>"
            ),
            from_path="/p/4.html",
        )
        long_url = gen.add_linked(LONG_PATH, Page("<title>Long</title><p>long</p>"), from_path="/")
        copies = (
            gen.add_linked("/copy-a.html", Page(DUPLICATE), from_path="/p/6.html"),
            gen.add_linked("/copy-b.html", Page(DUPLICATE), from_path="/p/8.html"),
        )
        big = gen.add_linked("/big.html", Page(BIG), from_path="/p/9.html")
        code = crawl(
            tmp,
            gen.root_urls,
            settings={
                "store": {"keep_text": True, "keep_html": True},
                "extract.heading": {"selector": "h1"},
            },
        )
        assert code == 0
    return Fixture(
        db=tmp / "crawl.db",
        hosts=(h0, h1),
        port=srv.port,
        missing=missing,
        missing_from=(gen.url("/p/2.html"), gen.url("/p/5.html")),
        gone=gone,
        moved=moved,
        unique=unique,
        long_url=long_url,
        copies=copies,
        big=big,
    )


def tool(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run a command in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def sections(out: str) -> dict[str, list[list[str]]]:
    """'# heading' -> rows (header first) of the tab-separated table under it."""
    found: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for line in out.splitlines():
        if line.startswith("# "):
            current = found.setdefault(line[2:], [])
        elif line:
            current.append(line.split("\t"))
    return found


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- stats


def test_stats_counts_match_the_database(site: Fixture, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = tool(capsys, "stats", "--db", str(site.db))
    assert code == 0
    found = sections(out)
    by_status = {r[0]: int(r[1]) for r in found["pages by status code"][1:]}
    assert by_status == {
        str(s): n for s, n in query(site.db, "select status_code, count(*) from pages group by 1")
    }
    assert by_status["404"] == 2
    hosts = {r[0]: r for r in found["pages by host"][1:]}
    assert set(hosts) == {f"http://{h}:{site.port}" for h in site.hosts}
    assert sum(int(r[3]) for r in hosts.values()) == 2  # failed column: the two 404s
    assert found["errors by kind"][1:] == [["http_status", "2", "2"]]
    assert found["pages by content type"][1] == ["text/html", str(sum(by_status.values()))]
    depths = found["depth histogram"]
    assert depths[0] == ["depth", "pages", "histogram"]
    assert sum(int(r[1]) for r in depths[1:]) == sum(by_status.values())
    slowest = found["slowest pages (top 10)"]
    assert len(slowest) == 11
    elapsed = [int(r[2]) for r in slowest[1:]]
    assert elapsed == sorted(elapsed, reverse=True)
    assert found["largest pages (top 10)"][1][0] == site.big
    runs = found["crawl runs"]
    assert runs[0] == ["id", "command", "status", "started_at", "finished_at", "pages", "errors"]
    assert runs[1][:3] == ["1", "crawl", "finished"]
    assert runs[1][5:] == [str(sum(by_status.values())), "2"]
    assert found["URLs by state"][1:] == [
        [s, str(n)]
        for s, n in query(site.db, "select state, count(*) from urls group by 1 order by 2 desc, 1")
    ]


def test_stats_top_limits_the_lists(site: Fixture, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = tool(capsys, "stats", "--db", str(site.db), "--top", "2")
    assert code == 0
    assert len(sections(out)["largest pages (top 2)"]) == 3


def test_tools_refuse_a_missing_or_foreign_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = tool(capsys, "stats", "--db", str(tmp_path / "nope.db"))
    assert code == 2
    assert "no crawl database" in err
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("create table t(x)").connection.close()
    code, _, err = tool(capsys, "errors", "--db", str(other))
    assert code == 2
    assert "is not a crawl database" in err
    assert err.count("\n") == 1


# --------------------------------------------------------------------------- errors


def test_errors_lists_broken_links_with_their_referrers(
    site: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = tool(capsys, "errors", "--db", str(site.db))
    assert code == 0
    found = sections(out)
    failures = found["failures: 2 URLs"]
    assert failures[0] == ["url", "kind", "status", "attempts", "message", "referrers"]
    assert sorted(failures[1:]) == sorted(
        [
            [site.missing, "http_status", "404", "1", "HTTP 404 Not Found", "2"],
            [site.gone, "http_status", "404", "1", "HTTP 404 Not Found", "1"],
        ]
    )
    links = found["pages linking to them"]
    assert links[0] == ["broken_url", "linked_from", "nofollow"]
    pairs = {(r[0], r[1]) for r in links[1:]}
    assert pairs == {
        (site.missing, site.missing_from[0]),
        (site.missing, site.missing_from[1]),
        (site.gone, site.url("/p/3.html", 1)),
    }


def test_errors_filters_by_host_and_kind(site: Fixture, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = tool(capsys, "errors", "--db", str(site.db), "--host", site.hosts[1])
    assert code == 0
    failures = sections(out)[f"failures: 1 URL (host {site.hosts[1]})"]
    assert [r[0] for r in failures[1:]] == [site.gone]
    origin = f"http://{site.hosts[0]}:{site.port}"
    code, out, _ = tool(capsys, "errors", "--db", str(site.db), "--host", origin)
    assert [r[0] for r in sections(out)[f"failures: 1 URL (host {origin})"][1:]] == [site.missing]
    code, out, _ = tool(capsys, "errors", "--db", str(site.db), "--kind", "timeout")
    assert (code, out) == (0, "no failures (kind timeout)\n")
    code, _, err = tool(capsys, "errors", "--db", str(site.db), "--host", "nowhere.example")
    assert code == 2
    assert "no host 'nowhere.example'" in err


# --------------------------------------------------------------------------- search


def test_search_finds_the_one_page_with_a_word(
    site: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = tool(capsys, "search", "--db", str(site.db), UNIQUE_WORD)
    assert code == 0
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows == [
        ["url", "title", "snippet"],
        [site.unique, "Zebra page", f"Zebra the [{UNIQUE_WORD}] plays alone"],
    ]


def test_search_ranks_and_limits(site: Fixture, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = tool(capsys, "search", "--db", str(site.db), "same words", "--limit", "5")
    assert code == 0
    urls = [line.split("\t")[0] for line in out.splitlines()[1:]]
    assert sorted(urls) == sorted(site.copies)  # one row per URL, both duplicates
    code, out, _ = tool(capsys, "search", "--db", str(site.db), "word", "--limit", "1")
    assert [line.split("\t")[0] for line in out.splitlines()[1:]] == [site.big]  # bm25: most


def test_search_reports_a_malformed_query(
    site: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in ('"unbalanced', "e-mail", "AND"):
        code, out, err = tool(capsys, "search", "--db", str(site.db), bad)
        assert code == 2, bad
        assert out == ""
        assert err.startswith("crawler: search: not a valid FTS5 query"), err
        assert err.count("\n") == 1
    code, _, err = tool(capsys, "search", "--db", str(site.db), "nothingmatchesthis")
    assert code == 0
    assert "no pages match" in err


def test_search_without_text_says_to_crawl_with_keep_text(
    site: Fixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "notext.db"
    shutil.copy(site.db, copy)
    con = sqlite3.connect(copy)
    con.execute("update fetches set text = null")
    con.execute("insert into fetches_fts(fetches_fts) values ('rebuild')")
    con.commit()
    con.close()
    code, _, err = tool(capsys, "search", "--db", str(copy), UNIQUE_WORD)
    assert code == 2
    assert "keep_text = true" in err


# --------------------------------------------------------------------------- query

REFUSED = {
    "DELETE FROM urls": "the database is opened read-only",
    "UPDATE urls SET depth = 99": "the database is opened read-only",
    "INSERT INTO hosts(host) VALUES ('x')": "the database is opened read-only",
    "WITH doomed AS (SELECT id FROM urls) DELETE FROM urls WHERE id IN doomed": "read-only",
    "PRAGMA user_version = 1": "the database is opened read-only",
    "DROP VIEW pages": "the database is opened read-only",
    "CREATE TABLE t(x)": "the database is opened read-only",
    "VACUUM": "the database is opened read-only",
    "VACUUM INTO 'copy.db'": "ATTACH and VACUUM INTO are not allowed",
    "ATTACH DATABASE 'other.db' AS other": "ATTACH and VACUUM INTO are not allowed",
    "SELECT 1; DELETE FROM urls": "one statement at a time",
    "SELECT count(*) FROM urls; SELECT 1": "one statement at a time",
}


@pytest.mark.parametrize("sql", list(REFUSED))
def test_query_refuses_every_kind_of_write(
    site: Fixture,
    sql: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # where ATTACH / VACUUM INTO would create their files
    before = digest(site.db)
    code, out, err = tool(capsys, "query", "--db", str(site.db), sql)
    assert code == 2
    assert out == ""
    assert err.startswith("crawler: query refused: ")
    assert REFUSED[sql] in err
    assert err.count("\n") == 1
    assert digest(site.db) == before
    assert list(tmp_path.iterdir()) == []


def test_query_sql_error_is_a_usage_error(
    site: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = tool(capsys, "query", "--db", str(site.db), "SELECT * FROM nowhere")
    assert (code, err) == (2, "crawler: query failed: no such table: nowhere\n")


def test_query_jsonl_keeps_numbers(site: Fixture, capsys: pytest.CaptureFixture[str]) -> None:
    sql = (
        "SELECT url_id, url, status_code, elapsed_ms / 1000.0 AS seconds, title, "
        "NULL AS empty FROM pages ORDER BY url_id"
    )
    code, out, _ = tool(capsys, "query", "--db", str(site.db), "--format", "jsonl", sql)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    expected = query(site.db, sql)
    assert [tuple(r.values()) for r in rows] == expected
    assert list(rows[0]) == ["url_id", "url", "status_code", "seconds", "title", "empty"]
    assert all(type(r["url_id"]) is int and type(r["status_code"]) is int for r in rows)
    assert all(type(r["seconds"]) is float for r in rows)


def test_query_csv_has_a_header_and_every_row(
    site: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    sql = "SELECT url, status_code, title FROM pages ORDER BY url"
    code, out, _ = tool(capsys, "query", "--db", str(site.db), "--format", "csv", sql)
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["url", "status_code", "title"]
    assert rows[1:] == [[u, str(s), t or ""] for u, s, t in query(site.db, sql)]


def test_query_reads_sql_from_stdin(
    site: Fixture, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("select count(*) as n from pages\n"))
    code, out, _ = tool(capsys, "query", "--db", str(site.db), "-")
    assert code == 0
    assert out.splitlines()[1] == str(query(site.db, "select count(*) from pages")[0][0])


def test_piped_output_is_never_truncated(site: Fixture, tmp_path: Path) -> None:
    assert len(site.long_url) > 300
    env = {"PYTHONPATH": str(ROOT)}
    res = run_cli(
        "query", "--db", str(site.db), "select url, title from pages", cwd=tmp_path, env=env
    )
    assert res.returncode == 0, res.stderr
    assert f"{site.long_url}\tLong" in res.stdout.splitlines()
    res = run_cli("stats", "--db", str(site.db), cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert "\t" in res.stdout
    res = run_cli("errors", "--db", str(site.db), cwd=tmp_path, env=env)
    assert f"{site.missing}\t{site.missing_from[0]}\t0" in res.stdout.splitlines()


# --------------------------------------------------------------------------- export


def _direct(db: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    con = sqlite3.connect(db)
    try:
        cur = con.execute(sql)
        return [d[0] for d in cur.description], cur.fetchall()
    finally:
        con.close()


def test_export_pages_as_jsonl_equals_the_table(
    site: Fixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pages.jsonl"
    code, stdout, err = tool(
        capsys,
        "export",
        "--db",
        str(site.db),
        "--table",
        "pages",
        "--format",
        "jsonl",
        "-o",
        str(out),
    )
    assert code == 0
    assert stdout == ""
    columns, rows = _direct(site.db, "select * from pages")
    assert f"exported {len(rows)} rows of pages" in err
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [list(r) for r in exported] == [columns] * len(rows)
    data = columns.index("data")
    expected = [
        [json.loads(v) if i == data and v is not None else v for i, v in enumerate(row)]
        for row in rows
    ]
    assert [list(r.values()) for r in exported] == expected
    zebra = next(r for r in exported if r["url"] == site.unique)
    assert zebra["data"] == {"heading": "Zebra"}  # JSON columns embedded as JSON
    assert type(zebra["status_code"]) is int


def test_export_pages_as_csv_equals_the_table(
    site: Fixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pages.csv"  # format from the suffix
    code, _, _ = tool(capsys, "export", "--db", str(site.db), "--table", "pages", "-o", str(out))
    assert code == 0
    with out.open(newline="", encoding="utf-8") as f:
        exported = list(csv.reader(f))
    columns, rows = _direct(site.db, "select * from pages")
    assert exported[0] == columns
    assert exported[1:] == [["" if v is None else str(v) for v in row] for row in rows]


def test_export_binary_is_base64_in_jsonl_and_hex_in_csv(
    site: Fixture, capsys: pytest.CaptureFixture[str]
) -> None:
    where = "fetch_id = (select min(fetch_id) from bodies)"
    ((fetch_id, body),) = query(site.db, f"select fetch_id, body from bodies where {where}")
    args = ("export", "--db", str(site.db), "--table", "bodies", "--where", where)
    code, out, _ = tool(capsys, *args, "--format", "jsonl", "-o", "-")
    assert code == 0
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["fetch_id"] == fetch_id
    assert base64.b64decode(row["body"]) == body
    assert isinstance(row["headers"], list)
    code, out, _ = tool(capsys, *args, "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert bytes.fromhex(rows[1][rows[0].index("body")]) == body


def test_export_where_filters_and_cannot_write(
    site: Fixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = tool(
        capsys, "export", "--db", str(site.db), "--table", "errors", "--where", "status_code = 404"
    )
    assert code == 0
    assert len(out.splitlines()) == 2
    before = digest(site.db)
    target = tmp_path / "x.jsonl"
    for where in ("1); DELETE FROM urls; --", "1) ; DROP VIEW pages; SELECT (1"):
        code, _, err = tool(
            capsys,
            "export",
            "--db",
            str(site.db),
            "--table",
            "urls",
            "--where",
            where,
            "-o",
            str(target),
        )
        assert code == 2
        assert "one statement at a time" in err
    assert digest(site.db) == before
    assert list(tmp_path.iterdir()) == []  # no file, not even a partial one


def test_export_refuses_unknown_tables_and_escaping_names(
    site: Fixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(site.db)
    code, _, err = tool(
        capsys, "export", "--db", db, "--table", "pages; drop table urls", "-o", "-"
    )
    assert code == 2
    assert "no table or view 'pages; drop table urls'; choose one of: bodies, crawls" in err
    outdir = tmp_path / "out"
    outdir.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (outdir / "link").symlink_to(tmp_path / "elsewhere")
    for name in ("../escape.csv", "sub/../../escape.csv", str(tmp_path / "abs.csv"), "link/x.csv"):
        code, _, err = tool(
            capsys, "export", "--db", db, "--table", "urls", "--dir", str(outdir), "-o", name
        )
        assert code == 2, name
        assert "outside" in err or "absolute" in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["elsewhere", "link", "out"]
    code, _, _ = tool(
        capsys, "export", "--db", db, "--table", "urls", "--dir", str(outdir), "-o", "urls.csv"
    )
    assert code == 0
    assert (outdir / "urls.csv").read_text(encoding="utf-8").startswith("id,url,host_id,")
    before = digest(site.db)
    code, _, err = tool(capsys, "export", "--db", db, "--table", "urls", "-o", db)
    assert code == 2
    assert "refusing to overwrite the database" in err
    assert digest(site.db) == before


def test_export_streams_a_million_rows_in_bounded_memory(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    assert main(["db", "upgrade", "--db", str(db), "-q"]) == 0
    con = sqlite3.connect(db)
    ts = "2026-01-01 00:00:00.000000"
    con.execute("insert into hosts(id, host) values (1, 'http://big.test:80')")
    con.executemany(
        "insert into urls(id, url, host_id, depth, state, first_seen_at) "
        "values (?, ?, 1, 0, 'done', ?)",
        ((i, f"http://big.test:80/{i}", ts) for i in range(1, 1001)),
    )
    con.executemany(
        "insert into links(src_url_id, dst_url_id, nofollow, first_seen_at, last_seen_at) "
        "values (?, ?, 0, ?, ?)",
        ((i // 1000 + 1, i % 1000 + 1, ts, ts) for i in range(1_000_000)),
    )
    con.commit()
    con.close()
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child forked from this
    # (large) pytest process would report pytest's size; VmHWM belongs to the new image.
    probe = (
        "import re, sys\n"
        "from pathlib import Path\n"
        "from crawler.commands.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "status = Path('/proc/self/status').read_text()\n"
        "sys.stderr.write('peak_kib=' + re.search(r'VmHWM:\\s+(\\d+)', status).group(1) + '\\n')\n"
        "sys.exit(code)\n"
    )

    def peak_kib(table: str, out: Path) -> int:
        res = subprocess_run(
            [
                sys.executable,
                "-c",
                probe,
                "export",
                "--db",
                str(db),
                "--table",
                table,
                "-q",
                "--format",
                "jsonl",
                "-o",
                str(out),
            ],
            cwd=tmp_path,
        )
        assert res.returncode == 0, res.stderr
        match = re.search(r"peak_kib=(\d+)", res.stderr)
        assert match, res.stderr
        return int(match.group(1))

    baseline = peak_kib("crawls", tmp_path / "crawls.jsonl")
    peak = peak_kib("links", tmp_path / "links.jsonl")
    lines = 0
    with (tmp_path / "links.jsonl").open(encoding="utf-8") as f:
        first = json.loads(f.readline())
        lines = 1 + sum(1 for _ in f)
    assert lines == 1_000_000
    assert first["src_url_id"] == 1
    growth_mib = (peak - baseline) / 1024
    print(
        f"export of 1,000,000 links: peak RSS {peak / 1024:.1f} MiB, {growth_mib:.1f} MiB over "
        f"an empty export ({baseline / 1024:.1f} MiB)"
    )
    assert growth_mib < 50


def subprocess_run(cmd: list[str], cwd: Path) -> Any:
    import subprocess

    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


# --------------------------------------------------------------------------- docs/queries.md


def _doc_queries() -> dict[str, str]:
    text = QUERIES_MD.read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    named: dict[str, str] = {}
    for block in blocks:
        match = re.match(r"-- (\S+)", block)
        assert match, f"docs/queries.md: a sql block without a '-- name' first line:\n{block}"
        assert match.group(1) not in named, f"docs/queries.md: two blocks named {match.group(1)}"
        named[match.group(1)] = block
    return named


def test_queries_md_has_at_least_twelve_worked_queries() -> None:
    assert len(_doc_queries()) >= 12


@pytest.mark.parametrize("name", sorted(_doc_queries()) if QUERIES_MD.is_file() else [])
def test_every_query_in_the_docs_runs(site: Fixture, name: str) -> None:
    sql = _doc_queries()[name]
    con = sqlite3.connect(f"file:{site.db}?mode=ro", uri=True)
    try:
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description]
        rows = [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()
    check = EXPECTED.get(name)
    if check is not None:
        check(site, rows)


def _broken_links(site: Fixture, rows: list[dict[str, Any]]) -> None:
    pairs = {(r["broken_url"], r["linked_from"]) for r in rows}
    assert pairs == {
        (site.missing, site.missing_from[0]),
        (site.missing, site.missing_from[1]),
        (site.gone, site.url("/p/3.html", 1)),
    }


def _redirects(site: Fixture, rows: list[dict[str, Any]]) -> None:
    assert {(r["url"], r["final_url"], r["redirects"]) for r in rows} == {
        (site.moved, site.url("/p/7.html"), 1)
    }


def _orphans(site: Fixture, rows: list[dict[str, Any]]) -> None:
    assert all(r["depth"] == 0 for r in rows)  # only seeds can be linked from nowhere


def _changed(site: Fixture, rows: list[dict[str, Any]]) -> None:
    parsed = query(site.db, "select count(*) from fetches where changed")[0][0]
    assert len(rows) == parsed
    assert {r["what"] for r in rows} == {"new"}  # one crawl: every page is new


def _duplicates(site: Fixture, rows: list[dict[str, Any]]) -> None:
    assert len(rows) == 1
    assert rows[0]["pages"] == 2
    assert set(rows[0]["urls"].split(",")) == set(site.copies)


def _slowest_hosts(site: Fixture, rows: list[dict[str, Any]]) -> None:
    assert {r["host"] for r in rows} == {f"http://{h}:{site.port}" for h in site.hosts}
    assert [r["avg_ms"] for r in rows] == sorted((r["avg_ms"] for r in rows), reverse=True)


def _outbound(site: Fixture, rows: list[dict[str, Any]]) -> None:
    assert f"http://{EXTERNAL_HOST}:80" in {r["host"] for r in rows}


def _depths(site: Fixture, rows: list[dict[str, Any]]) -> None:
    total = query(site.db, "select count(*) from urls where state <> 'excluded'")[0][0]
    assert sum(r["urls"] for r in rows) == total
    assert rows[0]["depth"] == 0
    assert rows[0]["urls"] == 2  # the two seeds


def _status_per_host(site: Fixture, rows: list[dict[str, Any]]) -> None:
    not_found = {r["host"]: r["pages"] for r in rows if r["status_code"] == 404}
    assert not_found == {f"http://{h}:{site.port}": 1 for h in site.hosts}


def _largest(site: Fixture, rows: list[dict[str, Any]]) -> None:
    assert rows[0]["url"] == site.big
    assert len(rows) == 10


def _extracted(site: Fixture, rows: list[dict[str, Any]]) -> None:
    headings = {r["url"]: r["heading"] for r in rows}
    assert headings[site.unique] == "Zebra"
    assert headings[site.copies[0]] == "Copy"


def _history(site: Fixture, rows: list[dict[str, Any]]) -> None:
    assert [(r["id"], r["command"], r["status"]) for r in rows] == [(1, "crawl", "finished")]
    assert rows[0]["workers"] == 8


def _fts(site: Fixture, rows: list[dict[str, Any]]) -> None:
    assert [r["url"] for r in rows] == [site.unique]
    assert f"[{UNIQUE_WORD}]" in rows[0]["snippet"]


EXPECTED = {
    "broken-links": _broken_links,
    "redirects": _redirects,
    "orphans": _orphans,
    "changed-since": _changed,
    "duplicates": _duplicates,
    "slowest-hosts": _slowest_hosts,
    "outbound-domains": _outbound,
    "depth-distribution": _depths,
    "status-per-host": _status_per_host,
    "largest-pages": _largest,
    "extracted-data": _extracted,
    "crawl-history": _history,
    "full-text-search": _fts,
}


def test_every_expected_answer_has_its_query_in_the_docs() -> None:
    assert set(EXPECTED) <= set(_doc_queries())


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.parametrize(
    ("sql", "many"),
    [
        ("select 1", False),
        ("select 1; -- done", False),
        ("select 1; /* done */\n", False),
        ("select ';' as semicolon", False),
        ('select 1 as "a;b"', False),
        ("select $$ ; $$", False),
        ("select 1; select 2", True),
        ("select ';'; delete from urls", True),
        ("select $t$ ; $t$; delete from urls", True),
    ],
)
def test_more_than_one_statement(sql: str, many: bool) -> None:
    assert more_than_one_statement(sql) is many


@pytest.mark.postgres
def test_tools_on_postgresql(pg_schema: str, capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    assert main(["db", "upgrade", "--db", pg_schema, "-q"]) == 0
    engine = create_engine(pg_schema, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into crawls(started_at, status, settings) values (now(), 'finished', '{}');"
                "insert into hosts(host) values ('http://a.test:80');"
                "insert into urls(url, host_id, depth, state, first_seen_at) values"
                " ('http://a.test:80/', 1, 0, 'done', now()),"
                " ('http://a.test:80/x', 1, 1, 'failed', now());"
                "insert into fetches(url_id, crawl_id, fetched_at, status_code, final_url,"
                " elapsed_ms, title, text, data) values"
                " (1, 1, now(), 200, 'http://a.test:80/', 5, 'Home', 'a xylophone here',"
                "  '{\"h\": 1}'),"
                " (2, 1, now(), 404, 'http://a.test:80/x', 3, null, null, null);"
                "insert into links values (1, 2, false, now(), now());"
                "insert into errors(url_id, crawl_id, at, attempt, kind, status_code, message,"
                " final) values (2, 1, now(), 1, 'http_status', 404, 'HTTP 404', true)"
            )
        )
    try:
        for sql in (
            "DELETE FROM urls",
            "WITH x AS (SELECT 1) DELETE FROM urls",
            "SELECT 1; DELETE FROM urls",
        ):
            code, out, err = tool(capsys, "query", "--db", pg_schema, sql)
            assert code == 2, sql
            assert err.startswith("crawler: query refused: "), err
        code, out, _ = tool(
            capsys,
            "query",
            "--db",
            pg_schema,
            "--format",
            "jsonl",
            "select count(*) as n from urls",
        )
        assert json.loads(out) == {"n": 2}
        code, out, _ = tool(capsys, "search", "--db", pg_schema, "XYLOPHONE")
        assert out.splitlines()[1] == "http://a.test:80/\tHome\ta [xylophone] here"
        code, out, _ = tool(capsys, "errors", "--db", pg_schema)
        assert "http://a.test:80/x\thttp://a.test:80/\tFalse" in out.splitlines()
        code, out, _ = tool(capsys, "export", "--db", pg_schema, "--table", "pages")
        rows = [json.loads(line) for line in out.splitlines()]
        assert rows[0]["data"] == {"h": 1}
        assert main(["stats", "--db", pg_schema]) == 0
        with engine.connect() as conn:
            assert conn.execute(text("select count(*) from urls")).scalar_one() == 2
    finally:
        engine.dispose()
