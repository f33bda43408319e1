"""Soak: a generated multi-host site with random faults on 5% of its pages, crawled to the end.

Run by ``.ci/run`` at a small size (about 3,000 pages, under a minute); ``CRAWLER_SOAK_PAGES=20000
pytest -m slow tests/test_soak.py`` runs the issue's full size. The faults are chosen per page by
``random.Random(SEED)``, so a failure reproduces exactly. At the end every URL the crawl found is
either fetched (a 200) or failed with a final ``errors`` row, the set of URLs found is exactly the
set reachable around the pages that never answer, the child's peak RSS stayed under
:data:`PEAK_RSS_BOUND_MB` (see ``docs/reliability-input.md``), and SQLite's integrity check passes.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.crawlkit import FAST, ROOT, query, write_seeds, write_settings
from tests.mockserver import (
    Behaviour,
    RequestContext,
    SiteServer,
    generate_site,
    loopback_hosts,
)

pytestmark = pytest.mark.slow

SEED = 7
FAULT_RATE = 0.05
PAGES = int(os.environ.get("CRAWLER_SOAK_PAGES", "3000"))
HOSTS = 3
PEAK_RSS_BOUND_MB = 300
"""The documented bound on the crawler's peak RSS during the soak, at any size."""

# Fast retries and a short deadline: a page that never answers costs (retries + 1) deadlines.
SOAK_SETTINGS = {
    "crawl": {"workers": 16},
    "politeness": {"per_host_concurrency": 8},
    "fetch": {
        "total_timeout": 0.5,
        "connect_timeout_s": 0.5,
        "read_timeout_s": 0.5,
        "retries": 1,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.02,
    },
    "store": {"batch_ms": 100},
}

# Runs the crawler as its child and reports that child's peak RSS (ru_maxrss, KiB) on the fd
# given as its first argument, so the figure is the crawler's alone, not the largest of
# everything pytest ever spawned.
PEAK_RSS_WRAPPER = (
    "import os, resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[2:]).returncode\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "os.write(int(sys.argv[1]), str(peak).encode())\n"
    "sys.exit(code)\n"
)


