"""Many crawler processes sharing one PostgreSQL frontier (issue 9, DESIGN §6).

Every test runs against the real PostgreSQL server at 127.0.0.1:5432 in a fresh schema (the
``pg_url`` fixture of ``tests/store/test_db.py``: skipped locally when the server is down, a failure
when ``CI`` is set). Workers run as real subprocesses, so the loopback site server in this
process judges their politeness by kernel arrival times, not by who holds this GIL.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.pool import NullPool

from crawler.records import FetchResult, FetchTask, NewLink, PageResult, URLState
from crawler.store.claims import claim_shared
from crawler.store.db import open_database
from crawler.store.hosts import HostCache
from crawler.store.results import store_results
from crawler.store.runs import start_crawl
from crawler.urls import host_key
from models import Host, Url
from tests import dnsguard
from tests.crawlkit import FAST, ROOT, run_cli, write_seeds, write_settings
from tests.mockserver import (
    Behaviour,
    GeneratedSite,
    NotFound,
    Page,
    RequestContext,
    RequestRecord,
    SiteServer,
    generate_site,
    loopback_hosts,
)
from tests.store import test_db

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(90)]

pg_url = test_db.pg_url  # a fresh schema per test; fails in CI when the server is down

ENV = {"PYTHONPATH": str(ROOT)}

POLITE = {
    "crawl": {"workers": 8, "lease_timeout": 3.0},
    "politeness": {"delay": 0.2, "per_host_concurrency": 2, "obey_robots": True},
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def pg(pg_url: str) -> Iterator[Engine]:
    """An engine on the test's schema, for the assertions (NullPool: nothing left open)."""
    eng = create_engine(pg_url, poolclass=NullPool)
    yield eng
    eng.dispose()


def rows(eng: Engine, query: str, **params: Any) -> list[tuple[Any, ...]]:
    with eng.connect() as conn:
        return [tuple(r) for r in conn.execute(text(query), params)]


def scalar(eng: Engine, query: str, **params: Any) -> Any:
    with eng.connect() as conn:
        return conn.execute(text(query), params).scalar()


def fetched_urls(eng: Engine) -> list[str]:
    return [u for (u,) in rows(eng, "SELECT u.url FROM fetches f JOIN urls u ON u.id = f.url_id")]


def seed_only(tmp: Path, db: str, cfg: Path, urls: list[str], name: str = "seed.txt") -> None:
    seeds = write_seeds(tmp / name, urls)
    done = run_cli(
        "crawl", str(seeds), "--seed-only", "--db", db, "--config", str(cfg), cwd=tmp, env=ENV
    )
    assert done.returncode == 0, done.stderr
    assert "seeds added" in done.stdout


def start_worker(tmp: Path, db: str, cfg: Path, *extra: str, name: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env.update(ENV)
    env = dnsguard.subprocess_env(env)  # keep the DNS guard in the child
    argv = [sys.executable, "-m", "crawler", "worker", "--db", db, "--config", str(cfg), "-q"]
    with (tmp / f"{name}.out").open("w") as out, (tmp / f"{name}.err").open("w") as err:
        return subprocess.Popen(
            [*argv, *extra],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=err,
            text=True,
        )


def wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.1)


def polite_site(srv: SiteServer, pages: int, *, seed: int) -> GeneratedSite:
    """A generated site; the first host's robots.txt disallows one page linked from its root."""
    gen = generate_site(srv.hosts, pages, port=srv.port, seed=seed, site=srv.site)
    h0 = srv.hosts[0]
    robots = "User-agent: *\nDisallow: /private.html\n"
    srv.site.add("/robots.txt", Page(robots, content_type="text/plain"), host=h0)
    gen.add_linked("/private.html", Page("<title>private</title>"), expected=False)
    return gen


class HoldFor:
    """A page that answers at once, except to ``user_agent`` once ``armed``: then the request
    hangs a second first, and its URL is noted in ``held`` (so a test can kill the worker
    while it surely holds a lease; the hang ends before the lease, 3 s, would)."""

    def __init__(
        self, inner: Behaviour, user_agent: str, armed: threading.Event, held: list[str]
    ) -> None:
        self.inner, self.user_agent, self.armed, self.held = inner, user_agent, armed, held

    def __call__(self, ctx: RequestContext) -> None:
        if self.armed.is_set() and ctx.headers.get("User-Agent") == self.user_agent:
            self.held.append(ctx.base_url + ctx.path)
            if not ctx.sleep(1.0):
                return
        self.inner(ctx)


