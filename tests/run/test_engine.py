"""The dispatcher loop waits when it cannot start anything, however many hosts are ready."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from crawler.config import PolitenessSettings
from crawler.records import FetchTask, PageResult, URLState
from crawler.run.engine import Engine
from crawler.run.frontier import Frontier
from crawler.run.pool import StreamingPool
from tests.run.test_frontier import FakeStore, task


class FakeWriter:
    """What the engine asks of the writer: results in, jobs run at once."""

    error: BaseException | None = None

    def __init__(self) -> None:
        self.results: list[PageResult] = []

    def put(self, result: PageResult) -> None:
        self.results.append(result)

    def call(self, fn: Callable[[Any], object]) -> Future[object]:
        fut: Future[object] = Future()
        fut.set_result(None)
        return fut

    def run(self, fn: Callable[[Any], object]) -> object:
        return None


def test_a_full_pool_is_waited_on_not_polled() -> None:
    """100 hosts ready, one slow fetch at a time: the dispatcher sleeps until it completes
    (a ready host once made it call ``completed(timeout=0)`` in a busy loop)."""
    store = FakeStore([task(i, host=i) for i in range(100)])
    frontier = Frontier(PolitenessSettings(delay=0, per_host_concurrency=1), store)

    def fetch(t: FetchTask) -> PageResult:
        time.sleep(0.25)
        return PageResult(t, URLState.DONE)

    pool: StreamingPool[FetchTask, PageResult] = StreamingPool(fetch, workers=1, max_in_flight=1)
    calls = 0
    completed = pool.completed

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return completed(*args, **kwargs)

    pool.completed = counting  # type: ignore[method-assign]
    stop = threading.Event()
    writer = FakeWriter()
    engine = Engine(frontier, pool, writer, stop=stop)  # type: ignore[arg-type]
    threading.Timer(1.0, stop.set).start()
    cpu = time.thread_time()
    engine.run()
    pool.shutdown(wait=True, cancel=True)
    assert 1 <= len(writer.results) <= 6  # ~4 fetches of 0.25 s in 1 s (fewer on a busy machine)
    assert calls <= 20  # a wait per completion, not thousands of polls
    assert time.thread_time() - cpu < 0.5
