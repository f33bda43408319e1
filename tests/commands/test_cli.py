"""The command line as a user meets it: exit statuses, what is printed where, and what is left."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from crawler.commands.cli import main
from tests.crawlkit import ROOT, query, run_cli, write_seeds, write_settings
from tests.mockserver import Page, Site

pytestmark = pytest.mark.timeout(60)

# delay 0 and no robots.txt: a loopback site of three pages is crawled in a fraction of a second.
QUICK = {
    "politeness": {"delay": 0.0, "obey_robots": False},
    "fetch": {"retries": 0, "total_timeout": 10.0},
    "store": {"batch_ms": 20},
}


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m crawler ARGS`` in ``cwd``; the source tree first on the path, whatever is
    installed, so the code under test is the code in this checkout."""
    return run_cli(*args, cwd=cwd, env={"PYTHONPATH": str(ROOT), **(env or {})})


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def tiny_site() -> Site:
    site = Site()
    site.add("/", Page('<title>home</title><a href="/a">a</a> <a href="/b">b</a>'))
    site.add("/a", Page('<title>a</title><a href="/b">b</a> <a href="/">home</a>'))
    site.add("/b", Page("<title>b</title>"))
    return site


@pytest.fixture
def site_url(site_server) -> str:
    return site_server(tiny_site()).url("/")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory with a quick ./settings.toml (picked up without --config) and ./seed.txt."""
    write_settings(tmp_path / "settings.toml", QUICK)
    write_seeds(tmp_path / "seed.txt", ["http://127.0.0.1:9/"])
    return tmp_path


def fetched_urls(db: Path) -> set[str]:
    return {u for (u,) in query(db, "select url from pages")}


# --------------------------------------------------------------------------- help and version


def test_version(tmp_path: Path) -> None:
    result = cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"crawler {version('crawler')}"


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["--help"], ["examples:", "python -m crawler seed.txt", "db upgrade", "CRAWLER_"]),
        (["crawl", "--help"], ["examples:", "--workers", "--db", "--config", "sqlite3"]),
        (["db", "upgrade", "--help"], ["example:", "python -m crawler db upgrade --db"]),
    ],
)
def test_help_has_examples(
    capsys: pytest.CaptureFixture[str], argv: list[str], wanted: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for text in wanted:
        assert text in out


def test_no_arguments_prints_help_and_exits_2(tmp_path: Path) -> None:
    result = cli(cwd=tmp_path)
    assert result.returncode == 2
    assert "examples:" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_without_action_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("db", cwd=tmp_path)
    assert result.returncode == 2
    assert "ACTION" in one_line(result.stderr)


# --------------------------------------------------------------------------- a crawl


def test_bare_seed_file_is_shorthand_for_crawl(site_url: str, tmp_path: Path) -> None:
    outputs = {}
    for name, argv in {"bare": ["seed.txt"], "crawl": ["crawl", "seed.txt"]}.items():
        work = tmp_path / name
        work.mkdir()
        write_settings(work / "settings.toml", QUICK)
        write_seeds(work / "seed.txt", [site_url])
        result = cli(*argv, cwd=work)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert " ERROR " not in result.stderr
        assert " WARNING " not in result.stderr
        outputs[name] = result.stdout
        base = site_url.rstrip("/")
        assert fetched_urls(work / "crawl.db") == {f"{base}/", f"{base}/a", f"{base}/b"}
        assert query(work / "crawl.db", "select status, seed_file from crawls") == [
            ("finished", "seed.txt")
        ]
    for out in outputs.values():
        assert "crawl 1 finished" in out
        assert "pages:   3 fetched, 3 ok, 0 failed" in out
        assert "errors:  0" in out
        assert "time:" in out
        assert "pages/s" in out
        assert "sqlite3 crawl.db" in out


# --------------------------------------------------------------------------- seed files


def test_bad_seed_lines_are_reported_and_skipped(site_url: str, workdir: Path) -> None:
    (workdir / "seed.txt").write_text(
        f"# my seeds\n\nnot a url\n{site_url}\nftp://example.test/\n", encoding="utf-8"
    )
    result = cli("seed.txt", cwd=workdir)
    assert result.returncode == 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("seed.txt:3: ")
    assert "not a url" in lines[0]
    assert lines[1].startswith("seed.txt:5: ")
    assert "ftp://example.test/" in lines[1]
    assert "3 fetched" in result.stdout
    assert len(fetched_urls(workdir / "crawl.db")) == 3


def _no_database(workdir: Path) -> None:
    assert not (workdir / "crawl.db").exists()
    assert list(workdir.glob("crawl.db*")) == []


@pytest.mark.parametrize(
    ("make", "wanted"),
    [
        (lambda d: (d / "seed.txt").write_text("# nothing\n\n   \n", encoding="utf-8"), "no valid"),
        (lambda d: (d / "seed.txt").write_bytes(b""), "no valid"),
        (lambda d: (d / "seed.txt").unlink(), "No such file"),
        (lambda d: ((d / "seed.txt").unlink(), (d / "seed.txt").mkdir()), "directory"),
    ],
    ids=["comments-only", "empty", "missing", "directory"],
)
def test_unusable_seed_file_exits_2(workdir: Path, make, wanted: str) -> None:
    make(workdir)
    result = cli("seed.txt", cwd=workdir)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "seed.txt" in line
    assert wanted in line
    assert result.stdout == ""
    _no_database(workdir)


def test_seed_file_with_only_bad_lines_exits_2(workdir: Path) -> None:
    (workdir / "seed.txt").write_text("foo\nbar baz\n", encoding="utf-8")
    result = cli("seed.txt", cwd=workdir)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ")[0] for line in lines[:2]] == ["seed.txt:1", "seed.txt:2"]
    assert len(lines) == 3
    assert "no valid seed" in lines[2]
    _no_database(workdir)


# --------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("file", "text", "flags", "wanted"),
    [
        pytest.param(
            "other.toml",
            "[crawl]\nworkerz = 4\n",
            ("--config", "other.toml"),
            ("workerz", "other.toml"),
            id="unknown-key-in-config-file",
        ),
        pytest.param(
            "settings.toml",
            "[politeness]\ndelay_s = 0\n",
            (),
            ("delay_s", "settings.toml"),
            id="unknown-key-in-default-settings-toml",
        ),
        pytest.param(
            "settings.toml",
            '[crawl]\nworkers = "eight"\n',
            (),
            ("workers", "settings.toml", "'eight'"),
            id="wrong-type-in-config-file",
        ),
    ],
)
def test_bad_settings_file(
    workdir: Path, file: str, text: str, flags: tuple[str, ...], wanted: tuple[str, ...]
) -> None:
    (workdir / file).write_text(text, encoding="utf-8")
    result = cli("seed.txt", *flags, cwd=workdir)
    assert result.returncode == 2
    line = one_line(result.stderr)
    for part in wanted:
        assert part in line
    _no_database(workdir)


def test_missing_config_file(workdir: Path) -> None:
    result = cli("seed.txt", "--config", "nope.toml", cwd=workdir)
    assert result.returncode == 2
    assert "nope.toml" in one_line(result.stderr)
    _no_database(workdir)


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        pytest.param({"CRAWLER_CRAWL_WORKERS": "abc"}, ("CRAWLER_CRAWL_WORKERS", "abc"), id="bad"),
        pytest.param({"CRAWLER_CRAWL_WORKER": "4"}, ("CRAWLER_CRAWL_WORKER",), id="unknown"),
        pytest.param(
            {"CRAWLER_CRAWL_WORKRS": "4"},
            ("CRAWLER_CRAWL_WORKRS", "unknown key 'workrs' in [crawl]"),
            id="typo-in-a-known-section",
        ),
    ],
)
def test_a_bad_env_var_exits_2(workdir: Path, env: dict[str, str], wanted: tuple[str, ...]) -> None:
    result = cli("seed.txt", cwd=workdir, env=env)
    assert result.returncode == 2
    line = one_line(result.stderr)
    for part in wanted:
        assert part in line
    _no_database(workdir)


def test_env_vars_that_are_not_settings_are_ignored_with_one_warning_each(
    site_url: str, workdir: Path
) -> None:
    """Other tools set CRAWLER_CMD, CRAWLER_HOME...: not settings (no section of that name), so
    the crawl starts anyway, saying once per variable that it ignores it, also when a command
    loads its settings twice (recrawl: the latest crawl's, then these over them)."""
    write_seeds(workdir / "seed.txt", [site_url])
    env = {"CRAWLER_CMD": "python -m crawler", "CRAWLER_HOME": "/opt/crawler"}
    for argv in (["seed.txt"], ["recrawl"]):
        result = cli(*argv, cwd=workdir, env=env)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        mentions = sorted(line for line in result.stderr.splitlines() if "CRAWLER_" in line)
        assert len(mentions) == 2, result.stderr
        for line, var in zip(mentions, ["CRAWLER_CMD", "CRAWLER_HOME"], strict=True):
            assert f"ignoring environment variable {var}: not a setting" in line
    assert len(fetched_urls(workdir / "crawl.db")) == 3


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["seed.txt", "--bogus"], "--bogus"),
        (["crawl", "seed.txt", "--workers"], "--workers"),
        (["crawl", "seed.txt", "--workers", "abc"], "abc"),
        (["crawl", "seed.txt", "--workers", "-1"], "workers"),
        (["crawl", "seed.txt", "--workers", "0"], "workers"),
        (["crawl", "seed.txt", "--max-pages", "-3"], "max_pages"),
        (["crawl", "seed.txt", "--timeout", "0"], "total_timeout"),
        (["crawl", "seed.txt", "--user-agent", ""], "user_agent"),
        (["db", "upgrade", "--workers", "3"], "--workers"),
    ],
)
def test_bad_flags_exit_2_with_one_line(workdir: Path, argv: list[str], wanted: str) -> None:
    result = cli(*argv, cwd=workdir)
    assert result.returncode == 2
    assert wanted in one_line(result.stderr)
    assert result.stdout == ""
    _no_database(workdir)


