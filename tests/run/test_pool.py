"""The streaming pool: bounded submission, results as they complete, errors as values."""

from __future__ import annotations

import threading
import time

import pytest

from crawler.run.pool import StreamingPool, stream

pytestmark = pytest.mark.timeout(20)


def test_never_more_than_max_in_flight_and_streams_in_completion_order() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def work(x: float) -> float:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(x)
        with lock:
            running -= 1
        return x

    delays = [0.5] + [0.01] * 20
    with StreamingPool(work, workers=4, max_in_flight=6) as pool:
        submitted = 0
        order: list[float] = []
        while submitted < len(delays) or len(pool):
            while not pool.full() and submitted < len(delays):
                pool.submit(delays[submitted])
                submitted += 1
                assert len(pool) <= 6
            for _, outcome in pool.completed(timeout=1):
                assert not isinstance(outcome, BaseException)
                order.append(outcome)
    assert peak == 4
    assert order[-1] == 0.5  # the slow one, submitted first, came back last
    assert len(order) == len(delays)


def test_submit_when_full_is_a_programming_error() -> None:
    gate = threading.Event()
    with StreamingPool(lambda _: gate.wait(5), workers=1, max_in_flight=1) as pool:
        pool.submit(1)
        with pytest.raises(RuntimeError, match="full"):
            pool.submit(2)
        gate.set()


def test_exceptions_are_values_not_crashes() -> None:
    def work(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    results = dict(stream(work, range(6), workers=2))
    assert isinstance(results[3], ValueError)
    assert [results[i] for i in (0, 1, 2, 4, 5)] == [0, 1, 2, 4, 5]


def test_stream_consumes_input_lazily() -> None:
    pulled = 0

    def source():
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield i

    it = stream(lambda x: x, source(), workers=2, max_in_flight=4)
    next(it)
    assert pulled <= 6  # never the whole input
    assert sum(1 for _ in it) == 999


def test_cancel_pending_returns_unstarted_items() -> None:
    gate = threading.Event()
    pool: StreamingPool[int, object] = StreamingPool(
        lambda _: gate.wait(5), workers=1, max_in_flight=5
    )
    for i in range(5):
        pool.submit(i)
    time.sleep(0.05)
    cancelled = pool.cancel_pending()
    assert sorted(cancelled) == [1, 2, 3, 4]  # item 0 is running and cannot be cancelled
    gate.set()
    done = pool.completed(timeout=2)
    assert [item for item, _ in done] == [0]
    pool.shutdown()


def test_wake_future_cuts_the_wait_short() -> None:
    from concurrent.futures import Future

    gate = threading.Event()
    with StreamingPool(lambda _: gate.wait(5), workers=1) as pool:
        pool.submit(1)
        wake: Future[object] = Future()
        threading.Timer(0.1, lambda: wake.set_result(None)).start()
        t0 = time.monotonic()
        assert pool.completed(timeout=3, wake=[wake]) == []
        assert time.monotonic() - t0 < 1.0
        gate.set()


def test_task_timeout_hands_back_an_abandoned_task_and_its_slot() -> None:
    from crawler.run.pool import TaskTimeout

    gate = threading.Event()

    def work(x: int) -> int:
        if x == 0:
            gate.wait(5)  # a task stuck where nothing can cut it short
        return x

    with StreamingPool(work, workers=2, max_in_flight=2, task_timeout=0.2) as pool:
        pool.submit(0)
        pool.submit(1)
        seen: dict[int, object] = {}
        deadline = time.monotonic() + 3
        while len(seen) < 2 and time.monotonic() < deadline:
            for item, outcome in pool.completed(timeout=0.05):
                seen[item] = outcome
        assert seen[1] == 1
        assert isinstance(seen[0], TaskTimeout)
        assert not pool.full()  # the stuck task no longer holds a slot
        gate.set()