def close_requests(log: list[RequestRecord], delay: float) -> list[tuple[Any, ...]]:
    """Requests to one host that arrived less than ``delay`` apart: (host, gap, who, what)."""
    per_host: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in log:
        per_host[r.host].append(r)
    return [
        (
            host,
            round(b.started - a.started, 4),
            a.headers.get("User-Agent"),
            a.path,
            b.headers.get("User-Agent"),
            b.path,
        )
        for host, rs in per_host.items()
        for a, b in itertools.pairwise(sorted(rs, key=lambda r: r.started))
        if b.started - a.started < delay
    ]


def min_gaps(log: list[RequestRecord]) -> dict[str, float]:
    """Per host, the shortest time between the arrivals of two requests (robots.txt too)."""
    per_host: dict[str, list[float]] = defaultdict(list)
    for r in log:
        per_host[r.host].append(r.started)
    return {
        host: min((b - a for a, b in itertools.pairwise(sorted(ts))), default=float("inf"))
        for host, ts in per_host.items()
    }


def assert_consistent_runs(eng: Engine) -> None:
    """Each run's figures in ``crawls`` match the rows it wrote: they commit together."""
    for crawl_id, pages, errors in rows(eng, "SELECT id, pages_fetched, errors FROM crawls"):
        n_fetches = scalar(eng, "SELECT count(*) FROM fetches WHERE crawl_id = :c", c=crawl_id)
        n_errors = scalar(eng, "SELECT count(*) FROM errors WHERE crawl_id = :c", c=crawl_id)
        assert (pages, errors) == (n_fetches, n_errors), crawl_id


# --------------------------------------------------------------------------- one process


def test_crawl_on_postgresql_end_to_end(
    site_server: Any, pg: Engine, pg_url: str, tmp_path: Path
) -> None:
    """``crawl seed.txt --db postgresql+psycopg://...``: the same crawler, the same results."""
    srv = site_server(hosts=loopback_hosts(3))
    gen = polite_site(srv, 25, seed=11)
    missing = gen.add_linked("/gone.html", NotFound(), from_path="/p/3.html")
    cfg = write_settings(tmp_path / "settings.toml", FAST, POLITE, {"politeness": {"delay": 0.02}})
    seeds = write_seeds(tmp_path / "seed.txt", gen.root_urls)
    done = run_cli(
        "crawl", str(seeds), "--db", pg_url, "--config", str(cfg), "-q", cwd=tmp_path, env=ENV
    )
    assert done.returncode == 0, done.stderr

    fetched = fetched_urls(pg)
    assert sorted(fetched) == sorted(gen.expected_urls)  # each once
    private = gen.url("/private.html")
    assert not [r for r in srv.log if r.path == "/private.html"]
    states = dict(rows(pg, "SELECT url, state FROM urls"))
    assert states[private] == "blocked"
    assert states[missing] == "failed"
    assert {states[u] for u in gen.external_urls | gen.nofollow_urls} == {"excluded"}
    assert {states[u] for u in gen.expected_urls - {missing}} == {"done"}
    errors = rows(
        pg,
        "SELECT u.url, e.kind, e.status_code, e.attempt, e.final FROM errors e "
        "JOIN urls u ON u.id = e.url_id",
    )
    assert sorted(errors) == [
        (missing, "http_status", 404, 1, True),
        (private, "robots", None, 1, True),
    ]

    links = set(
        rows(
            pg,
            "SELECT s.url, d.url, l.nofollow FROM links l JOIN urls s ON s.id = l.src_url_id "
            "JOIN urls d ON d.id = l.dst_url_id",
        )
    )
    expected = {(s, d, False) for s, d in gen.links} | {(s, d, True) for s, d in gen.nofollow_links}
    assert links == expected

    ((status, finished, pages, command),) = rows(
        pg, "SELECT status, finished_at IS NOT NULL, pages_fetched, command FROM crawls"
    )
    assert (status, finished, pages, command) == ("finished", True, len(fetched), "crawl")
    assert_consistent_runs(pg)
    # robots.txt was fetched once per host and cached in ``hosts``.
    assert Counter(r.host for r in srv.log if r.path == "/robots.txt") == dict.fromkeys(
        srv.hosts, 1
    )
    assert scalar(pg, "SELECT count(*) FROM hosts WHERE robots_txt IS NOT NULL") == len(srv.hosts)


# --------------------------------------------------------------------------- the claim


