"""The reading tools at the edges (issue 13): file names that look like URL syntax, databases
nobody is writing, readers who cannot write, hostile text on a terminal, foreign files, and
database URLs whose password must never be printed.

One small site is crawled once for the module (a page whose title holds terminal escape
sequences, text and bodies kept); each test copies that database where it needs it, or crawls
again under the file name it is about. Every tool runs in every case: ``TOOL_ARGS`` names them
all, and a test keeps it equal to :data:`crawler.tools.TOOLS`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.commands.cli import main
from crawler.tools import TOOLS
from tests import dnsguard
from tests.crawlkit import FAST, ROOT, query, write_seeds, write_settings
from tests.mockserver import Page, SiteServer, generate_site, loopback_hosts
from tests.store import test_db

pytestmark = pytest.mark.timeout(180)

pg_schema = test_db.pg_url  # the fixture: a URL to a fresh PostgreSQL schema

WORD = "quokka"
HOSTILE = "x\x1b]0;pwned\x07y\x1b]52;c;aGVsbG8=\x07z\x9b31m"
"""Set the window title, write the clipboard, and an 8-bit CSI: what a page title may hold."""
SECRET = "secretpw"

TOOL_ARGS: dict[str, list[str]] = {
    "stats": [],
    "errors": [],
    "query": ["select count(*) as urls, (select group_concat(host, ' ') from hosts) from urls"],
    "search": [WORD],
    "export": ["--table", "pages", "-o", "-"],
    "warc": ["-o", "{out}/crawl.warc.gz"],
    "report": ["-o", "{out}/report.html"],
}


def tool_argv(name: str, db: Path | str, out: Path) -> list[str]:
    return [name, "--db", str(db), *(a.format(out=out) for a in TOOL_ARGS[name])]


class Crawled:
    """The module's site: a server that stays up, and one finished crawl of it."""

    def __init__(self, srv: SiteServer, root_urls: list[str], tmp: Path) -> None:
        self.srv = srv
        self.seeds = write_seeds(tmp / "seed.txt", root_urls)
        self.settings = write_settings(
            tmp / "settings.toml", FAST, {"store": {"keep_text": True, "keep_html": True}}
        )
        self.db = tmp / "crawl" / "crawl.db"
        self.db.parent.mkdir()
        assert self.crawl(self.db) == 0

    def crawl(self, db: Path) -> int:
        return main(
            ["crawl", str(self.seeds), "--db", str(db), "--config", str(self.settings), "-q"]
        )

    def copy(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(self.db, directory / "crawl.db"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crawled]:
    tmp = tmp_path_factory.mktemp("reading")
    with SiteServer(hosts=loopback_hosts(1)) as srv:
        gen = generate_site(srv.hosts, 4, port=srv.port, seed=5, site=srv.site)
        gen.add_linked(
            "/hostile.html",
            Page(f"<html><head><title>{HOSTILE}</title></head><body>a {WORD}</body></html>"),
            from_path="/",
        )
        yield Crawled(srv, gen.root_urls, tmp)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def journal_mode_in_header(db: Path) -> int:
    """Byte 18 of the header: 1 rollback journal, 2 WAL (https://sqlite.org/fileformat.html)."""
    with db.open("rb") as f:
        return f.read(20)[18]


def test_tool_args_name_every_tool() -> None:
    assert set(TOOL_ARGS) == set(TOOLS)


# --------------------------------------------------------------------------- 1. the file named

NAMES = ["run#1.db", "a%20b.db", "what?mode=memory.db", "with space.db", "naïve-数据.db"]


@pytest.mark.parametrize("name", NAMES)
def test_crawl_and_every_tool_open_exactly_the_file_named(
    site: Crawled, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work, out = tmp_path / "db", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    db = work / name
    assert site.crawl(db) == 0
    assert listing(work) == [name]
    urls = query(db, "select count(*) from urls")[0][0]
    assert urls == query(site.db, "select count(*) from urls")[0][0]
    for tool in TOOLS:
        capsys.readouterr()
        assert main(tool_argv(tool, db, out)) == 0, (tool, capsys.readouterr().err)
        printed = capsys.readouterr().out
        if tool == "query":
            assert printed.splitlines()[1].split("\t")[0] == str(urls)
        assert listing(work) == [name], tool


# --------------------------------------------------------------------------- 2. nothing beside


def _read_with_every_tool(db: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = listing(db.parent)
    for tool in TOOLS:
        assert main(tool_argv(tool, db, out)) == 0, (tool, capsys.readouterr().err)
        assert listing(db.parent) == before, tool
    capsys.readouterr()


def test_a_finished_crawl_is_one_file_and_reading_it_adds_nothing(
    site: Crawled, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert listing(site.db.parent) == ["crawl.db"]  # no -wal, -shm or .lock
    assert journal_mode_in_header(site.db) == 1  # needs nothing beside it to be read
    copy = site.copy(tmp_path / "copy")
    data = copy.read_bytes()
    _read_with_every_tool(copy, tmp_path, capsys)
    assert listing(copy.parent) == ["crawl.db"]
    assert copy.read_bytes() == data


def test_a_wal_database_nobody_has_open_is_read_without_adding_files(
    site: Crawled, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database left by an earlier version (WAL in its header, no -wal file)."""
    copy = site.copy(tmp_path / "copy")
    con = sqlite3.connect(copy)
    con.execute("pragma journal_mode = wal")
    con.close()
    assert journal_mode_in_header(copy) == 2
    assert listing(copy.parent) == ["crawl.db"]
    data = copy.read_bytes()
    _read_with_every_tool(copy, tmp_path, capsys)
    assert listing(copy.parent) == ["crawl.db"]
    assert copy.read_bytes() == data


@contextlib.contextmanager
def writing(db: Path) -> Iterator[None]:
    """A crawl's writer, as SQLite sees it: the database open in WAL mode, with a commit that
    only the -wal file holds (no checkpoint), for as long as the block runs."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("pragma journal_mode = wal")
        con.execute("pragma wal_autocheckpoint = 0")
        con.execute("insert into hosts(host) values ('http://in-the-wal.test:80')")
        assert Path(f"{db}-wal").exists()
        yield
    finally:
        con.close()


def test_while_a_crawl_writes_readers_see_its_newest_commits(
    site: Crawled, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = site.copy(tmp_path / "copy")
    with writing(copy):
        capsys.readouterr()
        assert main(["query", "--db", str(copy), "select host from hosts"]) == 0
        assert "http://in-the-wal.test:80" in capsys.readouterr().out
    assert listing(copy.parent) == ["crawl.db"]  # the writer, last to close, cleaned up


# --------------------------------------------------------------------------- 3. cannot write

DRIVER = """
import contextlib, io, json, sys
from crawler.commands.cli import main
results = {}
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    results[argv[0]] = [code, err.getvalue(), out.getvalue()]
print(json.dumps(results))
"""
"""Runs every tool in one process (one interpreter start for seven tools) and prints, as
JSON, each one's exit status, stderr and stdout."""


@pytest.fixture
def shared_dirs() -> Iterator[tuple[Path, Path]]:
    """A directory only root may write (the database's) and one anybody may (the outputs),
    outside pytest's own temporary directory, which other users cannot enter."""
    base = Path(tempfile.mkdtemp(prefix="crawler-ro-", dir="/tmp"))
    try:
        base.chmod(0o755)
        data, out = base / "data", base / "out"
        data.mkdir(mode=0o755)
        out.mkdir()
        out.chmod(0o777)
        yield data, out
    finally:
        shutil.rmtree(base)


def _every_tool_as(prefix: list[str], db: Path, out: Path) -> dict[str, list[object]]:
    argvs = [tool_argv(name, db, out) for name in TOOLS]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    env = dnsguard.subprocess_env(env)  # keep the DNS guard in the child
    done = subprocess.run(
        [*prefix, sys.executable, "-c", DRIVER, json.dumps(argvs)],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, list[object]] = json.loads(done.stdout.splitlines()[-1])
    return results


NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root (to run as nobody and to bind-mount) and setpriv",
)
STATES = ["finished", "left by an earlier version", "being written"]


@contextlib.contextmanager
def in_state(site: Crawled, directory: Path, state: str) -> Iterator[Path]:
    """The module's database copied into ``directory``, as a finished crawl leaves it, as an
    earlier version left it (WAL header, no -wal), or open in a writer (WAL, -wal, -shm)."""
    db = site.copy(directory)
    db.chmod(0o644)
    if state == "left by an earlier version":
        con = sqlite3.connect(db)
        con.execute("pragma journal_mode = wal")
        con.close()
    if state != "being written":
        yield db
        return
    with writing(db):
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").chmod(0o644)
        yield db


def _all_read(results: dict[str, list[object]], state: str) -> None:
    for name, (code, err, _out) in results.items():
        assert code == 0, (name, state, err)
        assert "crawler:" not in str(err), (name, state, err)
    assert str(results["query"][2]).split()[0] == "urls"
    if state == "being written":  # the newest commit, only in the -wal file, was seen
        assert "in-the-wal.test" in str(results["query"][2])


@needs_root
@pytest.mark.slow
@pytest.mark.parametrize("state", STATES)
def test_a_reader_who_cannot_write_reads_with_every_tool(
    site: Crawled, shared_dirs: tuple[Path, Path], state: str
) -> None:
    """Another user (nobody), in a directory only root may write: every tool reads."""
    data, out = shared_dirs
    with in_state(site, data, state) as db:
        before = listing(data)
        _all_read(_every_tool_as(NOBODY, db, out), state)
        assert listing(data) == before


@needs_root
@pytest.mark.slow
@pytest.mark.parametrize("state", STATES)
def test_every_tool_reads_a_database_on_a_read_only_mount(
    site: Crawled, shared_dirs: tuple[Path, Path], state: str
) -> None:
    """Root, whom permissions do not stop, on a read-only bind mount of the directory."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    data, out = shared_dirs
    mount = out / "mnt"
    mount.mkdir()
    bind = ["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{data}" "{mount}" && exec "$@"']
    with in_state(site, data, state) as db:
        before = listing(data)
        _all_read(_every_tool_as([*bind, "sh"], mount / db.name, out), state)
        assert listing(data) == before


# --------------------------------------------------------------------------- 4. the terminal


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", TERM="xterm")
    return dnsguard.subprocess_env(env)  # keep the DNS guard in the child


def on_terminal(argv: list[str], cwd: Path) -> tuple[int, bytes, str]:
    """Run the CLI with stdout on a pseudo-terminal: (exit status, what the terminal got,
    stderr)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler", *argv],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=_cli_env(),
    )
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return proc.wait(timeout=60), bytes(shown), err


@pytest.fixture(scope="module")
def hostile_copy(site: Crawled, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The crawl, with the hostile text also where stats and errors show it: a content type
    and a final error's message (servers send both)."""
    db = site.copy(tmp_path_factory.mktemp("hostile"))
    con = sqlite3.connect(db)
    with con:
        (url_id,) = con.execute("select id from urls where url like '%/hostile.html'").fetchone()
        con.execute("update fetches set content_type = ? where url_id = ?", (HOSTILE, url_id))
        con.execute(
            "insert into errors (url_id, crawl_id, at, attempt, kind, status_code, message, final)"
            " values (?, 1, '2026-01-01 00:00:00', 1, 'http_status', 500, ?, 1)",
            (url_id, HOSTILE),
        )
    con.close()
    return db


TERMINAL_COMMANDS = {
    "query table": ["query", "select title from pages"],
    "query csv": ["query", "--format", "csv", "select title from pages"],
    "query jsonl": ["query", "--format", "jsonl", "select title from pages"],
    "search": ["search", WORD],
    "stats": ["stats"],
    "errors": ["errors"],
    "export": ["export", "--table", "pages", "-o", "-"],
}


@pytest.mark.parametrize("command", TERMINAL_COMMANDS)
def test_a_page_cannot_write_to_the_terminal(
    hostile_copy: Path, command: str, tmp_path: Path
) -> None:
    argv = [*TERMINAL_COMMANDS[command], "--db", str(hostile_copy)]
    code, shown, err = on_terminal(argv, tmp_path)
    assert code == 0, err
    assert b"\x1b" not in shown
    assert b"\x07" not in shown
    assert "\x9b" not in shown.decode()
    if command in ("query jsonl", "export"):  # JSON's own escapes for C0, ours for the rest
        assert b"\\u001b]0;pwned\\u0007y\\u001b]52;c;aGVsbG8=\\u0007z\\x9b31m" in shown
    else:
        assert b"\\x1b]0;pwned\\x07y\\x1b]52;c;aGVsbG8=\\x07z\\x9b31m" in shown


TITLE_SQL = "select title from pages where title like 'x%'"


def test_piped_output_stays_data(hostile_copy: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crawler", "query", "--db", str(hostile_copy), TITLE_SQL],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_cli_env(),
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"title\n{HOSTILE}\n"


def test_warc_is_not_written_to_a_terminal(hostile_copy: Path, tmp_path: Path) -> None:
    code, shown, err = on_terminal(["warc", "--db", str(hostile_copy), "-o", "-"], tmp_path)
    assert code == 2
    assert shown == b""
    assert err == "crawler: warc: not writing a WARC file to a terminal: give -o FILE, or pipe it\n"


# --------------------------------------------------------------------------- 5. foreign files


@pytest.mark.parametrize("tool", TOOLS)
def test_a_foreign_sqlite_file_is_refused_the_same_way_by_every_tool(
    tool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "data" / "other.db"
    other.parent.mkdir()
    con = sqlite3.connect(other)
    con.execute("create table t (x)")
    con.close()
    data = other.read_bytes()
    capsys.readouterr()
    code = main(tool_argv(tool, other, tmp_path))
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == f"crawler: '{other}' is not a crawl database, or an old one (no 'crawls')\n"
    assert other.read_bytes() == data
    assert listing(other.parent) == ["other.db"]


@pytest.mark.parametrize("tool", TOOLS)
def test_a_file_that_is_not_sqlite_is_refused_by_every_tool(
    tool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("not a database\n")
    capsys.readouterr()
    code = main(tool_argv(tool, other, tmp_path))
    assert (code, capsys.readouterr().err) == (2, f"crawler: '{other}' is not a SQLite database\n")


# --------------------------------------------------------------------------- 6. no password

COMMANDS = {
    **{name: [name, *(a.format(out="{out}") for a in TOOL_ARGS[name])] for name in TOOLS},
    "crawl": ["crawl", "{seeds}"],
    "crawl --resume": ["crawl", "--resume"],
    "recrawl": ["recrawl"],
    "worker": ["worker"],
    "schedule": ["schedule"],
    "db upgrade": ["db", "upgrade"],
}
UNUSABLE = {
    "driver missing": (f"mysql://crawler:{SECRET}@127.0.0.1:1/crawl", "cannot use database"),
    "server down": (
        f"postgresql+psycopg://crawler:{SECRET}@127.0.0.1:1/crawl",
        "cannot open database",
    ),
}


@pytest.mark.parametrize("problem", UNUSABLE)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_database_url_that_cannot_work_is_one_line_without_its_password(
    command: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, says = UNUSABLE[problem]
    seeds = write_seeds(tmp_path / "seed.txt", ["http://127.0.0.1:9/"])
    argv = [a.format(out=tmp_path, seeds=seeds) for a in COMMANDS[command]]
    capsys.readouterr()
    code = main([*argv, "--db", url])
    out, err = capsys.readouterr()
    assert code == 2
    assert SECRET not in out + err
    masked = url.replace(SECRET, "***")
    assert err.startswith(f"crawler: {says} '{masked}': "), err
    assert err.count("\n") == 1, err
    assert listing(tmp_path) == ["seed.txt"]


@pytest.mark.postgres
def test_messages_about_a_database_that_works_never_show_its_password(
    pg_schema: str, site: Crawled, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The test server trusts every connection, so any password is accepted: here is one."""
    url = pg_schema.replace("postgres@", f"postgres:{SECRET}@", 1)
    assert SECRET in url
    outputs = []
    for argv in (
        ["db", "upgrade"],
        ["crawl", "--resume"],
        ["recrawl"],
        ["crawl", str(site.seeds), "--config", str(site.settings)],
        ["stats"],
    ):
        main([*argv, "--db", url])
        outputs.append(capsys.readouterr())
    for out, err in outputs:
        assert SECRET not in out + err
    assert "postgres:***@" in outputs[0].out
    assert "nothing to resume" in outputs[1].err
