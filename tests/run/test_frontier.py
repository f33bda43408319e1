"""The in-memory side of the frontier: per-host politeness with a fake clock."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from concurrent.futures import Future

from crawler.config import PolitenessSettings
from crawler.records import FetchTask
from crawler.run.frontier import Frontier


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeStore:
    """Claims answered at once from a list, like the writer would."""

    def __init__(self, tasks: list[FetchTask]) -> None:
        self.tasks = tasks
        self.claims: list[tuple[int, set[int]]] = []
        self.given_back: list[FetchTask] = []

    def claim(self, n: int, exclude: Collection[int], per_host: int) -> Future[list[FetchTask]]:
        self.claims.append((n, set(exclude)))
        picked: list[FetchTask] = []
        for t in self.tasks:
            if t.host_id not in exclude and sum(p.host_id == t.host_id for p in picked) < per_host:
                picked.append(t)
        picked = picked[:n]
        for t in picked:
            self.tasks.remove(t)
        fut: Future[list[FetchTask]] = Future()
        fut.set_result(picked)
        return fut

    def give_back(self, tasks: Sequence[FetchTask], *, wait: bool = False) -> None:
        self.given_back.extend(tasks)


def task(i: int, host: int) -> FetchTask:
    return FetchTask(
        url_id=i, url=f"http://h{host}/{i}", host_id=host, host=f"http://h{host}:80", depth=0
    )


def drain_ready(frontier: Frontier) -> list[FetchTask]:
    out = []
    while (t := frontier.next_ready()) is not None:
        out.append(t)
    return out


def test_delay_and_concurrency_per_host() -> None:
    clock = FakeClock()
    store = FakeStore([task(i, 1) for i in range(5)])
    f = Frontier(PolitenessSettings(delay=1.0, per_host_concurrency=2), store, clock=clock)
    first = drain_ready(f)
    assert [t.url_id for t in first] == [0]  # delay: one start per second
    clock.now += 0.5
    assert drain_ready(f) == []
    clock.now += 0.5
    assert [t.url_id for t in drain_ready(f)] == [1]
    clock.now += 1.0
    assert drain_ready(f) == []  # two in flight: concurrency limit, although the delay passed
    f.done(first[0])
    assert [t.url_id for t in drain_ready(f)] == [2]


def test_waiting_host_does_not_block_others() -> None:
    clock = FakeClock()
    tasks = [task(i, 1) for i in range(3)] + [task(10 + i, 2) for i in range(3)]
    store = FakeStore(tasks)
    f = Frontier(PolitenessSettings(delay=10.0, per_host_concurrency=5), store, clock=clock)
    got = drain_ready(f)
    assert sorted(t.host_id for t in got) == [1, 2]  # one from each host, nobody waits for host 1
    assert f.wait_time() == 10.0


def test_retry_after_pushes_the_host_back() -> None:
    clock = FakeClock()
    store = FakeStore([task(i, 1) for i in range(3)])
    f = Frontier(PolitenessSettings(delay=0.0, per_host_concurrency=1), store, clock=clock)
    [t] = drain_ready(f)
    f.done(t, retry_after_s=30)
    assert drain_ready(f) == []
    clock.now += 29.9
    assert drain_ready(f) == []
    clock.now += 0.2
    assert len(drain_ready(f)) == 1


def test_exhausted_only_after_an_empty_claim_that_saw_every_result() -> None:
    clock = FakeClock()
    store = FakeStore([task(1, 1)])
    f = Frontier(PolitenessSettings(delay=0.0), store, clock=clock)
    [t] = drain_ready(f)
    f.done(t)
    f.note_result()
    store.tasks.append(task(2, 1))  # the result added a link
    assert not f.exhausted()
    assert [x.url_id for x in drain_ready(f)] == [2]
    f.done(task(2, 1))
    f.note_result()
    f.next_ready()
    assert f.exhausted()


def test_one_big_host_cannot_starve_the_others() -> None:
    clock = FakeClock()
    # Host 1 comes first in hand-out order with 100 URLs; hosts 2..5 have one URL each, after.
    store = FakeStore([task(i, 1) for i in range(100)] + [task(1000 + h, h) for h in range(2, 6)])
    f = Frontier(
        PolitenessSettings(delay=60.0),
        store,
        clock=clock,
        buffer_size=64,
        per_host_buffer=4,
        min_claim_interval_s=0.0,
    )
    got = drain_ready(f)
    got += drain_ready(f)  # host 1 waits: the frontier claims past it
    assert sorted(t.host_id for t in got) == [1, 2, 3, 4, 5]
    assert any(1 in excluded for _, excluded in store.claims[1:])  # full host not claimed again
    f.close()
    assert f.buffered == 0
    assert {t.host_id for t in store.given_back} == {1}


def test_idle_claims_back_off_while_they_come_back_empty() -> None:
    """Every host waiting on its delay and nothing more in the database: claims slow down (up
    to one a second) instead of running every 50 ms, and speed up again once one brings work."""
    clock = FakeClock()
    store = FakeStore([task(i, host=i) for i in range(50)])  # 50 hosts, one URL each
    f = Frontier(PolitenessSettings(delay=20.0, per_host_concurrency=1), store, clock=clock)
    assert len(drain_ready(f)) == 50
    store.tasks.extend(task(100 + i, host=i) for i in range(50))  # each host's second page
    f.note_result()
    drain_ready(f)  # claims them: every host now waits 20 s
    start = len(store.claims)
    for _ in range(200):  # 10 s of a busy dispatcher, results arriving all the while
        clock.now += 0.05
        f.note_result()
        assert drain_ready(f) == []
    idle_claims = len(store.claims) - start
    assert 15 <= idle_claims <= 30  # 50 ms, 100, 200, 400, then every 500 ms
    store.tasks.append(task(999, host=77))  # a new host appears
    clock.now += 1.0
    f.note_result()
    assert [t.url_id for t in drain_ready(f)] == [999]
    before = len(store.claims)
    for _ in range(3):  # 150 ms: back to the short interval (not 500 ms)
        clock.now += 0.05
        f.note_result()
        drain_ready(f)
    assert len(store.claims) > before
