"""Running a crawler as a subprocess and measuring it: wall time, CPU, peak RSS, pages stored.

CPU comes from ``os.wait4`` on the child: user + system seconds of the child and every
descendant it waited for. Peak RSS is the larger of ``ru_maxrss`` (the largest single process)
and the peak of the resident sets of the child and all its descendants added up, sampled every
20 ms from ``/proc``: a crawler that parses in child processes pays for each of them. Pages
are counted in each peer's own output (our database, Scrapy's JSONL feed, the plain pattern's
SQLite file), so a peer that skipped pages cannot look fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PEERS_DIR = Path(__file__).resolve().parent / "peers"
SCRAPY_MISSING = "Scrapy is not installed: pip install -e '.[bench]' (or make bench installs it)"


@dataclass
class Measured:
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stderr_tail: str


def child_env() -> dict[str, str]:
    """The environment for every peer: no proxies, no CRAWLER_* overrides, bytecode cached."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY") and not k.startswith("CRAWLER_")
    }
    env["PYTHONUNBUFFERED"] = "1"
    # Scrapy's modules were byte-compiled when pip installed them; ours (an editable install)
    # would be compiled again on every run where PYTHONDONTWRITEBYTECODE is set: ~80 ms of CPU
    # no installed crawler pays.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class TreeRss(threading.Thread):
    """Samples the summed resident set of a process and its descendants (Linux ``/proc``)."""

    PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval_s = interval_s
        self.peak_kb = 0
        self._stop_event = threading.Event()

    def _tree(self, pid: int) -> list[int]:
        pids, todo = [], [pid]
        while todo:
            p = todo.pop()
            pids.append(p)
            try:  # a process or thread may end between listing and reading
                for task in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{task}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
            except OSError:
                continue
        return pids

    def sample(self) -> int:
        total = 0
        for p in self._tree(self.pid):
            try:
                total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * self.PAGE_KB
            except (OSError, IndexError, ValueError):
                continue
        return total

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                self.peak_kb = max(self.peak_kb, self.sample())
            except (OSError, ValueError):  # the tree changed under the sample: take the next
                continue

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def run_measured(
    cmd: list[str], cwd: Path, timeout_s: float, env: dict[str, str] | None = None
) -> Measured:
    """Run ``cmd`` to its end (killed after ``timeout_s``) and measure it."""
    cwd.mkdir(parents=True, exist_ok=True)
    # Write back what the site generator and the previous peer left dirty in the page cache
    # first: the kernel flushing 200 MB during a run took CPU from the peer that ran next.
    os.sync()
    with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env={**child_env(), **(env or {})}, stdout=out, stderr=err
        )
        killer = threading.Timer(timeout_s, proc.kill)
        killer.daemon = True
        killer.start()
        sampler = TreeRss(proc.pid)
        sampler.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
            sampler.stop()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    tail = (cwd / "stderr.txt").read_text(errors="replace")[-2000:]
    return Measured(
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=max(usage.ru_maxrss / 1024, sampler.peak_kb / 1024),
        stderr_tail=tail,
    )


