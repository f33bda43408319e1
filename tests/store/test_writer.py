"""The single writer thread and the statements it runs, against a real SQLite file."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select, text, update

from crawler.config import StoreSettings
from crawler.errors import ErrorKind
from crawler.records import (
    ErrorRecord,
    FetchResult,
    FetchTask,
    NewLink,
    PageResult,
    ParsedPage,
    URLState,
)
from crawler.store.claims import claim, recover, release
from crawler.store.common import crawls_t, errors_t, fetches_t, hosts_t, links_t, urls_t
from crawler.store.db import open_database
from crawler.store.discovered import add_seeds, insert_urls
from crawler.store.runs import start_crawl
from crawler.store.writer import Writer, WriterFailed
from crawler.urls import host_key

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Env:
    path: Path
    engine: Engine
    writer: Writer
    clock: Clock
    crawl_id: int

    def seed(self, *urls: str) -> None:
        seeds = [(u, host_key(u), "page") for u in urls]
        self.writer.run(partial(add_seeds, seeds=seeds, now=T0, hosts=self.writer.hosts))

    def claim(self, limit: int = 100, **kwargs: Any) -> list[FetchTask]:
        lease = T0 + dt.timedelta(minutes=5)
        return self.writer.run(partial(claim, limit=limit, lease_until=lease, **kwargs))

    def claim_all(self, *urls: str) -> list[FetchTask]:
        self.seed(*urls)
        return self.claim(exclude_hosts=())

    def count(self, table: str, where: str = "1") -> int:
        """Counted through a plain sqlite3 connection: what a user querying the file sees."""
        con = sqlite3.connect(self.path)
        try:
            return int(con.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0])
        finally:
            con.close()

    def rows(self, stmt: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).mappings())


MakeEnv = Callable[..., Env]


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[MakeEnv]:
    """Open the database and start a writer with the given ``StoreSettings`` fields."""
    opened: list[Env] = []

    def make(**store: int) -> Env:
        path = tmp_path / "w.db"
        engine = open_database(str(path))
        clock = Clock()
        writer = Writer(engine, StoreSettings(db=str(path), **store), now=clock).start()
        crawl_id = writer.run(partial(start_crawl, seed_file=None, settings={}, now=T0))
        writer.crawl_id = crawl_id
        opened.append(Env(path, engine, writer, clock, crawl_id))
        return opened[-1]

    yield make
    for e in opened:
        with contextlib.suppress(WriterFailed):
            e.writer.close()
        e.engine.dispose()


@pytest.fixture
def env(make_env: MakeEnv) -> Env:
    return make_env(batch_rows=1, batch_ms=10)


def fetched(
    task: FetchTask,
    *,
    links: tuple[NewLink, ...] = (),
    status: int | None = 200,
    body: bytes | None = b"<p>hi</p>",
    at: dt.datetime = T0,
) -> PageResult:
    fetch = FetchResult(
        url=task.url,
        final_url=task.url,
        status_code=status,  # type: ignore[arg-type]
        fetched_at=at,
        elapsed_ms=12,
        content_type="text/html",
        content_length=len(body) if body is not None else 1234,
        body=body,
        etag='"v1"',
    )
    parsed = ParsedPage(title="Hi", links=(), content_hash="ab" * 32)
    return PageResult(task, URLState.DONE, fetch=fetch, parsed=parsed, links=links, changed=True)


def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# -- batching ----------------------------------------------------------------------------


def test_batch_commits_after_batch_rows(make_env: MakeEnv) -> None:
    e = make_env(batch_rows=3, batch_ms=60_000)
    tasks = e.claim_all("http://a.test/1", "http://a.test/2", "http://a.test/3")
    e.writer.put(fetched(tasks[0]))
    e.writer.put(fetched(tasks[1]))
    time.sleep(0.2)  # let the writer take both off the queue
    assert e.writer.queue_depth == 0
    assert e.count("fetches") == 0
    e.writer.put(fetched(tasks[2]))
    seen: list[int] = []

    def all_three() -> bool:
        seen.append(e.count("fetches"))
        return seen[-1] == 3

    assert wait_for(all_three)
    assert set(seen) <= {0, 3}  # one transaction: never a partial batch
    assert e.writer.batches == 1
    assert e.writer.rows == 3


def test_batch_commits_after_batch_ms(make_env: MakeEnv) -> None:
    e = make_env(batch_rows=1000, batch_ms=100)
    (task,) = e.claim_all("http://a.test/1")
    e.writer.put(fetched(task))
    assert wait_for(lambda: e.count("fetches") == 1, timeout=1.0)


def test_call_runs_after_pending_results_are_committed(make_env: MakeEnv) -> None:
    e = make_env(batch_rows=1000, batch_ms=60_000)
    tasks = e.claim_all("http://a.test/1", "http://a.test/2")
    for t in tasks:
        e.writer.put(fetched(t))

    def count_fetches(conn: Connection) -> int:
        return int(conn.execute(text("SELECT count(*) FROM fetches")).scalar_one())

    assert e.writer.run(count_fetches) == 2
    assert e.count("fetches") == 2


def test_call_returns_the_value_and_the_exception(env: Env) -> None:
    assert env.writer.run(lambda conn: 41 + 1) == 42
    with pytest.raises(ZeroDivisionError):
        env.writer.run(lambda conn: 1 / 0)
    assert env.writer.error is None  # a failing job fails its caller, not the writer
    assert env.writer.run(lambda conn: "still alive") == "still alive"


def test_a_failing_job_is_rolled_back(env: Env) -> None:
    env.seed("http://a.test/1")

    def update_then_fail(conn: Connection) -> None:
        conn.execute(update(urls_t).values(priority=9))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        env.writer.run(update_then_fail)
    assert env.count("urls", "priority = 9") == 0


def test_backpressure_blocks_put_while_the_writer_is_busy(make_env: MakeEnv) -> None:
    e = make_env(batch_rows=1, batch_ms=10, queue_size=2)
    tasks = e.claim_all(*(f"http://a.test/{i}" for i in range(3)))
    started, release = threading.Event(), threading.Event()

    def block(conn: Connection) -> bool:
        started.set()
        return release.wait(5)

    blocked = e.writer.call(block)
    assert started.wait(2)  # the job is off the queue: the queue is empty and the writer busy
    done: list[int] = []

    def produce() -> None:
        for t in tasks:
            e.writer.put(fetched(t))
            done.append(t.url_id)

    producer = threading.Thread(target=produce, daemon=True)
    try:
        producer.start()
        assert wait_for(lambda: len(done) == 2)
        time.sleep(0.2)
        assert producer.is_alive()  # the third put waits for room
        assert len(done) == 2
        assert e.writer.queue_depth == 2
    finally:
        release.set()
    producer.join(2)
    assert not producer.is_alive()
    assert blocked.result(2) is True
    assert wait_for(lambda: e.count("fetches") == 3)


# -- what a result stores ----------------------------------------------------------------


def test_links_become_urls_and_link_rows(env: Env) -> None:
    (seed,) = env.claim_all("http://a.test/")
    links = (
        NewLink("http://a.test/in", "http://a.test:80", nofollow=False, follow=True),
        NewLink("http://b.test/out", "http://b.test:80", nofollow=True, follow=False),
    )
    env.clock.now = T0 + dt.timedelta(seconds=10)
    env.writer.run(lambda conn: None)  # nothing pending yet; just a barrier
    env.writer.put(fetched(seed, links=links))
    env.writer.run(lambda conn: None)

    urls = {r["url"]: r for r in env.rows(select(urls_t))}
    inside, outside = urls["http://a.test/in"], urls["http://b.test/out"]
    assert inside["state"] == "queued"
    assert outside["state"] == "excluded"
    for row in (inside, outside):
        assert row["depth"] == 1
        assert row["discovered_from"] == seed.url_id
        assert row["first_seen_at"] == T0 + dt.timedelta(seconds=10)
    hosts = {r["host"] for r in env.rows(select(hosts_t))}
    assert hosts == {"http://a.test:80", "http://b.test:80"}

    link_rows = {r["dst_url_id"]: r for r in env.rows(select(links_t))}
    assert set(link_rows) == {inside["id"], outside["id"]}
    assert link_rows[outside["id"]]["nofollow"] is True
    assert link_rows[inside["id"]]["nofollow"] is False
    for row in link_rows.values():
        assert row["src_url_id"] == seed.url_id
        assert row["first_seen_at"] == row["last_seen_at"] == T0 + dt.timedelta(seconds=10)


def test_second_sighting_updates_last_seen_only(env: Env) -> None:
    (seed,) = env.claim_all("http://a.test/")
    link = NewLink("http://a.test/x", "http://a.test:80", nofollow=False, follow=True)
    env.writer.put(fetched(seed, links=(link,)))
    env.writer.run(lambda conn: None)
    env.clock.now = T0 + dt.timedelta(hours=1)
    env.writer.put(fetched(seed, links=(link,), at=T0 + dt.timedelta(hours=1)))
    env.writer.run(lambda conn: None)

    (row,) = env.rows(select(links_t))
    assert row["first_seen_at"] == T0
    assert row["last_seen_at"] == T0 + dt.timedelta(hours=1)
    (target,) = env.rows(select(urls_t).where(urls_t.c.url == "http://a.test/x"))
    assert target["first_seen_at"] == T0  # the URL row is not touched again
    assert env.count("urls") == 2


def test_excluded_url_found_followable_becomes_queued(env: Env) -> None:
    seed, other = env.claim_all("http://a.test/", "http://a.test/deeper")
    out = "http://b.test/page"
    env.writer.put(fetched(seed, links=(NewLink(out, "http://b.test:80", False, follow=False),)))
    env.writer.run(lambda conn: None)
    assert env.count("urls", f"url = '{out}' AND state = 'excluded'") == 1

    env.writer.put(fetched(other, links=(NewLink(out, "http://b.test:80", False, follow=True),)))
    env.writer.run(lambda conn: None)
    (row,) = env.rows(select(urls_t).where(urls_t.c.url == out))
    assert row["state"] == "queued"
    assert row["discovered_from"] == other.url_id
    assert env.count("links", f"dst_url_id = {row['id']}") == 2


def test_queued_url_is_not_demoted_by_an_excluded_sighting(env: Env) -> None:
    (seed,) = env.claim_all("http://a.test/")
    url = "http://a.test/x"
    env.writer.put(fetched(seed, links=(NewLink(url, "http://a.test:80", False, follow=True),)))
    env.writer.put(fetched(seed, links=(NewLink(url, "http://a.test:80", True, follow=False),)))
    env.writer.run(lambda conn: None)
    assert env.count("urls", f"url = '{url}' AND state = 'queued'") == 1


def test_fetched_url_and_crawl_counters_updated(env: Env) -> None:
    a, b = env.claim_all("http://a.test/1", "http://a.test/2")
    env.writer.put(fetched(a, body=b"12345"))
    env.writer.put(fetched(b, body=None, status=404, at=T0 + dt.timedelta(seconds=3)))
    env.writer.run(lambda conn: None)

    urls = {r["id"]: r for r in env.rows(select(urls_t))}
    for task, at in ((a, T0), (b, T0 + dt.timedelta(seconds=3))):
        row = urls[task.url_id]
        assert row["state"] == "done"
        assert row["attempts"] == 1
        assert row["last_fetched_at"] == at
        assert row["lease_until"] is None
        assert row["content_hash"] == "ab" * 32
    # A 200's validators are kept; a 404 says nothing of the page's version: the stored ones
    # (none here) stay.
    assert urls[a.url_id]["etag"] == '"v1"'
    assert urls[b.url_id]["etag"] is None
    fetches = {r["url_id"]: r for r in env.rows(select(fetches_t))}
    assert fetches[a.url_id]["status_code"] == 200
    assert fetches[a.url_id]["title"] == "Hi"
    assert fetches[a.url_id]["crawl_id"] == env.crawl_id
    assert fetches[b.url_id]["status_code"] == 404
    (crawl,) = env.rows(select(crawls_t))
    assert crawl["pages_fetched"] == 2
    assert crawl["errors"] == 0
    assert crawl["bytes_fetched"] == 5  # a body not downloaded counts no bytes


def test_errors_stored_and_counted(env: Env) -> None:
    (task,) = env.claim_all("http://a.test/")
    env.clock.now = T0 + dt.timedelta(seconds=7)
    errs = (
        ErrorRecord(ErrorKind.TIMEOUT, "ReadTimeout: x", attempt=1, final=False, at=T0),
        ErrorRecord(ErrorKind.HTTP_STATUS, "HTTP 503", 2, True, T0, status_code=503),
    )
    env.writer.put(PageResult(task, URLState.FAILED, errors=errs))
    env.writer.run(lambda conn: None)

    rows = env.rows(select(errors_t).order_by(errors_t.c.attempt))
    assert [(r["kind"], r["attempt"], r["final"], r["status_code"]) for r in rows] == [
        ("timeout", 1, False, None),
        ("http_status", 2, True, 503),
    ]
    assert all(r["url_id"] == task.url_id and r["crawl_id"] == env.crawl_id for r in rows)
    assert rows[0]["message"] == "ReadTimeout: x"
    (url,) = env.rows(select(urls_t))
    assert url["state"] == "failed"
    assert url["attempts"] == 1
    assert url["last_fetched_at"] == T0 + dt.timedelta(seconds=7)  # no fetch: the writer's now
    assert url["lease_until"] is None
    (crawl,) = env.rows(select(crawls_t))
    assert (crawl["pages_fetched"], crawl["errors"]) == (0, 2)


# -- failure -----------------------------------------------------------------------------


def _break_by_null_status(e: Env, task: FetchTask) -> None:
    e.writer.put(fetched(task, status=None))


def _break_by_dropping_a_table(e: Env, task: FetchTask) -> None:
    con = sqlite3.connect(e.path)
    try:
        con.execute("DROP TABLE fetches")
        con.commit()
    finally:
        con.close()
    e.writer.put(fetched(task))


@pytest.mark.parametrize("breaker", [_break_by_null_status, _break_by_dropping_a_table])
def test_failed_batch_stops_the_writer_and_keeps_what_was_stored(
    env: Env, breaker: Callable[[Env, FetchTask], None]
) -> None:
    good, bad = env.claim_all("http://a.test/good", "http://a.test/bad")
    env.writer.put(fetched(good))
    assert wait_for(lambda: env.count("urls", "state = 'done'") == 1)

    breaker(env, bad)
    assert wait_for(lambda: env.writer.error is not None)
    with pytest.raises(WriterFailed):
        env.writer.put(fetched(bad))
    with pytest.raises(WriterFailed):
        env.writer.call(lambda conn: None)
    with pytest.raises(WriterFailed):
        env.writer.close()

    assert env.count("urls", f"id = {good.url_id} AND state = 'done'") == 1
    assert env.count("urls", f"id = {bad.url_id} AND state = 'fetching'") == 1  # requeued later
    if breaker is _break_by_null_status:
        assert env.count("fetches") == 1
        assert env.count("crawls", "pages_fetched = 1") == 1


def test_job_queued_behind_a_failed_batch_fails(make_env: MakeEnv) -> None:
    e = make_env(batch_rows=1000, batch_ms=60_000)
    (task,) = e.claim_all("http://a.test/")
    e.writer.put(fetched(task, status=None))
    future = e.writer.call(lambda conn: "never")  # flushes the bad batch first
    with pytest.raises(WriterFailed):
        future.result(2)


def test_results_without_a_crawl_id_fail_instead_of_hanging(make_env: MakeEnv) -> None:
    e = make_env(batch_rows=1, batch_ms=10)
    (task,) = e.claim_all("http://a.test/")
    e.writer.crawl_id = None
    e.writer.put(fetched(task))
    future = e.writer.call(lambda conn: "after")
    with pytest.raises(WriterFailed):
        future.result(2)
    assert isinstance(e.writer.error, RuntimeError)


# -- claim, release, recover -------------------------------------------------------------


def _insert(env: Env, url: str, *, depth: int = 0, priority: int = 0) -> None:
    def job(conn: Connection) -> None:
        host_id = env.writer.hosts.ids(conn, [host_key(url)])[host_key(url)]
        insert_urls(
            conn,
            [
                {
                    "url": url,
                    "host_id": host_id,
                    "depth": depth,
                    "discovered_from": None,
                    "state": "queued",
                    "first_seen_at": T0,
                }
            ],
        )
        conn.execute(update(urls_t).where(urls_t.c.url == url).values(priority=priority))

    env.writer.run(job)


def test_claim_order_priority_then_depth_then_id(env: Env) -> None:
    _insert(env, "http://a.test/deep", depth=2)
    _insert(env, "http://b.test/shallow2", depth=0)
    _insert(env, "http://c.test/mid", depth=1)
    _insert(env, "http://d.test/shallow1", depth=0)
    _insert(env, "http://e.test/urgent", depth=3, priority=5)
    tasks = env.claim(exclude_hosts=())
    assert [t.url.rsplit("/", 1)[1] for t in tasks] == [
        "urgent",
        "shallow2",
        "shallow1",
        "mid",
        "deep",
    ]
    assert [t.host for t in tasks][:2] == ["http://e.test:80", "http://b.test:80"]


def test_claim_limit_and_per_host(env: Env) -> None:
    env.seed(*(f"http://a.test/{i}" for i in range(5)), "http://b.test/0", "http://c.test/0")
    tasks = env.claim(exclude_hosts=(), per_host=2)
    assert sorted(t.url for t in tasks) == [
        "http://a.test/0",
        "http://a.test/1",
        "http://b.test/0",
        "http://c.test/0",
    ]
    assert [t.url for t in env.claim(limit=2, exclude_hosts=(), per_host=2)] == [
        "http://a.test/2",
        "http://a.test/3",
    ]


def test_claim_excludes_hosts(env: Env) -> None:
    env.seed("http://a.test/1", "http://b.test/1")
    a_id = env.writer.run(lambda conn: env.writer.hosts.ids(conn, ["http://a.test:80"]))
    tasks = env.claim(exclude_hosts=set(a_id.values()))
    assert [t.url for t in tasks] == ["http://b.test/1"]


def test_claimed_urls_are_fetching_under_a_lease_and_not_claimed_twice(env: Env) -> None:
    env.seed("http://a.test/1", "http://a.test/2")
    tasks = env.claim(exclude_hosts=())
    assert len(tasks) == 2
    assert env.count("urls", "state = 'fetching' AND lease_until IS NOT NULL") == 2
    rows = env.rows(select(urls_t.c.lease_until))
    assert {r["lease_until"] for r in rows} == {T0 + dt.timedelta(minutes=5)}
    assert env.claim(exclude_hosts=()) == []


def test_release_requeues(env: Env) -> None:
    env.seed("http://a.test/1", "http://a.test/2")
    first, second = env.claim(exclude_hosts=())
    env.writer.run(lambda conn: release(conn, [first.url_id]))
    assert env.count("urls", "state = 'queued' AND lease_until IS NULL") == 1
    assert [t.url_id for t in env.claim(exclude_hosts=())] == [first.url_id]
    assert second.url_id != first.url_id


def test_release_leaves_finished_urls_alone(env: Env) -> None:
    (task,) = env.claim_all("http://a.test/")
    env.writer.put(fetched(task))
    env.writer.run(lambda conn: release(conn, [task.url_id]))
    assert env.count("urls", "state = 'done'") == 1


def test_recover_all_leases_requeues_everything_and_interrupts_running_crawls(env: Env) -> None:
    env.seed("http://a.test/1", "http://a.test/2")
    env.claim(exclude_hosts=())
    n = env.writer.run(partial(recover, now=T0, all_leases=True))
    assert n == 2
    assert env.count("urls", "state = 'queued' AND lease_until IS NULL") == 2
    assert env.count("crawls", "status = 'interrupted'") == 1


def test_recover_expired_leases_only(env: Env) -> None:
    env.seed("http://a.test/old", "http://a.test/new")

    def set_leases(conn: Connection) -> None:
        claim(conn, 10, (), T0 + dt.timedelta(minutes=5))
        conn.execute(
            update(urls_t)
            .where(urls_t.c.url == "http://a.test/old")
            .values(lease_until=T0 - dt.timedelta(seconds=1))
        )

    env.writer.run(set_leases)
    n = env.writer.run(partial(recover, now=T0, all_leases=False))
    assert n == 1
    assert env.count("urls", "url = 'http://a.test/old' AND state = 'queued'") == 1
    assert env.count("urls", "url = 'http://a.test/new' AND state = 'fetching'") == 1
    assert env.count("crawls", "status = 'running'") == 1


def test_add_seeds_keeps_known_urls(env: Env) -> None:
    (task,) = env.claim_all("http://a.test/")
    env.seed("http://a.test/", "http://a.test/new")
    assert env.count("urls") == 2
    assert env.count("urls", f"id = {task.url_id} AND state = 'fetching'") == 1