def _seed_frontier(pg_url: str, hosts: int, per_host: int) -> None:
    """A migrated schema with ``hosts`` × ``per_host`` queued URLs."""
    eng = open_database(pg_url)
    try:
        with eng.begin() as conn:
            host_ids = conn.execute(
                insert(Host).returning(Host.id),
                [{"host": f"http://h{i}.test:80"} for i in range(hosts)],
            ).scalars()
            when = dt.datetime.now(dt.UTC)
            conn.execute(
                insert(Url),
                [
                    {
                        "url": f"http://h{h}.test/p/{n}",
                        "host_id": host_id,
                        "depth": 0,
                        "state": "queued",
                        "first_seen_at": when,
                    }
                    for h, host_id in enumerate(host_ids)
                    for n in range(per_host)
                ],
            )
    finally:
        eng.dispose()


def _claim_in_threads(
    pg_url: str, threads: int, *, until: Callable[[], bool], **claim: Any
) -> list[tuple[int, int]]:
    """Claim from ``threads`` connections at once until ``until()``; every (url id, host id)."""
    claimed: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)
    eng = create_engine(pg_url, pool_size=threads)

    def loop() -> None:
        try:
            start.wait()
            while not until():
                with eng.begin() as conn:
                    got = claim_shared(conn, 16, **claim)
                with lock:
                    claimed.extend((t.url_id, t.host_id) for t in got)
                if not got and not got.more:
                    return
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    eng.dispose()
    assert not errors, errors
    return claimed


def test_a_claim_never_hands_a_url_to_two_workers(pg_url: str, pg: Engine) -> None:
    """Six connections claim at once, with no delay (a host is ready again at once): every URL
    is handed out exactly once."""
    _seed_frontier(pg_url, hosts=30, per_host=30)

    def drained() -> bool:
        return scalar(pg, "SELECT count(*) FROM urls WHERE state = 'queued'") == 0

    claimed = _claim_in_threads(
        pg_url, 6, until=drained, delay=0.0, per_host=1000, lease_s=60, max_delay=0.0
    )
    ids = [u for u, _ in claimed]
    dupes = [u for u, n in Counter(ids).items() if n > 1]
    assert dupes == []
    assert len(ids) == 900
    assert scalar(pg, "SELECT count(*) FROM urls WHERE state = 'fetching'") == 900


def test_a_claim_reserves_the_hosts_next_slot_for_every_worker(pg_url: str, pg: Engine) -> None:
    """With a delay, a host is handed out once per delay whoever asks; with concurrency 2,
    at most two URLs of a host are leased at a time, however many slots pass. (With no delay at
    all, two claims racing on one host can exceed the concurrency by one: docs/distributed.md.)"""
    _seed_frontier(pg_url, hosts=20, per_host=10)
    deadline = time.monotonic() + 1.0
    claimed = _claim_in_threads(
        pg_url,
        6,
        until=lambda: time.monotonic() > deadline,
        delay=30.0,
        per_host=1000,
        lease_s=60,
        max_delay=0.0,
    )
    assert sorted(Counter(h for _, h in claimed).values()) == [1] * 20
    later = rows(pg, "SELECT count(*) FROM hosts WHERE next_allowed_at > now() + interval '25s'")
    assert later == [(20,)]

    with pg.begin() as conn:
        conn.execute(text("UPDATE urls SET state = 'queued', lease_until = NULL"))
        conn.execute(text("UPDATE hosts SET next_allowed_at = NULL"))
    deadline = time.monotonic() + 1.0
    claimed = _claim_in_threads(
        pg_url,
        6,
        until=lambda: time.monotonic() > deadline,
        delay=0.05,
        per_host=2,
        lease_s=60,
        max_delay=0.0,
    )
    assert sorted(Counter(h for _, h in claimed).values()) == [2] * 20


# --------------------------------------------------------------------------- many workers


