"""How crawling scales with worker processes sharing one PostgreSQL frontier (issue 9).

    python -m bench.distributed [--quick] [--db postgresql+psycopg://postgres@127.0.0.1/test]

For 1, 2 and 4 ``worker`` processes: a fresh PostgreSQL schema, seeded with ``crawl --seed-only``,
crawled by the workers from a local site of 20 hosts (127.0.0.2 ... 127.0.0.21) whose every
response (robots.txt too) takes 100 ms of server latency. Politeness is on, with a delay low
enough that workers × threads, not the hosts' slots, is the limit. Prints pages/s for each and
the scaling ratio (4 workers / 1 worker; the target is at least 3.5×), and saves the figures as
``bench/results/distributed-<timestamp>.json``.

pages/s is counted at the server: pages stored in ``fetches`` over the time from the first
request's arrival to the last response, so process start-up (imports, migrations check) is
left out; the wall time from starting the workers to their exit is reported beside it.

Must not: reach beyond loopback, leave a server, a worker process or a schema behind.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LATENCY_S = 0.1
HOSTS = [f"127.0.0.{i}" for i in range(2, 22)]
WORKER_COUNTS = (1, 2, 4)
RUN_TIMEOUT_S = 300.0


# --------------------------------------------------------------------------- the site


class _Handler(BaseHTTPRequestHandler):
    """Sleep ``LATENCY_S``, then answer: a generated page, or robots.txt allowing all."""

    protocol_version = "HTTP/1.1"
    server: _LatencyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        arrived = time.monotonic()
        time.sleep(LATENCY_S)
        if self.path == "/robots.txt":
            body, ctype = b"User-agent: *\nAllow: /\n", "text/plain"
        else:
            body, ctype = self.server.page(self.path), "text/html; charset=utf-8"
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.record(arrived, time.monotonic())


class _LatencyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, host: str, port: int, pages: int, stats: _Stats) -> None:
        self.host, self.pages, self.stats = host, pages, stats
        super().__init__((host, port), _Handler)

    def page(self, path: str) -> bytes:
        """``/`` links to every page of its host, so the frontier is wide from the start (the
        benchmark measures fetching, not discovery); ``/p/<i>.html`` links to the next five."""
        if path == "/":
            i = -1
        elif path.startswith("/p/") and path.endswith(".html") and path[3:-5].isdigit():
            i = int(path[3:-5])
        else:
            return b""
        if i >= self.pages:
            return b""
        last = self.pages if i < 0 else min(i + 6, self.pages)
        links = "".join(f'<li><a href="/p/{j}.html">page {j}</a></li>' for j in range(i + 1, last))
        title = f"{self.host} page {i}"
        return (
            f"<!doctype html><html><head><title>{title}</title></head><body>"
            f"<h1>{title}</h1><p>Some text for the parser.</p><ul>{links}</ul></body></html>"
        ).encode()

    def record(self, arrived: float, finished: float) -> None:
        self.stats.add(arrived, finished)


class _Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.first = float("inf")
        self.last = 0.0

    def add(self, arrived: float, finished: float) -> None:
        with self._lock:
            self.requests += 1
            self.first = min(self.first, arrived)
            self.last = max(self.last, finished)

    def reset(self) -> None:
        with self._lock:
            self.requests, self.first, self.last = 0, float("inf"), 0.0


@contextlib.contextmanager
def serve(pages: int) -> Iterator[tuple[int, _Stats]]:
    """Serve the site on every address of ``HOSTS``, all on one free port."""
    stats = _Stats()
    first = _LatencyServer(HOSTS[0], 0, pages, stats)
    port = first.server_address[1]
    servers = [first] + [_LatencyServer(h, port, pages, stats) for h in HOSTS[1:]]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield port, stats
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
        for t in threads:
            t.join(5)


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class Run:
    workers: int
    pages: int
    """Rows in ``fetches`` (each page once)."""
    requests: int
    """Requests the server answered (robots.txt included)."""
    server_s: float
    """First request's arrival to the last response, at the server."""
    wall_s: float
    """Starting the workers to the last one's exit."""
    pages_per_s: float


@contextlib.contextmanager
def fresh_schema(base_url: str) -> Iterator[str]:
    """A new schema, dropped afterwards; yields a URL whose search_path points at it."""
    admin = create_engine(base_url, poolclass=NullPool)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _settings(path: Path, args: argparse.Namespace) -> Path:
    path.write_text(
        "[crawl]\n"
        f"workers = {args.threads}\n"
        "lease_timeout = 60.0\n"
        "[politeness]\n"
        f"delay = {args.delay}\n"
        f"per_host_concurrency = {args.per_host}\n"
        "obey_robots = true\n"
        "[store]\n"
        "batch_ms = 100\n",
        encoding="utf-8",
    )
    return path


