"""Resume (issue 4): ``kill -9`` at random moments loses nothing and fetches almost nothing twice;
running the same command again, or ``crawl --resume``, continues where the last run stopped.

Every crawl here is a real subprocess (``python -m crawler``) against a real loopback server, so
the server's own request log, not the crawler's word, says what was fetched how often.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests import dnsguard
from tests.crawlkit import FAST, ROOT, query, run_cli, write_seeds, write_settings
from tests.mockserver import Page, SiteServer, generate_site, loopback_hosts

pytestmark = pytest.mark.timeout(120)

# --------------------------------------------------------------------------- helpers


def _spawn(args: list[str], cwd: Path, out: Path) -> subprocess.Popen[bytes]:
    """``python -m crawler ARGS`` in the background; stdout and stderr go to ``out``.(out|err)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env = dnsguard.subprocess_env({**env, "PYTHONPATH": str(ROOT)})
    with out.with_suffix(".out").open("wb") as so, out.with_suffix(".err").open("wb") as se:
        return subprocess.Popen(
            [sys.executable, "-m", "crawler", *args], cwd=cwd, env=env, stdout=so, stderr=se
        )


def _wait_until(predicate: Any, timeout_s: float, step_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def _fetch_counts(db: Path) -> dict[str, list[int]]:
    """URL -> the status codes of its rows in ``fetches``."""
    out: dict[str, list[int]] = {}
    rows = query(db, "select u.url, f.status_code from fetches f join urls u on u.id = f.url_id")
    for url, status in rows:
        out.setdefault(url, []).append(status)
    return out


def _assert_crawl_rows_add_up(db: Path) -> None:
    """Every ``crawls`` row's figures are what ``fetches`` and ``errors`` hold for it."""
    for crawl_id, pages, errors, nbytes in query(
        db, "select id, pages_fetched, errors, bytes_fetched from crawls"
    ):
        (fetched, stored_bytes) = query(
            db,
            "select count(*), coalesce(sum(content_length), 0) from fetches where crawl_id = ?",
            crawl_id,
        )[0]
        (errs,) = query(db, "select count(*) from errors where crawl_id = ?", crawl_id)[0]
        assert (pages, errors) == (fetched, errs), crawl_id
        assert nbytes <= stored_bytes, crawl_id  # bodies kept; not every fetch keeps one


def _page(url: str) -> tuple[str, str]:
    """A URL as the site server's log names its request: (host, path with query)."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.path + (f"?{parts.query}" if parts.query else "")


def _left_claimed(db: Path) -> set[tuple[str, str]]:
    """The pages a kill left claimed and not stored: what the next run may fetch again.

    A claim is committed (``state = 'fetching'``) before its URL is handed to a fetcher, and a
    result is committed with its URL's new state, so after a ``kill -9`` the ``fetching`` rows
    are exactly the pages that were in flight, or fetched but not yet committed, or claimed and
    not yet started. The crawler promises that nothing else is ever requested again.
    """
    return {_page(url) for (url,) in query(db, "select url from urls where state = 'fetching'")}


_FAILED_ATTEMPTS = "select u.url from errors e join urls u on u.id = e.url_id"
"""One row per failed attempt that was stored (a retry followed it, or the URL failed)."""


def _states(db: Path) -> Counter[str]:
    return Counter(dict(query(db, "select state, count(*) from urls group by 1")))


# --------------------------------------------------------------------------- kill -9


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_at_random_moments_loses_nothing(site_server, tmp_path: Path) -> None:
    """~4,500 pages on three hosts; SIGKILL the crawler at >= 5 random moments (some restarts
    with the seed file, some with ``crawl --resume``), then let the last run finish."""
    rng = random.Random(20240404)
    srv: SiteServer = site_server(hosts=loopback_hosts(3))
    gen = generate_site(srv.hosts, 1500, port=srv.port, seed=4, site=srv.site)
    seeds = write_seeds(tmp_path / "seed.txt", gen.root_urls)
    workers = 8
    cfg = write_settings(
        tmp_path / "fast.toml", FAST, {"crawl": {"workers": workers}, "store": {"batch_ms": 20}}
    )
    db = tmp_path / "crawl.db"
    with_seeds = ["crawl", str(seeds), "--db", str(db), "--config", str(cfg), "-q"]
    resume = ["crawl", "--resume", "--db", str(db), "-q"]

    started = time.monotonic()
    kills = 0
    left_claimed: Counter[tuple[str, str]] = Counter()  # page -> kills that left it claimed
    commands: list[str] = []
    for run in range(7):
        args = resume if run in (2, 4) else with_seeds
        commands.append("resume" if args is resume else "seeds")
        before = len(srv.log)
        proc = _spawn(args, tmp_path, tmp_path / f"run{run}")
        # Count the delay from the run's first request, so each kill catches a crawl at work
        # (not Python starting up) and its crawls row exists.
        assert _wait_until(lambda p=proc, n=before: len(srv.log) > n or p.poll() is not None, 30)
        time.sleep(rng.uniform(0.3, 1.0))
        if proc.poll() is not None:
            break  # finished before its kill: nothing left to interrupt
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        kills += 1
        left_claimed.update(_left_claimed(db))  # read before the next run requeues them
    assert kills >= 5, f"the crawl finished after only {kills} kills: make the site bigger"

    final = run_cli(*with_seeds, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}, timeout=120)
    elapsed = time.monotonic() - started
    assert final.returncode == 0, final.stderr
    assert "Traceback" not in final.stderr
    assert "resume" in commands
    assert "seeds" in commands[1:]

    # Every reachable page fetched exactly once, with status 200; nothing left in the frontier.
    fetches = _fetch_counts(db)
    assert set(fetches) == gen.expected_urls
    assert all(codes == [200] for codes in fetches.values()), {
        u: c for u, c in fetches.items() if c != [200]
    }
    states = _states(db)
    assert states["fetching"] == 0, states
    assert states["queued"] == 0, states
    assert query(db, "pragma integrity_check") == [("ok",)]

    # The server's log: a page is requested again only when a kill left it claimed and not
    # stored (in flight, or its result not yet committed: the writer commits in batches), once
    # per such kill at most. How many that is depends on how far the writer runs behind, which a
    # busy machine stretches, so the test counts exactly those pages instead of bounding their
    # number. What a run stored is never fetched again (each page has one fetches row, above).
    log = [r for r in srv.log if r.method == "GET"]
    requests = Counter((r.host, r.path) for r in log)
    assert len(requests) == len(gen.expected_urls)
    assert set(requests) == {_page(url) for url in gen.expected_urls}
    # A retry (a timeout on a starved machine) is a request again too, with its errors row.
    retried = Counter(_page(url) for (url,) in query(db, _FAILED_ATTEMPTS))
    unexplained = {
        page: (n - 1, left_claimed[page], retried[page])
        for page, n in requests.items()
        if n - 1 > left_claimed[page] + retried[page]
    }
    assert not unexplained, (
        "requested again more often than kills left them claimed and unstored, or retries "
        f"(page: (repeats, such kills, failed attempts)): {dict(list(unexplained.items())[:5])}"
    )
    duplicates = requests.total() - len(requests)

    # One crawls row per run: the killed ones interrupted (set when the next run started), the
    # last one finished; their figures are what fetches and errors hold.
    rows = query(db, "select status, finished_at, settings from crawls order by id")
    assert [s for s, _, _ in rows] == ["interrupted"] * kills + ["finished"]
    assert rows[-1][1] is not None
    assert all(json.loads(st)["crawl"]["workers"] == workers for _, _, st in rows)
    _assert_crawl_rows_add_up(db)
    print(
        f"\nkill -9: {kills} kills, {duplicates} duplicate requests, "
        f"{left_claimed.total()} pages left claimed by a kill, {len(requests)} pages, "
        f"{elapsed:.1f} s"
    )


# --------------------------------------------------------------------------- resume semantics


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(*args, cwd=tmp, env={"PYTHONPATH": str(ROOT)}, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_same_command_again_continues_and_never_refetches(site_server, tmp_path: Path) -> None:
    srv: SiteServer = site_server(hosts=loopback_hosts(2))
    gen = generate_site(srv.hosts, 20, port=srv.port, seed=11, site=srv.site)
    missing = gen.add_linked("/missing.html", Page("gone", status=404), from_path="/p/3.html")
    seeds = write_seeds(tmp_path / "seed.txt", gen.root_urls)
    cfg = write_settings(tmp_path / "fast.toml", FAST)
    db = tmp_path / "crawl.db"
    command = ["crawl", str(seeds), "--db", str(db), "--config", str(cfg), "-q"]

    seen: set[tuple[str, str]] = set()
    for run in (1, 2):  # 10 pages a run; the second must not repeat the first's
        srv.reset_log()
        result = _cli(tmp_path, *command, "--max-pages", "10")
        assert result.returncode == 0, result.stderr
        paths = {(r.host, r.path) for r in srv.log}
        assert len(paths) == len(srv.log) == 10, run
        assert not paths & seen, run
        seen |= paths
        assert "--max-pages 10" in result.stdout
        assert "resume:" in result.stdout

    srv.reset_log()
    result = _cli(tmp_path, *command)
    assert result.returncode == 0, result.stderr
    assert not {(r.host, r.path) for r in srv.log} & seen
    fetches = _fetch_counts(db)
    assert set(fetches) == gen.expected_urls
    assert all(len(codes) == 1 for codes in fetches.values())
    assert fetches[missing] == [404]

    # Once more on a finished crawl: the seeds are known and done, so nothing is fetched.
    urls_before = query(db, "select count(*) from urls")
    srv.reset_log()
    result = _cli(tmp_path, *command)
    assert result.returncode == 0, result.stderr
    assert srv.log == []
    assert query(db, "select count(*) from urls") == urls_before
    assert _states(db)["queued"] == 0

    # The history: one row per run, each with its figures, times, status and settings.
    rows = query(
        db,
        "select id, started_at, finished_at, status, seed_file, settings, pages_fetched, errors,"
        " bytes_fetched from crawls order by id",
    )
    assert [r[3] for r in rows] == ["finished"] * 4
    assert [r[6] for r in rows] == [10, 10, len(gen.expected_urls) - 20, 0]
    assert sum(r[7] for r in rows) >= 1  # the 404
    assert all(r[8] > 0 for r in rows[:3])
    assert rows[3][8] == 0
    assert all(r[1] <= r[2] for r in rows)
    assert all(r[4] == str(seeds) for r in rows)
    assert [json.loads(r[5])["crawl"]["max_pages"] for r in rows] == [10, 10, 0, 0]
    _assert_crawl_rows_add_up(db)


def test_resume_without_seed_file_uses_the_stored_settings(site_server, tmp_path: Path) -> None:
    srv: SiteServer = site_server()
    gen = generate_site(srv.hosts, 30, port=srv.port, seed=5, site=srv.site)
    seeds = write_seeds(tmp_path / "seed.txt", gen.root_urls)
    cfg = write_settings(tmp_path / "mine.toml", FAST, {"crawl": {"workers": 3}})
    # A ./settings.toml in the working directory must not undo the resumed crawl's settings.
    write_settings(tmp_path / "settings.toml", {"crawl": {"workers": 7}})
    db = tmp_path / "crawl.db"

    first = _cli(
        tmp_path, "crawl", str(seeds), "--db", str(db), "--config", str(cfg), "--max-pages", "5"
    )
    assert first.returncode == 0, first.stderr
    assert "resume:  python -m crawler crawl --resume --db" in first.stdout

    second = _cli(tmp_path, "crawl", "--resume", "--db", str(db), "-q")
    assert second.returncode == 0, second.stderr
    third = _cli(
        tmp_path, "crawl", "--resume", "--db", str(db), "--workers", "5", "--max-pages", "0"
    )
    assert third.returncode == 0, third.stderr

    rows = query(db, "select seed_file, settings, pages_fetched from crawls order by id")
    settings = [json.loads(s) for _, s, _ in rows]
    assert [s["crawl"]["workers"] for s in settings] == [3, 3, 5]  # not 7: no ./settings.toml
    assert [s["crawl"]["max_pages"] for s in settings] == [5, 5, 0]
    assert all(s["politeness"]["delay"] == 0.0 for s in settings)
    assert [r[0] for r in rows] == [str(seeds), None, None]
    assert [r[2] for r in rows] == [5, 5, len(gen.expected_urls) - 10]
    fetches = _fetch_counts(db)
    assert set(fetches) == gen.expected_urls
    assert all(codes == [200] for codes in fetches.values())


def test_resume_with_nothing_to_resume_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    result = _cli(tmp_path, "crawl", "--resume", "--db", str(db))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "nothing to resume" in result.stderr
    assert not db.exists()  # a missing database is not created just to say so

    assert _cli(tmp_path, "db", "upgrade", "--db", str(db)).returncode == 0
    result = _cli(tmp_path, "crawl", "--resume", "--db", str(db))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "nothing to resume" in result.stderr


def test_crawl_without_seed_file_or_resume_exits_2(tmp_path: Path) -> None:
    result = _cli(tmp_path, "crawl", "--db", str(tmp_path / "x.db"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--resume" in result.stderr
    assert not (tmp_path / "x.db").exists()
