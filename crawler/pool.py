"""A bounded thread pool that streams results: the pattern of ``shared/seeds``, taken seriously.

``ThreadPoolExecutor`` alone gets three things wrong for a crawler: its work queue is unbounded
(submit a million URLs and hold a million futures), ``map`` hands results back in submission order
(one slow page holds up every result behind it), and an exception stays hidden until someone reads
the future. :class:`StreamingPool` keeps at most ``max_in_flight`` futures, hands each result back
the moment it completes (``wait(FIRST_COMPLETED)``), captures every task's exception as a value,
can cancel what has not started, and gives up on a task that runs past ``task_timeout`` (its
thread cannot be killed, but the caller gets a :class:`TaskTimeout` and its slot back).
Crawl, recrawl and worker all drive it the same way::

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
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class TaskTimeout(TimeoutError):
    """A task ran longer than the pool's ``task_timeout``; its late result will be dropped."""


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
        task_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._fn = fn
        self.max_in_flight = max(max_in_flight or 2 * workers, workers)
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=thread_name_prefix, initializer=initializer
        )
        self._pending: dict[Future[R], T] = {}
        self._started: dict[object, float] = {}
        self._tokens: dict[Future[R], object] = {}
        self._task_timeout = task_timeout
        self._clock = clock

    def __len__(self) -> int:
        """Futures submitted and not yet handed back."""
        return len(self._pending)

    def full(self) -> bool:
        return len(self._pending) >= self.max_in_flight

    def submit(self, item: T) -> None:
        if self.full():
            raise RuntimeError("pool is full: check full() before submit()")
        if self._task_timeout is None:
            self._pending[self._executor.submit(self._fn, item)] = item
            return
        token = object()  # the future does not exist yet when the task may already start
        started = self._started

        def timed() -> R:
            started[token] = self._clock()
            return self._fn(item)

        future = self._executor.submit(timed)
        self._tokens[future] = token
        self._pending[future] = item

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
            self._started.pop(self._tokens.pop(future, None), None)
            if future.cancelled():
                continue
            exc = future.exception()
            out.append((item, exc if exc is not None else future.result()))
        if self._task_timeout is not None:
            out.extend(self._overdue(self._task_timeout))
        return out

    def _overdue(self, limit: float) -> list[tuple[T, R | BaseException]]:
        now = self._clock()
        started = self._started
        late = [f for f, tok in self._tokens.items() if now - started.get(tok, now) > limit]
        out: list[tuple[T, R | BaseException]] = []
        for future in late:
            started.pop(self._tokens.pop(future), None)
            item = self._pending.pop(future)
            out.append((item, TaskTimeout(f"task still running after {limit:g}s; abandoned")))
        return out

    def cancel_pending(self) -> list[T]:
        """Cancel the tasks that have not started; return their items for the caller to requeue."""
        cancelled = [f for f in self._pending if f.cancel()]
        for f in cancelled:
            self._tokens.pop(f, None)
        return [self._pending.pop(f) for f in cancelled]

    def abandon(self) -> list[T]:
        """Stop waiting for every task still running; return their items. Their results, when
        they come, are dropped (the threads cannot be killed: :meth:`shutdown` without waiting)."""
        items = list(self._pending.values())
        for future in self._pending:
            future.cancel()
            self._started.pop(self._tokens.pop(future, None), None)
        self._pending.clear()
        return items

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