def _cli(*argv: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env["PYTHONPATH"] = str(ROOT)
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "crawler", *argv, "-q"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def run_once(n_workers: int, port: int, stats: _Stats, args: argparse.Namespace) -> Run:
    with fresh_schema(args.db) as db, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cfg = _settings(tmp / "settings.toml", args)
        seeds = tmp / "seed.txt"
        seeds.write_text("".join(f"http://{h}:{port}/\n" for h in HOSTS), encoding="utf-8")
        seed = _cli("crawl", str(seeds), "--seed-only", "--db", db, "--config", str(cfg), cwd=tmp)
        _, err = seed.communicate(timeout=60)
        if seed.returncode != 0:
            raise RuntimeError(f"seeding failed: {err.decode(errors='replace')}")
        stats.reset()
        began = time.monotonic()
        procs = [
            _cli("worker", "--db", db, "--config", str(cfg), cwd=tmp) for _ in range(n_workers)
        ]
        try:
            for p in procs:
                _, err = p.communicate(timeout=max(1.0, began + RUN_TIMEOUT_S - time.monotonic()))
                if p.returncode != 0:
                    raise RuntimeError(f"a worker failed: {err.decode(errors='replace')}")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        wall = time.monotonic() - began
        engine = create_engine(db, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                pages = int(conn.execute(text("SELECT count(*) FROM fetches")).scalar_one())
                left = int(
                    conn.execute(
                        text("SELECT count(*) FROM urls WHERE state IN ('queued', 'fetching')")
                    ).scalar_one()
                )
        finally:
            engine.dispose()
        if left:
            raise RuntimeError(f"{left} URLs left queued or fetching")
        span = max(1e-9, stats.last - stats.first)
        return Run(n_workers, pages, stats.requests, span, wall, pages / span)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.distributed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer pages per host (30, not 100)")
    parser.add_argument("--db", default=PG_URL, help=f"PostgreSQL URL [{PG_URL}]")
    parser.add_argument("--pages", type=int, help="pages per host [100; --quick: 30]")
    parser.add_argument("--threads", type=int, default=8, help="fetch threads per worker [8]")
    parser.add_argument("--delay", type=float, default=0.02, help="[politeness] delay [0.02]")
    parser.add_argument("--per-host", type=int, default=4, help="per_host_concurrency [4]")
    args = parser.parse_args(argv)
    pages = args.pages or (30 if args.quick else 100)

    runs: list[Run] = []
    with serve(pages) as (port, stats):
        for n in WORKER_COUNTS:
            run = run_once(n, port, stats, args)
            runs.append(run)
            print(f"  {n} worker(s): {run.pages} pages in {run.server_s:.1f}s", file=sys.stderr)

    base = runs[0].pages_per_s
    ratio = runs[-1].pages_per_s / base if base else 0.0
    # Requests one host may get per second: a slot lasts the delay plus a margin of at most
    # half the delay (crawler.store.results.claim_shared); the whole site's limit is 20 times that.
    slot = args.delay + min(0.1, args.delay / 2)
    polite_limit = len(HOSTS) / slot if slot > 0 else float("inf")
    print(
        f"\n{len(HOSTS)} hosts × {pages} pages, {LATENCY_S * 1000:.0f} ms per response, "
        f"delay {args.delay:g}s, per_host_concurrency {args.per_host}, "
        f"{args.threads} threads per worker; politeness allows ≤ {polite_limit:.0f} requests/s\n"
    )
    print("| workers | pages | requests | server s | wall s | pages/s | × 1 worker |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(
            f"| {r.workers} | {r.pages} | {r.requests} | {r.server_s:.1f} | {r.wall_s:.1f} "
            f"| {r.pages_per_s:.1f} | {r.pages_per_s / base:.2f} |"
        )
    verdict = "meets" if ratio >= 3.5 else "misses"
    print(f"\nscaling 4 workers / 1 worker: {ratio:.2f}× ({verdict} the 3.5× target)")

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"distributed-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "distributed",
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "site": {"hosts": len(HOSTS), "pages_per_host": pages, "latency_s": LATENCY_S},
                "settings": {
                    "threads_per_worker": args.threads,
                    "delay": args.delay,
                    "per_host_concurrency": args.per_host,
                    "politeness_limit_rps": round(polite_limit, 1),
                },
                "runs": [asdict(r) for r in runs],
                "ratio_4_to_1": round(ratio, 3),
                "target": 3.5,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"saved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