def test_flags_override_env_which_overrides_the_file(
    site_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = site_server(tiny_site())
    monkeypatch.chdir(tmp_path)
    seeds = write_seeds(tmp_path / "seed.txt", [srv.url("/")])
    config = write_settings(
        tmp_path / "mine.toml",
        QUICK,
        {"crawl": {"workers": 3, "max_pages": 40, "max_depth": 2}},
    )
    monkeypatch.setenv("CRAWLER_CRAWL_WORKERS", "5")
    monkeypatch.setenv("CRAWLER_CRAWL_MAX_PAGES", "50")
    monkeypatch.setenv("CRAWLER_CRAWL_USER_AGENT", "env-bot/1")
    argv = ["crawl", str(seeds), "--config", str(config), "-q"]
    assert main([*argv, "--db", "one.db", "--workers", "7", "--user-agent", "flag-bot/2"]) == 0
    assert main([*argv, "--db", "two.db"]) == 0
    monkeypatch.delenv("CRAWLER_CRAWL_WORKERS")
    monkeypatch.delenv("CRAWLER_CRAWL_MAX_PAGES")
    monkeypatch.delenv("CRAWLER_CRAWL_USER_AGENT")
    assert main([*argv, "--db", "three.db"]) == 0

    def used(db: str) -> dict[str, object]:
        [(text,)] = query(tmp_path / db, "select settings from crawls")
        [(workers,)] = query(
            tmp_path / db, "select json_extract(settings, '$.crawl.workers') from crawls"
        )
        settings = json.loads(text)
        assert settings["crawl"]["workers"] == workers
        return {
            "workers": workers,
            "max_pages": settings["crawl"]["max_pages"],
            "max_depth": settings["crawl"]["max_depth"],
            "user_agent": settings["crawl"]["user_agent"],
            "delay": settings["politeness"]["delay"],
            "db": settings["store"]["db"],
        }

    file_only = {"max_depth": 2, "delay": 0.0}
    assert used("one.db") == {
        "workers": 7,
        "max_pages": 50,
        "user_agent": "flag-bot/2",
        "db": "one.db",
        **file_only,
    }
    assert used("two.db") == {
        "workers": 5,
        "max_pages": 50,
        "user_agent": "env-bot/1",
        "db": "two.db",
        **file_only,
    }
    assert used("three.db") == {
        "workers": 3,
        "max_pages": 40,
        "user_agent": "crawler/0.1",
        "db": "three.db",
        **file_only,
    }
    # And the settings recorded are the settings used: the server saw each run's user agent.
    agents = {r.headers.get("User-Agent") for r in srv.log}
    assert agents == {"flag-bot/2", "env-bot/1", "crawler/0.1"}


# --------------------------------------------------------------------------- logging


def test_quiet_and_verbose(site_url: str, workdir: Path) -> None:
    write_seeds(workdir / "seed.txt", [site_url])
    db = workdir / "crawl.db"

    verbose = cli("seed.txt", "-v", cwd=workdir)
    assert verbose.returncode == 0
    assert " DEBUG " in verbose.stderr
    assert site_url in verbose.stderr  # each fetch is logged at debug level

    def leave_one_url_claimed() -> None:
        con = sqlite3.connect(db)
        with con:
            con.execute("update urls set state = 'fetching' where url = ?", (site_url,))
        con.close()

    leave_one_url_claimed()
    normal = cli("seed.txt", cwd=workdir)
    assert normal.returncode == 0
    assert "requeued 1 URLs" in normal.stderr
    assert " INFO " in normal.stderr
    assert " DEBUG " not in normal.stderr

    leave_one_url_claimed()
    quiet = cli("seed.txt", "-q", cwd=workdir)
    assert quiet.returncode == 0
    assert quiet.stderr == ""
    assert "crawl 3 finished" in quiet.stdout  # -q quiets the log, not the summary
    # The requeue happened all the same: the claimed URL was fetched again, silently.
    assert query(
        db, "select count(*) from fetches f join urls u on u.id = f.url_id where url = ?", site_url
    ) == [(3,)]


# --------------------------------------------------------------------------- databases


def test_text_file_as_database_is_refused_untouched(workdir: Path) -> None:
    db = workdir / "notes.db"
    db.write_bytes(b"my notes\nnot a database\n")
    before = db.read_bytes()
    result = cli("seed.txt", "--db", "notes.db", cwd=workdir)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "is not a SQLite database" in line
    assert "notes.db" in line
    assert db.read_bytes() == before
    assert sorted(p.name for p in workdir.glob("notes.db*")) == ["notes.db"]


def test_foreign_sqlite_database_is_refused_untouched(workdir: Path) -> None:
    db = workdir / "app.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("create table customers (id integer primary key, name text)")
        con.execute("insert into customers (name) values ('ada')")
    con.close()
    before = db.read_bytes()
    for argv in (["seed.txt", "--db", "app.db"], ["db", "upgrade", "--db", "app.db"]):
        result = cli(*argv, cwd=workdir)
        assert result.returncode == 2
        line = one_line(result.stderr)
        assert "not a crawler database" in line
        assert "customers" in line
        assert db.read_bytes() == before
        assert sorted(p.name for p in workdir.glob("app.db*")) == ["app.db"]


def test_database_in_missing_directory(workdir: Path) -> None:
    result = cli("seed.txt", "--db", "no/such/dir/crawl.db", cwd=workdir)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "no such directory" in line
    assert not (workdir / "no").exists()


def test_directory_as_database(workdir: Path) -> None:
    (workdir / "out").mkdir()
    result = cli("seed.txt", "--db", "out", cwd=workdir)
    assert result.returncode == 2
    assert "is a directory" in one_line(result.stderr)
    assert list((workdir / "out").iterdir()) == []


def test_unknown_database_driver(workdir: Path) -> None:
    result = cli("seed.txt", "--db", "nosuchdb://x/y", cwd=workdir)
    assert result.returncode == 2
    assert "nosuchdb" in one_line(result.stderr)


# --------------------------------------------------------------------------- failure


def test_nothing_fetchable_exits_1_with_summary(workdir: Path) -> None:
    result = cli("seed.txt", cwd=workdir)  # seed.txt: http://127.0.0.1:9/, nobody listens
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "pages:   0 fetched, 0 ok, 1 failed" in result.stdout
    assert "errors:  1 (connect 1)" in result.stdout
    assert "pages/s" in result.stdout
    assert query(workdir / "crawl.db", "select state from urls") == [("failed",)]
    assert query(workdir / "crawl.db", "select kind, final from errors") == [("connect", 1)]