def test_three_workers_one_killed_crawl_everything_once_politely(
    site_server: Any, pg: Engine, pg_url: str, tmp_path: Path
) -> None:
    """The issue's test: seed once, three workers, ``kill -9`` one midway. The others finish
    the crawl (the dead worker's leases expire and come back), every page is stored once, no
    host ever sees two requests closer than its delay, and nothing is left leased."""
    srv = site_server(hosts=loopback_hosts(8))
    gen = polite_site(srv, 40, seed=3)
    armed, held = threading.Event(), list[str]()
    for url, page in gen.pages.items():  # the victim's requests hang once armed
        parts = urlsplit(url)
        srv.site.add(parts.path, HoldFor(page, "crawler-w1", armed, held), host=parts.hostname)
    cfg = write_settings(tmp_path / "settings.toml", FAST, POLITE)
    seed_only(tmp_path, pg_url, cfg, gen.root_urls)
    assert scalar(pg, "SELECT count(*) FROM urls WHERE state = 'queued'") == len(gen.root_urls)

    workers = [
        start_worker(tmp_path, pg_url, cfg, "--user-agent", f"crawler-w{i}", name=f"w{i}")
        for i in range(3)
    ]
    victim = workers[1]
    try:

        def victim_fetched() -> int:
            return int(
                scalar(
                    pg,
                    "SELECT count(*) FROM fetches f JOIN crawls c ON c.id = f.crawl_id "
                    "WHERE c.pid = :pid",
                    pid=victim.pid,
                )
            )

        wait_for("the victim to store some pages", lambda: victim_fetched() >= 15, 30)
        armed.set()
        wait_for("the victim to be inside a request", lambda: bool(held), 10)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(5) == -signal.SIGKILL
        killed_at = time.monotonic()
        for n in (0, 2):
            assert workers[n].wait(60) == 0, (tmp_path / f"w{n}.err").read_text()
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    print(f"\nothers done {time.monotonic() - killed_at:.1f}s after the kill")

    fetched = fetched_urls(pg)
    assert sorted(fetched) == sorted(gen.expected_urls)  # every reachable page, exactly once
    assert (
        rows(
            pg,
            "SELECT state, count(*) FROM urls WHERE state IN ('queued', 'fetching') GROUP BY state",
        )
        == []
    )
    assert scalar(pg, "SELECT count(*) FROM urls WHERE lease_until IS NOT NULL") == 0
    # The URL the victim held when it died came back when its lease expired, and another
    # worker fetched it: requested twice, stored once.
    lost = held[0]
    assert rows(
        pg,
        "SELECT c.pid FROM fetches f JOIN urls u ON u.id = f.url_id "
        "JOIN crawls c ON c.id = f.crawl_id WHERE u.url = :u",
        u=lost,
    ) in ([(workers[0].pid,)], [(workers[2].pid,)])
    assert not [r for r in srv.log if r.path == "/private.html"]
    assert srv.errors == []

    # Politeness held across the three processes, robots.txt requests included.
    assert close_requests(srv.log, 0.2) == []
    gaps = min_gaps(srv.log)
    assert max(srv.max_concurrent_per_host.values()) <= 2
    print(f"min gap {min(gaps.values()):.3f}s (delay 0.2s); {len(srv.log)} requests")

    # Each worker's run row agrees with what it stored (its batches commit with the figures).
    assert_consistent_runs(pg)
    runs = rows(pg, "SELECT pid, status, command FROM crawls ORDER BY id")
    assert runs[0][1:] == ("finished", "crawl")  # the seeding run
    finished = sorted(pid for pid, status, _ in runs[1:] if status == "finished")
    assert finished == sorted([workers[0].pid, workers[2].pid])

    # A worker that joins after the crawl is done has nothing to do and says so quickly.
    began = time.monotonic()
    late = run_cli("worker", "--db", pg_url, "--config", str(cfg), "-q", cwd=tmp_path, env=ENV)
    assert late.returncode == 0, late.stderr
    assert time.monotonic() - began < 15
    assert sorted(fetched_urls(pg)) == sorted(gen.expected_urls)