def write_settings(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """A settings TOML file of ``{section: {key: value}}``."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, str):
                lines.append(f"{key} = {json.dumps(value)}")
            else:
                lines.append(f"{key} = {value}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


POLITENESS_OFF = {
    "crawl": {"workers": 32},
    "politeness": {"obey_robots": False, "delay": 0, "per_host_concurrency": 32},
}
"""Exactly the "politeness off" file of issue 8, scenario 1."""


@dataclass
class PeerRow:
    peer: str
    pages: int
    expected: int | None
    complete: bool | None
    wall_s: float
    pages_per_s: float
    cpu_s: float
    cpu_ms_per_page: float
    peak_rss_mb: float
    returncode: int
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(peer: str, m: Measured, pages: int, expected: int | None, note: str = "") -> PeerRow:
    if m.returncode != 0:
        note = (note + f" exit {m.returncode}: " + m.stderr_tail.strip()[-300:]).strip()
    return PeerRow(
        peer=peer,
        pages=pages,
        expected=expected,
        complete=None if expected is None else pages >= expected,
        wall_s=round(m.wall_s, 3),
        pages_per_s=round(pages / m.wall_s, 2) if m.wall_s > 0 else 0.0,
        cpu_s=round(m.cpu_s, 3),
        cpu_ms_per_page=round(1000 * m.cpu_s / pages, 3) if pages else 0.0,
        peak_rss_mb=round(m.peak_rss_mb, 1),
        returncode=m.returncode,
        note=note,
    )


def bracket(peer: str, runs: list[PeerRow]) -> PeerRow:
    """One row for several runs of the same peer: pages/s and CPU per page over all of them,
    the highest RSS. Runs placed before and after another peer's cancel the machine's drift
    between them (on the 2-core VM a run's CPU per page moved by up to 20 % within minutes)."""
    pages = sum(r.pages for r in runs)
    wall = sum(r.wall_s for r in runs)
    cpu = sum(r.cpu_s for r in runs)
    return PeerRow(
        peer=peer,
        pages=min(r.pages for r in runs),
        expected=runs[0].expected,
        complete=None if runs[0].complete is None else all(r.complete for r in runs),
        wall_s=round(wall / len(runs), 3),
        pages_per_s=round(pages / wall, 2) if wall > 0 else 0.0,
        cpu_s=round(cpu / len(runs), 3),
        cpu_ms_per_page=round(1000 * cpu / pages, 3) if pages else 0.0,
        peak_rss_mb=max(r.peak_rss_mb for r in runs),
        returncode=next((r.returncode for r in runs if r.returncode), 0),
        note="; ".join(
            f"run {i}: {r.pages_per_s:g} pages/s, {r.cpu_ms_per_page:g} ms/page"
            + (f" ({r.note})" if r.note else "")
            for i, r in enumerate(runs, 1)
        ),
    )


def write_seeds(path: Path, seeds: list[str]) -> Path:
    path.write_text("\n".join(seeds) + "\n")
    return path


@dataclass
class OurCounts:
    pages: int
    """Fetches with status 200."""
    urls: int
    links: int
    fetches: int


def count_ours(db: Path) -> OurCounts:
    if not db.exists():
        return OurCounts(0, 0, 0, 0)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:

        def one(sql: str) -> int:
            return int(con.execute(sql).fetchone()[0])

        return OurCounts(
            pages=one("SELECT count(*) FROM fetches WHERE status_code = 200"),
            urls=one("SELECT count(*) FROM urls"),
            links=one("SELECT count(*) FROM links"),
            fetches=one("SELECT count(*) FROM fetches"),
        )
    finally:
        con.close()


def run_ours(
    workdir: Path,
    seeds: list[str],
    settings: dict[str, dict[str, Any]],
    *,
    expected: int | None,
    timeout_s: float,
    extra: list[str] | None = None,
) -> tuple[PeerRow, OurCounts]:
    """``python -m crawler crawl seed.txt --db X --config politeness-off.toml -q``."""
    workdir.mkdir(parents=True, exist_ok=True)
    seed = write_seeds(workdir / "seed.txt", seeds)
    config = write_settings(workdir / "politeness-off.toml", settings)
    db = workdir / "crawl.db"
    for stale in (db, workdir / "crawl.db-wal", workdir / "crawl.db-shm"):
        stale.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "crawler", "crawl", str(seed), "--db", str(db)]
    cmd += ["--config", str(config), "-q", *(extra or [])]
    m = run_measured(cmd, workdir, timeout_s)
    counts = count_ours(db)
    note = f"stored {counts.urls} urls, {counts.links} links, {counts.fetches} fetches"
    return _row("ours", m, counts.pages, expected, note), counts


def scrapy_available() -> bool:
    return importlib.util.find_spec("scrapy") is not None


def run_scrapy(
    workdir: Path, seeds: list[str], hosts: list[str], *, expected: int, timeout_s: float
) -> PeerRow | None:
    """Scrapy with the same concurrency, robots off, no delay; None if not installed."""
    if not scrapy_available():
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    seed = write_seeds(workdir / "seed.txt", seeds)
    out = workdir / "items.jsonl"
    cmd = [sys.executable, "-m", "scrapy", "runspider", str(PEERS_DIR / "scrapy_spider.py")]
    cmd += ["-a", f"seed_file={seed}", "-a", f"hosts={','.join(hosts)}", "-O", f"{out}:jsonlines"]
    for setting in (
        "CONCURRENT_REQUESTS=32",
        "CONCURRENT_REQUESTS_PER_DOMAIN=32",
        "ROBOTSTXT_OBEY=False",
        "DOWNLOAD_DELAY=0",
        "LOG_LEVEL=WARNING",
        "TELNETCONSOLE_ENABLED=False",
    ):
        cmd += ["-s", setting]
    m = run_measured(cmd, workdir, timeout_s)
    pages = 0
    if out.exists():
        seen: set[str] = set()
        with open(out) as f:
            for line in f:
                item = json.loads(line)
                if item.get("status") == 200:
                    seen.add(item["url"])
        pages = len(seen)
    return _row("scrapy", m, pages, expected)


def run_plain(workdir: Path, seeds: list[str], *, expected: int, timeout_s: float) -> PeerRow:
    workdir.mkdir(parents=True, exist_ok=True)
    seed = write_seeds(workdir / "seed.txt", seeds)
    db = workdir / "plain.db"
    db.unlink(missing_ok=True)
    cmd = [sys.executable, str(PEERS_DIR / "plain.py"), str(seed), str(db), "--workers", "32"]
    m = run_measured(cmd, workdir, timeout_s)
    pages = 0
    if db.exists():
        con = sqlite3.connect(db)
        pages = int(con.execute("SELECT count(*) FROM pages WHERE status = 200").fetchone()[0])
        con.close()
    return _row("plain", m, pages, expected)


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    mem_mb = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_mb = int(line.split()[1]) // 1024
                break
    except OSError:
        pass
    from bench.servers import nginx_binary, nginx_version

    nginx = nginx_binary()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_mb": mem_mb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "nginx": nginx_version(nginx) if nginx else None,
        "scrapy": _version("scrapy"),
        "requests": _version("requests"),
        "beautifulsoup4": _version("beautifulsoup4"),
        "lxml": _version("lxml"),
        "sqlalchemy": _version("sqlalchemy"),
    }
