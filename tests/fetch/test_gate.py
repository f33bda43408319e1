"""HostGate and the frontier's robots/per-host-cap hooks, with a fake clock."""

from __future__ import annotations

import itertools
import threading

from crawler.config import PolitenessSettings
from crawler.fetch.gate import GATE_MARGIN_S, HostGate
from crawler.records import FetchTask
from crawler.run.frontier import Frontier
from tests.run.test_frontier import FakeStore


class FakeTime:
    """A clock whose sleep advances it: the gate's waits become exact arithmetic."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


def test_gate_spaces_requests_to_one_host_by_its_delay() -> None:
    t = FakeTime()
    gate = HostGate(lambda host: 0.5, clock=t.clock, sleep=t.sleep)
    starts = []
    for _ in range(3):
        gate.wait_turn("http://a.example/x")()
        starts.append(t.now)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(abs(g - (0.5 + GATE_MARGIN_S)) < 1e-9 for g in gaps)


def test_gate_does_not_make_other_hosts_wait() -> None:
    t = FakeTime()
    gate = HostGate(lambda host: 5.0, clock=t.clock, sleep=t.sleep)
    gate.wait_turn("http://a.example/")()
    gate.wait_turn("http://b.example/")()
    gate.wait_turn("https://a.example/")()  # another scheme is another origin
    assert t.slept == []


def test_gate_delay_comes_from_the_host_and_zero_means_no_wait() -> None:
    t = FakeTime()
    delays = {"http://slow.example:80": 2.0}
    gate = HostGate(lambda host: delays.get(host, 0.0), clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        gate.wait_turn("http://fast.example/")()
    assert t.slept == []
    gate.wait_turn("http://slow.example/")()
    gate.wait_turn("http://slow.example/")()
    assert len(t.slept) == 1
    assert abs(t.slept[0] - (2.0 + GATE_MARGIN_S)) < 1e-9


def test_gate_push_back_holds_the_host_until_then() -> None:
    t = FakeTime()
    gate = HostGate(lambda host: 0.0, clock=t.clock, sleep=t.sleep)
    gate.wait_turn("http://a.example/")()
    gate.push_back("http://a.example/page", 30.0)
    start = t.now
    gate.wait_turn("http://a.example/")()
    assert t.now - start == 30.0


def test_gate_under_real_threads_never_starts_two_requests_within_the_delay() -> None:
    import time

    gate = HostGate(lambda host: 0.05)
    starts: list[float] = []
    lock = threading.Lock()

    def go() -> None:
        gate.wait_turn("http://a.example/")()
        with lock:
            starts.append(time.monotonic())

    threads = [threading.Thread(target=go) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(5)
    starts.sort()
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.05


def _task(i: int, host: int, url: str | None = None) -> FetchTask:
    return FetchTask(
        url_id=i, url=url or f"http://h{host}/{i}", host_id=host, host=f"http://h{host}:80", depth=0
    )


def test_frontier_diverts_disallowed_tasks_without_spending_the_host_turn() -> None:
    now = [0.0]
    store = FakeStore([_task(1, 1, "http://h1/private/a"), _task(2, 1, "http://h1/ok")])
    f = Frontier(
        PolitenessSettings(delay=10.0),
        store,
        clock=lambda: now[0],
        is_blocked=lambda t: "/private/" in t.url,
    )
    got = f.next_ready()
    assert got is not None
    assert got.url_id == 2  # the blocked one did not use the 10 s turn
    blocked = f.take_blocked()
    assert [t.url_id for t in blocked] == [1]
    assert store.given_back == []


def test_frontier_caps_pages_per_host_and_releases_the_rest() -> None:
    now = [0.0]
    store = FakeStore([_task(i, 1) for i in range(6)] + [_task(100 + i, 2) for i in range(2)])
    f = Frontier(
        PolitenessSettings(delay=0.0, per_host_concurrency=100),
        store,
        clock=lambda: now[0],
        max_per_host=3,
        min_claim_interval_s=0.0,
    )
    handed = []
    while (t := f.next_ready()) is not None:
        handed.append(t)
    per_host = {h: sum(1 for t in handed if t.host_id == h) for h in (1, 2)}
    assert per_host == {1: 3, 2: 2}
    f.take_blocked()
    assert sorted(t.url_id for t in store.given_back) == [3, 4, 5]
    f.note_result()
    f.next_ready()
    assert any(1 in ex for _, ex in store.claims[1:])  # the capped host is never claimed again


def test_frontier_uses_the_host_delay_function() -> None:
    now = [0.0]
    store = FakeStore([_task(i, 1) for i in range(3)])
    f = Frontier(
        PolitenessSettings(delay=0.0),
        store,
        clock=lambda: now[0],
        delay_for=lambda host: 2.0,  # e.g. a robots.txt Crawl-delay
    )
    assert f.next_ready() is not None
    assert f.next_ready() is None
    now[0] = 1.9
    assert f.next_ready() is None
    now[0] = 2.0
    assert f.next_ready() is not None