def test_workers_storing_the_same_links_at_once_never_fail(pg_url: str, pg: Engine) -> None:
    """Two workers' batches, committed at the same moment, discover the same new URLs and hosts
    (listed in different orders) and each other's pages (which the other is marking fetched):
    the inserts (``ON CONFLICT``) neither fail nor deadlock, and nothing is stored twice."""
    rounds, per_batch, new_per_round = 15, 4, 40
    _seed_frontier(pg_url, hosts=2, per_host=rounds * per_batch)
    with pg.begin() as conn:
        conn.execute(text("UPDATE urls SET state = 'fetching'"))
    pages = {
        n: rows(pg, "SELECT id, url, host_id FROM urls WHERE url LIKE :p ORDER BY id", p=f"%h{n}.%")
        for n in (0, 1)
    }
    errors: list[BaseException] = []
    together = threading.Barrier(2)

    def batch(n: int, r: int, rng: random.Random) -> list[PageResult]:
        now = dt.datetime.now(dt.UTC)
        theirs = pages[1 - n][r * per_batch : (r + 1) * per_batch]
        out = []
        for url_id, url, host_id in pages[n][r * per_batch : (r + 1) * per_batch]:
            links = [
                NewLink(
                    f"http://new{i % 7}.test:80/r{r}/{i}", f"http://new{i % 7}.test:80", False, True
                )
                for i in range(new_per_round)
            ] + [NewLink(u, host_key(u), False, True) for _, u, _ in theirs]
            rng.shuffle(links)
            fetch = FetchResult(url, url, 200, now, 5, content_type="text/html")
            task = FetchTask(url_id, url, host_id, host_key(url), 0)
            out.append(PageResult(task, URLState.DONE, fetch, links=tuple(links)))
        return out

    def worker(n: int) -> None:
        eng = create_engine(pg_url, poolclass=NullPool)
        rng, hosts = random.Random(n), HostCache()
        try:
            with eng.begin() as conn:
                crawl_id = start_crawl(
                    conn, seed_file=None, settings={}, now=dt.datetime.now(dt.UTC)
                )
            for r in range(rounds):
                results = batch(n, r, rng)
                together.wait(10)
                with eng.begin() as conn:
                    store_results(conn, crawl_id, results, dt.datetime.now(dt.UTC), hosts)
        except BaseException as exc:
            errors.append(exc)
            together.abort()
        finally:
            eng.dispose()

    threads = [threading.Thread(target=worker, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [e for e in errors if not isinstance(e, threading.BrokenBarrierError)] == []
    new = scalar(pg, "SELECT count(*) FROM urls WHERE url LIKE 'http://new%'")
    assert new == rounds * new_per_round
    assert scalar(pg, "SELECT count(*) FROM hosts WHERE host LIKE 'http://new%'") == 7
    n_pages = 2 * rounds * per_batch
    assert scalar(pg, "SELECT count(*) FROM links") == n_pages * (new_per_round + per_batch)
    assert scalar(pg, "SELECT count(*) FROM fetches") == n_pages
    assert rows(pg, "SELECT DISTINCT state FROM urls WHERE url LIKE 'http://h%'") == [("done",)]
    assert_consistent_runs(pg)


def test_worker_forever_waits_for_new_work_and_stops_on_sigint(
    site_server: Any, pg: Engine, pg_url: str, tmp_path: Path
) -> None:
    """``worker --forever`` outlives an empty frontier, takes up URLs queued later (here: seeds
    added by ``crawl --seed-only``), and SIGINT stops it with status 130."""
    srv = site_server(hosts=loopback_hosts(2))
    gen = generate_site(srv.hosts, 5, port=srv.port, seed=5, site=srv.site)
    late = f"http://{srv.hosts[1]}:{srv.port}/late.html"
    srv.site.add(
        "/late.html", Page("<title>late</title><a href='/p/0.html'>x</a>"), host=srv.hosts[1]
    )
    cfg = write_settings(tmp_path / "settings.toml", FAST, POLITE, {"politeness": {"delay": 0.02}})
    seed_only(tmp_path, pg_url, cfg, gen.root_urls)
    worker = start_worker(tmp_path, pg_url, cfg, "--forever", name="forever")
    try:
        wait_for("the first crawl", lambda: len(fetched_urls(pg)) == len(gen.expected_urls), 30)
        runs = scalar(pg, "SELECT count(*) FROM crawls")
        time.sleep(6.0)  # longer than the idle poll
        assert worker.poll() is None  # nothing queued, and still running
        assert scalar(pg, "SELECT count(*) FROM crawls") == runs  # idle: no run rows piling up
        seed_only(tmp_path, pg_url, cfg, [late], name="late.txt")
        wait_for("the late seed", lambda: late in fetched_urls(pg), 20)
        time.sleep(0.5)
        worker.send_signal(signal.SIGINT)
        assert worker.wait(20) == 130
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert sorted(fetched_urls(pg)) == sorted(gen.expected_urls | {late})
    assert scalar(pg, "SELECT count(*) FROM urls WHERE state IN ('queued', 'fetching')") == 0
    # The seeding runs, the worker's first run, and its run for the late seed.
    assert rows(pg, "SELECT status, pages_fetched FROM crawls ORDER BY id") == [
        ("finished", 0),
        ("finished", len(gen.expected_urls)),
        ("finished", 0),
        ("finished", 1),
    ]
    assert_consistent_runs(pg)
