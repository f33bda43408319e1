"""Watching a crawl (issue 4): progress log lines when stderr is not a terminal, a live display
when it is (under a pty), ``-q``, ``--log-format json`` and ``--log-file``. Real subprocesses."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from tests import dnsguard
from tests.crawlkit import FAST, ROOT, run_cli, write_seeds, write_settings
from tests.mockserver import Page, Site, SiteServer, Slow

pytestmark = pytest.mark.timeout(60)

PROGRESS_FIELDS = ("pages", "ok", "failed", "queued", "in_flight", "pages_per_s", "bytes_per_s")


def _slow_site(pages: int = 16, delay_s: float = 0.3) -> Site:
    """``/`` and ``pages`` pages of ``delay_s`` each: about 1.5 s of crawling with 4 workers."""
    site = Site()
    links = "".join(f'<a href="/s/{i}.html">{i}</a>' for i in range(pages))
    site.add("/", Page(f"<title>root</title>{links}"))
    for i in range(pages):
        site.add(f"/s/{i}.html", Slow(delay_s, Page(f"<title>page {i}</title><p>{'x' * 500}</p>")))
    return site


def _command(tmp: Path, srv: SiteServer, **crawl: object) -> list[str]:
    seeds = write_seeds(tmp / "seed.txt", [srv.url("/")])
    settings = {"crawl": {"workers": 4, "progress_interval": 0.3, **crawl}}
    cfg = write_settings(tmp / "fast.toml", FAST, settings)
    return ["crawl", str(seeds), "--db", str(tmp / "crawl.db"), "--config", str(cfg)]


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(*args, cwd=tmp, env={"PYTHONPATH": str(ROOT)})
    assert "Traceback" not in result.stderr, result.stderr
    return result


def _progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "progress:" in line]


def test_progress_log_lines_when_stderr_is_not_a_terminal(site_server, tmp_path: Path) -> None:
    srv: SiteServer = site_server(_slow_site())
    result = _run(tmp_path, *_command(tmp_path, srv))
    assert result.returncode == 0, result.stderr
    lines = _progress_lines(result.stderr)
    assert len(lines) >= 2, result.stderr
    for line in lines:
        assert "INFO crawler.run.progress: progress:" in line
        for word in ("pages (", " ok, ", " failed, ", " queued, ", " in flight, ", " pages/s, "):
            assert word in line, line
        assert line.endswith("/s"), line  # bytes per second
    assert "crawl 1 finished" in result.stdout  # the summary is on stdout, not in the log


def test_quiet_means_no_progress(site_server, tmp_path: Path) -> None:
    srv: SiteServer = site_server(_slow_site())
    result = _run(tmp_path, *_command(tmp_path, srv), "-q")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "crawl 1 finished" in result.stdout


def test_json_log_lines_carry_the_progress_fields(site_server, tmp_path: Path) -> None:
    srv: SiteServer = site_server(_slow_site())
    result = _run(tmp_path, *_command(tmp_path, srv), "--log-format", "json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    assert records
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    progress = [r for r in records if r["logger"] == "crawler.run.progress"]
    assert len(progress) >= 2
    for record in progress:
        assert record["level"] == "info"
        assert record["message"].startswith("progress: ")
        assert all(key in record for key in PROGRESS_FIELDS), record
        assert isinstance(record["pages"], int)
        assert isinstance(record["in_flight"], int)
    assert max(r["pages"] for r in progress) > 0
    assert any(r["pages_per_s"] > 0 for r in progress)


def test_log_file_takes_the_log_instead_of_stderr(site_server, tmp_path: Path) -> None:
    srv: SiteServer = site_server(_slow_site())
    log_file = tmp_path / "crawl.log"
    result = _run(tmp_path, *_command(tmp_path, srv), "--log-file", str(log_file))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert len(_progress_lines(log_file.read_text(encoding="utf-8"))) >= 2
    assert "crawl 1 finished" in result.stdout


def test_unwritable_log_file_exits_2_with_one_line(tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "seed.txt", ["http://127.0.0.1:9/"])
    bad = tmp_path / "no" / "such" / "dir" / "crawl.log"
    result = _run(tmp_path, "crawl", str(seeds), "--db", "x.db", "--log-file", str(bad))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "log file" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_live_display_on_a_terminal(site_server, tmp_path: Path) -> None:
    """stderr on a pty: a live ``crawling:`` line (rich) instead of log lines; the summary still
    goes to stdout."""
    srv: SiteServer = site_server(_slow_site(pages=24))  # ~2 s: the display refreshes each second
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env.update(PYTHONPATH=str(ROOT), TERM="xterm-256color", COLUMNS="160")
    env = dnsguard.subprocess_env(env)  # keep the DNS guard in the child
    env.pop("NO_COLOR", None)
    chunks: list[bytes] = []

    def read_pty() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_pty, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "crawler", *_command(tmp_path, srv)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=60,
            check=False,
        )
    finally:
        os.close(slave)
        reader.join(5)
        os.close(master)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, screen
    assert "crawling:" in screen
    assert "in flight" in screen
    assert "progress:" not in screen  # no log lines on a terminal: the display says it
    assert "Traceback" not in screen
    stdout = proc.stdout.decode()
    assert "crawl 1 finished" in stdout
    assert "crawling:" not in stdout
