"""Bad input from the user, through the real CLI in a subprocess: seed files, settings, databases.

Every case ends with a known exit status (2 bad input, 1 the work failed), one line saying what
is wrong (per-line seed problems are lines of their own, each naming its line), and never a
traceback. What ``test_cli``, ``test_seeds``, ``test_config`` and ``test_db`` already cover (empty
and comment-only seed files, unknown keys, wrong types, a text file or a newer schema as the
database) is not repeated here. See ``docs/reliability-input.md``.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.seeds import SeedProblem, read_seed_file
from tests import dnsguard
from tests.crawlkit import FAST, ROOT, crawl_in_subprocess, query, run_cli, write_settings
from tests.mockserver import Page, Site, SiteServer, SiteServerFactory, generate_site
from tests.test_soak import run_with_peak_rss

ROOT_USER = os.geteuid() == 0


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def text_columns(db: Path) -> Iterator[tuple[str, str, str]]:
    """(table, column, value) for every non-NULL value of every column of every table, as text."""
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            columns = [r[1] for r in con.execute(f'pragma table_info("{table}")')]
            for column in columns:
                for (value,) in con.execute(f'select "{column}" from "{table}"'):
                    if value is not None:
                        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                        yield table, column, text
    finally:
        con.close()


def without_dac_override(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI unable to read a mode-000 file: as root, without CAP_DAC_OVERRIDE/READ_SEARCH
    (root still, so the interpreter and the venv stay readable)."""
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if ROOT_USER else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env["PYTHONPATH"] = str(ROOT)
    env = dnsguard.subprocess_env(env)  # keep the DNS guard in the child
    return subprocess.run(
        [*prefix, sys.executable, "-m", "crawler", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def one_page(site_server: SiteServerFactory) -> SiteServer:
    site = Site()
    site.add("/", Page("<title>home</title><p>hello</p>"))
    return site_server(site)


# --------------------------------------------------------------------------- seed files


def test_binary_seed_file_is_refused_in_one_line_without_a_database(tmp_path: Path) -> None:
    """64 KiB of random bytes: one line saying the file is not text (it used to be one problem
    line per junk line, 280 of them), exit 2, and nothing created."""
    rng = random.Random(13)
    (tmp_path / "seed.txt").write_bytes(rng.randbytes(64 * 1024))
    result = run_cli("crawl", "seed.txt", "--db", "crawl.db", cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("crawler: seed file 'seed.txt' is not text (a NUL byte at byte "), line
    assert list(tmp_path.glob("crawl.db*")) == []


def test_junk_without_nul_bytes_is_a_few_lines_then_a_count(tmp_path: Path) -> None:
    """Random bytes with no NUL pass the text check; the bad lines are then shown five at most,
    and a count says how many more there were."""
    rng = random.Random(14)
    junk = bytes(b for b in rng.randbytes(64 * 1024) if b)
    (tmp_path / "seed.txt").write_bytes(junk)
    bad = sum(isinstance(item, SeedProblem) for item in read_seed_file(tmp_path / "seed.txt"))
    assert bad > 50
    result = run_cli("crawl", "seed.txt", "--db", "crawl.db", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 7, result.stderr
    assert all(line.startswith("seed.txt:") for line in lines[:5])
    assert lines[5] == f"seed.txt: ... and {bad - 5} more bad lines", lines[5]
    assert lines[6] == "crawler: no valid seed URL in 'seed.txt'"
    assert list(tmp_path.glob("crawl.db*")) == []


def test_many_bad_lines_are_counted_and_the_good_ones_crawled(
    one_page: SiteServer, tmp_path: Path
) -> None:
    seeds = [f"not a url {i}" for i in range(1000)] + [one_page.url("/")]
    result = crawl_in_subprocess(tmp_path, seeds)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ")[0] for line in lines[:5]] == [
        f"{tmp_path / 'seed.txt'}:{n}" for n in range(1, 6)
    ]
    assert lines[5:] == [f"{tmp_path / 'seed.txt'}: ... and 995 more bad lines"]
    assert query(tmp_path / "crawl.db", "select url from urls") == [(one_page.url("/"),)]


def test_duplicate_seeds_are_one_url_fetched_once(one_page: SiteServer, tmp_path: Path) -> None:
    url = one_page.url("/")
    spellings = [url, url.upper().replace("HTTP://", "http://"), url + "#top", url.rstrip("/")]
    result = crawl_in_subprocess(tmp_path, spellings * 500)
    assert result.returncode == 0, result.stderr
    assert query(tmp_path / "crawl.db", "select url from urls") == [(url,)]
    assert [r.path for r in one_page.log] == ["/"]


def test_relative_and_file_seeds_are_reported_and_skipped(
    one_page: SiteServer, tmp_path: Path
) -> None:
    canary = tmp_path / "canary.html"
    canary.write_text("<title>local file</title>", encoding="utf-8")
    seeds = ["/relative/path", "page.html", f"file://{canary}", one_page.url("/")]
    result = crawl_in_subprocess(tmp_path, seeds)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [
        f"{tmp_path / 'seed.txt'}:1",
        f"{tmp_path / 'seed.txt'}:2",
        f"{tmp_path / 'seed.txt'}:3",
    ]
    assert all("not an absolute http(s) URL" in line for line in lines)
    db = tmp_path / "crawl.db"
    assert query(db, "select url from urls") == [(one_page.url("/"),)]
    assert query(db, "select title from fetches") == [("home",)]


def test_a_line_over_64_kib_is_one_short_problem(one_page: SiteServer, tmp_path: Path) -> None:
    long_line = one_page.url("/") + "?" + "a" * 100_000
    result = crawl_in_subprocess(tmp_path, [long_line, one_page.url("/")])
    assert result.returncode == 0, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"{tmp_path / 'seed.txt'}:1: line longer than 65536 bytes: ")
    assert len(line) < 400
    assert query(tmp_path / "crawl.db", "select url from urls") == [(one_page.url("/"),)]


SECRET = "s3cr3tPassw0rd"


def test_seed_with_credentials_alone_is_refused_masked(tmp_path: Path) -> None:
    (tmp_path / "seed.txt").write_text(f"http://alice:{SECRET}@127.0.0.1:9/\n", encoding="utf-8")
    result = run_cli("crawl", "seed.txt", "--db", "crawl.db", "-v", cwd=tmp_path)
    assert result.returncode == 2
    assert SECRET not in result.stderr + result.stdout
    problem, last = result.stderr.strip().splitlines()
    assert problem == (
        "seed.txt:1: credentials in a seed URL are refused (they would be stored in the "
        "database in clear): 'http://***:***@127.0.0.1:9/'"
    )
    assert last == "crawler: no valid seed URL in 'seed.txt'"
    assert not (tmp_path / "crawl.db").exists()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_credentials_never_reach_logs_database_or_server(
    one_page: SiteServer, tmp_path: Path, fmt: str
) -> None:
    port = one_page.port
    seeds = [
        f"http://alice:{SECRET}@127.0.0.1:{port}/",
        f"http://{SECRET}@127.0.0.1:{port}/token-as-user",
        f"http://alice:{SECRET}@exa mple.com/",
        one_page.url("/"),
    ]
    log_file = tmp_path / "crawl.log"
    result = crawl_in_subprocess(
        tmp_path, seeds, "-vv", "--log-format", fmt, "--log-file", str(log_file)
    )
    assert result.returncode == 0, result.stderr
    for where, text in {
        "stderr": result.stderr,
        "stdout": result.stdout,
        "log file": log_file.read_text(encoding="utf-8"),
    }.items():
        assert SECRET not in text, where
    assert result.stderr.count("credentials in a seed URL are refused") == 2
    leaks = [(t, c) for t, c, v in text_columns(tmp_path / "crawl.db") if SECRET in v]
    assert leaks == []
    assert all("Authorization" not in r.headers for r in one_page.log)


def _million_line_seed_file(path: Path, base: str) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(f"{base}/\n")
        for i in range(1_000_000):
            out.write(f"{base}/p/{i}\n")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_million_seed_lines_are_streamed_in_bounded_memory(
    one_page: SiteServer, tmp_path: Path
) -> None:
    """The seeds go to the database in batches; the crawl itself is one page."""
    seed_file = tmp_path / "seed.txt"
    _million_line_seed_file(seed_file, one_page.base_url())
    cfg = write_settings(tmp_path / "settings.toml", FAST)
    args = ["crawl", str(seed_file), "--db", "crawl.db", "--config", str(cfg), "--max-pages", "1"]
    result, peak_mb = run_with_peak_rss([*args, "-q"], cwd=tmp_path, timeout=550)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    db = tmp_path / "crawl.db"
    assert query(db, "select count(*) from urls") == [(1_000_001,)]
    assert query(db, "select count(*) from fetches") == [(1,)]
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"


# --------------------------------------------------------------------------- settings


def test_unreadable_settings_file_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "settings.toml"
    cfg.write_text("[crawl]\nworkers = 2\n", encoding="utf-8")
    cfg.chmod(0)
    (tmp_path / "seed.txt").write_text("http://127.0.0.1:9/\n", encoding="utf-8")
    result = without_dac_override("crawl", "seed.txt", "--config", "settings.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        "crawler: cannot read settings file 'settings.toml': Permission denied"
    )
    assert not (tmp_path / "crawl.db").exists()


def test_unreadable_seed_file_exits_2(tmp_path: Path) -> None:
    seed = tmp_path / "seed.txt"
    seed.write_text("http://127.0.0.1:9/\n", encoding="utf-8")
    seed.chmod(0)
    result = without_dac_override("crawl", "seed.txt", cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        "crawler: cannot read seed file 'seed.txt': Permission denied"
    )
    assert not (tmp_path / "crawl.db").exists()


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[crawl]\nworkers = -4\n", "workers"),
        ("[politeness]\ndelay = -0.5\n", "delay"),
        ("[fetch]\nmax_body_bytes = -1\n", "max_body_bytes"),
        ("[fetch]\nretries = -2\n", "retries"),
    ],
)
def test_negative_numbers_in_the_settings_file_exit_2(tmp_path: Path, toml: str, key: str) -> None:
    (tmp_path / "neg.toml").write_text(toml, encoding="utf-8")
    (tmp_path / "seed.txt").write_text("http://127.0.0.1:9/\n", encoding="utf-8")
    result = run_cli("crawl", "seed.txt", "--config", "neg.toml", cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert key in line
    assert "neg.toml" in line
    assert not (tmp_path / "crawl.db").exists()


SETTINGS_THAT_CANNOT_WORK = [
    # (settings file text, extra argv, env, what the line must name)
    ('[scope]\ninclude = ["(unclosed"]\n', [], {}, ["settings.toml", "include"]),
    ('[scope]\nexclude = ["*.pdf"]\n', [], {}, ["settings.toml", "exclude"]),
    ('[scope]\nallowed_domains = ["https://example.com/"]\n', [], {}, ["allowed_domains"]),
    ('[scope]\nallowed_domains = ["example.com:8080"]\n', [], {}, ["allowed_domains"]),
    ('[scope]\nallowed_domains = ["exa mple.com"]\n', [], {}, ["allowed_domains"]),
    ('[scope]\nallowed_domains = [""]\n', [], {}, ["allowed_domains"]),
    ('[scope]\nallowed_domains = ["*.example.com"]\n', [], {}, ["allowed_domains"]),
    ('[scope]\nallowed_domains = ["xn--a.com"]\n', [], {}, ["allowed_domains"]),
    ('[extract.t]\nselector = "title"\nurl_pattern = "[a-"\n', [], {}, ["url_pattern"]),
    ('[extract.t]\nselector = "a[["\n', [], {}, ["[extract.t] selector"]),
    ('[extract]\nhook = "no_such_module:f"\n', [], {}, ["[extract] hook"]),
    ('[crawl]\nuser_agent = "/1.0"\n', [], {}, ["settings.toml", "user_agent"]),
    ('[crawl]\nuser_agent = "mybot(+https://x/bot)"\n', [], {}, ["settings.toml", "user_agent"]),
    ("", ["--user-agent", "/1.0"], {}, ["--user-agent"]),
    ("", [], {"CRAWLER_CRAWL_USER_AGENT": " /2"}, ["CRAWLER_CRAWL_USER_AGENT"]),
    ("", [], {"CRAWLER_SCOPE_INCLUDE": "a(b"}, ["CRAWLER_SCOPE_INCLUDE"]),
    ("", [], {"CRAWLER_SCOPE_ALLOWED_DOMAINS": "ok.test,http://x.test"}, ["ALLOWED_DOMAINS"]),
]


@pytest.mark.parametrize(("toml", "argv", "env", "named"), SETTINGS_THAT_CANNOT_WORK)
def test_settings_that_cannot_work_are_refused_before_anything_is_created(
    tmp_path: Path, toml: str, argv: list[str], env: dict[str, str], named: list[str]
) -> None:
    """A pattern, domain or user agent that would fail every URL (or the start of the run) is
    refused by the settings loader: exit 2, one line naming where it came from and the key, and
    no database (nor its lock or WAL files) left behind."""
    (tmp_path / "settings.toml").write_text(toml, encoding="utf-8")
    (tmp_path / "seed.txt").write_text("http://127.0.0.1:9/\n", encoding="utf-8")
    result = run_cli("crawl", "seed.txt", "--db", "crawl.db", *argv, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("crawler: "), line
    for word in named:
        assert word in line, line
    assert list(tmp_path.glob("crawl.db*")) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["crawl", "seed.txt", "--config", "bad.toml"],
        ["crawl", "--resume", "--config", "bad.toml"],
        ["recrawl", "--config", "bad.toml"],
        ["worker", "--config", "bad.toml"],
        ["crawl", "seed.txt", "--user-agent", "/1.0"],
        ["recrawl", "--user-agent", "/1.0"],
    ],
)
def test_settings_that_cannot_work_leave_an_existing_database_unchanged(
    tmp_path: Path, argv: list[str]
) -> None:
    (tmp_path / "seed.txt").write_text("http://127.0.0.1:9/\n", encoding="utf-8")
    (tmp_path / "bad.toml").write_text('[scope]\nexclude = ["+"]\n', encoding="utf-8")
    setup = run_cli("db", "upgrade", "--db", "crawl.db", cwd=tmp_path)
    assert setup.returncode == 0, setup.stderr
    before = {p.name: p.read_bytes() for p in tmp_path.glob("crawl.db*")}
    result = run_cli(*argv, "--db", "crawl.db", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert "bad.toml" in line or "--user-agent" in line, line
    assert {p.name: p.read_bytes() for p in tmp_path.glob("crawl.db*")} == before
    assert query(tmp_path / "crawl.db", "select count(*) from crawls") == [(0,)]


# --------------------------------------------------------------------------- the database


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` read-only even for root: a read-only bind mount, else ``chattr +i``,
    else (not root) a plain chmod."""
    if not ROOT_USER:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    bind = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(directory), str(directory)],
        capture_output=True,
        check=False,
    )
    if bind.returncode == 0:
        try:
            yield
        finally:
            subprocess.run(["umount", str(directory)], check=True)
        return
    subprocess.run(["chattr", "+i", str(directory)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_new_database_in_a_read_only_directory_exits_2(tmp_path: Path) -> None:
    (tmp_path / "seed.txt").write_text("http://127.0.0.1:9/\n", encoding="utf-8")
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        result = run_cli("crawl", "seed.txt", "--db", "locked/crawl.db", cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line == (
        f"crawler: cannot create database '{locked / 'crawl.db'}': "
        f"directory '{locked}' is read-only"
    )
    assert list(locked.iterdir()) == []


def test_existing_database_in_a_read_only_directory_is_refused_untouched(
    one_page: SiteServer, tmp_path: Path
) -> None:
    (tmp_path / "seed.txt").write_text(one_page.url("/") + "\n", encoding="utf-8")
    locked = tmp_path / "locked"
    locked.mkdir()
    db = locked / "crawl.db"
    assert run_cli("db", "upgrade", "--db", str(db), cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in locked.iterdir()}
    with read_only(locked):
        result = run_cli("crawl", "seed.txt", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 2
    assert "read-only" in one_line(result.stderr)
    assert {p.name: p.read_bytes() for p in locked.iterdir()} == before
    assert one_page.log == []


@contextlib.contextmanager
def small_disk(directory: Path, size: str = "2m") -> Iterator[bool]:
    """A tiny tmpfs at ``directory``; yields False when mounting is impossible (the caller then
    limits the file size with RLIMIT_FSIZE instead)."""
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(directory)], check=True)


@pytest.mark.timeout(180)
def test_full_disk_stops_the_crawl_cleanly_and_keeps_what_was_committed(
    site_server: SiteServerFactory, tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    db = disk / "crawl.db"
    srv = site_server(hosts=["127.0.0.30"])
    small = generate_site(srv.hosts, 5, port=srv.port, site=srv.site, seed=1)
    with small_disk(disk) as mounted:
        # First a small crawl that fits, whose rows must survive the second.
        first_dir = tmp_path / "first"
        first_dir.mkdir()
        first = crawl_in_subprocess(first_dir, small.root_urls, "--db", str(db))
        assert first.returncode == 0, first.stderr
        kept = query(
            db,
            "select u.url, f.status_code, f.content_hash from fetches f "
            "join urls u on u.id = f.url_id order by f.id",
        )
        assert len(kept) == len(small.expected_urls)

        # Then pages of incompressible text, bodies and text kept, until the disk is full.
        big = site_server(hosts=["127.0.0.31"])
        gen = generate_site(big.hosts, 400, port=big.port, site=big.site, seed=2)
        rng = random.Random(5)
        for page in gen.pages.values():
            page.paragraphs.append(
                "".join(rng.choice("abcdefghij klmnopqrstuvwxyz") for _ in range(20_000))
            )
        settings = {"store": {"keep_html": True, "keep_text": True, "batch_rows": 20}}
        second_dir = tmp_path / "second"
        second_dir.mkdir()
        limit = None if mounted else 2 * 1024 * 1024
        seed_file = second_dir / "seed.txt"
        seed_file.write_text("\n".join(gen.root_urls) + "\n", encoding="utf-8")
        cfg = write_settings(second_dir / "settings.toml", FAST, settings)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
        env["PYTHONPATH"] = str(ROOT)
        env = dnsguard.subprocess_env(env)  # keep the DNS guard in the child
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "crawler",
                "crawl",
                str(seed_file),
                "--db",
                str(db),
                "--config",
                str(cfg),
                "-q",
            ],
            cwd=second_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
            if limit
            else None,
        )
        assert result.returncode == 1, result.stderr + result.stdout
        line = one_line(result.stderr)
        assert line.startswith("crawler: error: the database writer failed: ")
        assert "full" in line or "disk" in line or "too large" in line, line

        assert query(db, "pragma integrity_check") == [("ok",)]
        after = query(
            db,
            "select u.url, f.status_code, f.content_hash from fetches f "
            "join urls u on u.id = f.url_id order by f.id",
        )
        assert after[: len(kept)] == kept
        assert len(after) < len(gen.expected_urls) + len(kept), "the disk never filled"
