"""A bounded thread pool that streams results: the pattern of ``shared/seeds``, taken seriously.

``ThreadPoolExecutor`` alone gets three things wrong for a crawler: its work queue is unbounded
(submit a million URLs and hold a million futures), ``map`` hands results back in submission order
(one slow page holds up every result behind it), and an exception stays hidden until someone reads
the future. :class:`StreamingPool` keeps at most ``max_in_flight`` futures, hands each result back
the moment it completes (``wait(FIRST_COMPLETED)``), captures every task's exception as a value,
and can cancel what has not started. Crawl, recrawl and worker all drive it the same way::

    with StreamingPool(work, workers=8, max_in_flight=16) as pool:
        while ...:
            while not pool.full() and (item := next_item()) is not None:
                pool.submit(item)
            for item, outcome in pool.completed(timeout=0.5):
                handle(item, outcome)          # outcome is the result or the exception

:func:`stream` wraps that loop for a plain iterable.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class StreamingPool(Generic[T, R]):
    """Bounded submission, results as they complete, per-task errors as values."""

    def __init__(
        self,
        fn: Callable[[T], R],
        *,
        workers: int,
        max_in_flight: int | None = None,
        thread_name_prefix: str = "worker",
        initializer: Callable[[], object] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._fn = fn
        self.max_in_flight = max(max_in_flight or 2 * workers, workers)
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=thread_name_prefix, initializer=initializer
        )
        self._pending: dict[Future[R], T] = {}

    def __len__(self) -> int:
        """Futures submitted and not yet handed back."""
        return len(self._pending)

    def full(self) -> bool:
        return len(self._pending) >= self.max_in_flight

    def submit(self, item: T) -> None:
        if self.full():
            raise RuntimeError("pool is full: check full() before submit()")
        self._pending[self._executor.submit(self._fn, item)] = item

    def completed(
        self, timeout: float | None = None, *, wake: Collection[Future[object]] = ()
    ) -> list[tuple[T, R | BaseException]]:
        """Wait until at least one task completes (or ``timeout``, or a ``wake`` future is done),
        and hand back every completed task with its result or exception."""
        if not self._pending and not wake:
            return []
        waiting: set[Future[object]] = set(self._pending)  # type: ignore[arg-type]
        waiting.update(wake)
        wait(waiting, timeout=timeout, return_when=FIRST_COMPLETED)
        out: list[tuple[T, R | BaseException]] = []
        for future in [f for f in self._pending if f.done()]:
            item = self._pending.pop(future)
            if future.cancelled():
                continue
            exc = future.exception()
            out.append((item, exc if exc is not None else future.result()))
        return out

    def cancel_pending(self) -> list[T]:
        """Cancel the tasks that have not started; return their items for the caller to requeue."""
        cancelled = [f for f in self._pending if f.cancel()]
        return [self._pending.pop(f) for f in cancelled]

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        if cancel:
            self.cancel_pending()
        self._executor.shutdown(wait=wait, cancel_futures=cancel)

    def __enter__(self) -> StreamingPool[T, R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=exc_type is None, cancel=exc_type is not None)


def stream(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int,
    max_in_flight: int | None = None,
) -> Iterator[tuple[T, R | BaseException]]:
    """Apply ``fn`` to ``items`` on a bounded pool, yielding ``(item, result_or_exception)`` in
    completion order. ``items`` is consumed lazily: never more than ``max_in_flight`` at once."""
    it = iter(items)
    with StreamingPool(fn, workers=workers, max_in_flight=max_in_flight) as pool:
        for item in itertools.islice(it, pool.max_in_flight):
            pool.submit(item)
        while len(pool):
            for done in pool.completed():
                yield done
                nxt = next(it, _END)
                if nxt is not _END:
                    pool.submit(nxt)  # type: ignore[arg-type]


_END = object()