def run_with_peak_rss(
    args: list[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``python -m crawler ARGS`` in a subprocess: (its result, its peak RSS in MB)."""
    read_fd, write_fd = os.pipe()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    full_env.update({"PYTHONPATH": str(ROOT)}, **(env or {}))
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                PEAK_RSS_WRAPPER,
                str(write_fd),
                sys.executable,
                "-m",
                "crawler",
                *args,
            ],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            pass_fds=(write_fd,),
        )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        peak_kib = int(pipe.read() or b"0")
    return result, peak_kib / 1024


# --------------------------------------------------------------------------- fault behaviours


def _reset(ctx: RequestContext) -> None:
    """Close with a RST (SO_LINGER 0) once the handler returns."""
    ctx.handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ctx.close_connection()


@dataclass(frozen=True)
class Faulty:
    """The first ``failures`` hits of a page get ``fault``; later hits get the page.

    ``fault`` is one of: ``500`` (a server error), ``reset`` (headers, part of the body, then a
    RST), ``timeout`` (no answer until past the crawler's deadline), ``garbage`` (a status line
    that is not HTTP), ``short`` (a ``Content-Length`` longer than the body, then close).
    """

    inner: Behaviour
    fault: str
    failures: int

    def __call__(self, ctx: RequestContext) -> None:
        if ctx.hits > self.failures:
            self.inner(ctx)
            return
        if self.fault == "500":
            ctx.send(500, "<title>oops</title>")
        elif self.fault == "reset":
            ctx.start(200, {"Content-Type": "text/html"}, length=5000)
            ctx.write(b"<html><head><title>cut")
            _reset(ctx)
        elif self.fault == "timeout":
            if ctx.sleep(3.0):  # the crawler gave up after 0.5 s
                ctx.send(200, "<title>too late</title>")
        elif self.fault == "garbage":
            ctx.handler.wfile.write(b"\x00\x13garbage, not HTTP at all\r\n\r\n\xff\xfe")
            ctx.close_connection()
        elif self.fault == "short":
            ctx.start(200, {"Content-Type": "text/html"}, length=100_000)
            ctx.write(b"<html><head><title>short</title></head><body>only this")
            ctx.close_connection()
        else:
            raise ValueError(self.fault)


FAULTS = ("500", "reset", "timeout", "garbage", "short")


def inject_faults(
    pages: dict[str, Behaviour], site_add: dict[str, tuple[str, str]], rng: random.Random
) -> tuple[set[str], set[str]]:
    """Wrap FAULT_RATE of the non-root pages: (URLs that recover, URLs that never do)."""
    transient: set[str] = set()
    permanent: set[str] = set()
    for url in sorted(pages):
        path = site_add[url][1]
        if path == "/" or rng.random() >= FAULT_RATE:
            continue
        fault = rng.choice(FAULTS)
        # About half recover after one bad answer (the retry gets the page); the rest never do.
        # A garbage status line never recovers: whether the crawler retries an answer that is
        # not HTTP is its policy (kind content, final at once), not this test's business.
        failures = 1 if rng.random() < 0.5 and fault != "garbage" else 1000
        (transient if failures == 1 else permanent).add(url)
        pages[url] = Faulty(pages[url], fault, failures)
    return transient, permanent


def reachable(roots: list[str], links: set[tuple[str, str]], dead: set[str]) -> set[str]:
    """URLs reachable from ``roots`` through ``links`` without expanding a ``dead`` page."""
    out: dict[str, list[str]] = {}
    for src, dst in links:
        out.setdefault(src, []).append(dst)
    seen = set(roots)
    stack = list(roots)
    while stack:
        url = stack.pop()
        if url in dead:
            continue
        for dst in out.get(url, ()):
            if dst not in seen:
                seen.add(dst)
                stack.append(dst)
    return seen


@pytest.mark.timeout(1800)
def test_soak_every_page_fetched_or_finally_failed(tmp_path: Path) -> None:
    hosts = loopback_hosts(HOSTS, first=40)
    server = SiteServer(hosts=hosts).start()
    try:
        gen = generate_site(hosts, PAGES // HOSTS, port=server.port, site=server.site, seed=SEED)
        rng = random.Random(SEED)
        behaviours: dict[str, Behaviour] = dict(gen.pages)
        where = {
            url: (url.split("/")[2].split(":")[0], "/" + url.split("/", 3)[3]) for url in gen.pages
        }
        transient, permanent = inject_faults(behaviours, where, rng)
        for url in transient | permanent:
            host, path = where[url]
            server.site.add(path, behaviours[url], host=host)

        seed_file = write_seeds(tmp_path / "seed.txt", gen.root_urls)
        cfg = write_settings(tmp_path / "settings.toml", FAST, SOAK_SETTINGS)
        db = tmp_path / "crawl.db"
        started = time.monotonic()
        result, peak_mb = run_with_peak_rss(
            ["crawl", str(seed_file), "--db", str(db), "--config", str(cfg), "-q"],
            cwd=tmp_path,
            timeout=1700,
        )
        elapsed = time.monotonic() - started
    finally:
        server.stop()

    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr + result.stdout
    internal = {(s, d) for s, d in gen.links if d in gen.expected_urls}
    expected = reachable(gen.root_urls, internal, permanent)
    rows = query(
        db,
        "select u.url, u.state,"
        " (select count(*) from fetches f where f.url_id = u.id and f.status_code = 200),"
        " (select count(*) from errors e where e.url_id = u.id and e.final)"
        " from urls u where u.url not like ?",
        "%.invalid%",
    )
    rows = [row for row in rows if row[0] not in gen.nofollow_urls]  # recorded, never fetched
    found = {url for url, *_ in rows}
    assert found == expected, (sorted(found - expected)[:5], sorted(expected - found)[:5])
    fetched = {url for url, state, ok, _ in rows if state == "done" and ok >= 1}
    failed = {url for url, state, _, final in rows if state == "failed" and final >= 1}
    assert fetched | failed == found, sorted(found - fetched - failed)[:10]
    assert failed == permanent & found, (sorted(failed - permanent), sorted(permanent - failed))
    assert transient & found <= fetched
    kinds = Counter(k for (k,) in query(db, "select kind from errors where final"))
    assert set(kinds) <= {"http_status", "connect", "timeout", "content", "other"}, kinds
    assert query(db, "pragma integrity_check") == [("ok",)]
    assert peak_mb < PEAK_RSS_BOUND_MB, f"peak RSS {peak_mb:.0f} MB"
    print(
        f"\nsoak: {len(found)} URLs, {len(fetched)} fetched, {len(failed)} failed "
        f"({len(transient)} transient + {len(permanent)} permanent faults), "
        f"final error kinds {dict(kinds)}, peak RSS {peak_mb:.0f} MB, {elapsed:.1f} s"
    )
