"""A bounded thread pool that streams results: the pattern of ``shared/seeds``, taken seriously.

``ThreadPoolExecutor`` alone gets three things wrong for a crawler: its work queue is unbounded
(submit a million URLs and hold a million futures), ``map`` hands results back in submission order
(one slow page holds up every result behind it), and an exception stays hidden until someone reads
the future. :class:`StreamingPool` keeps at most ``max_in_flight`` tasks, hands each result back
the moment it completes (each task puts its outcome on a completion queue, so waiting costs the
same with 2 or 200 tasks in flight), captures every task's exception as a value,
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
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Generic, TypeVar

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
        self._inbox: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        """Keys of submitted tasks, for the worker threads; None tells one thread to exit."""
        self._pending: dict[int, T] = {}
        """Tasks submitted and not handed back, by key."""
        self._done: queue.SimpleQueue[tuple[object, object]] = queue.SimpleQueue()
        """(key, outcome) of each finished task, in completion order, and (future, _WOKEN) of
        each ``wake`` future: waiting costs the same with 2 or 200 tasks in flight."""
        self._lock = threading.Lock()
        """Orders a task's start against its cancellation."""
        self._cancelled: set[int] = set()
        self._items: dict[int, T] = {}
        """What the worker threads read: a task's item until a thread takes it."""
        self._watched: set[Future[Any]] = set()
        self._keys = itertools.count()
        self._started: dict[int, float] = {}
        self._task_timeout = task_timeout
        self._clock = clock
        self._next_overdue_check = 0.0
        self._threads = [
            threading.Thread(
                target=self._work,
                args=(initializer,),
                name=f"{thread_name_prefix}_{i}",
                daemon=True,
            )
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self, initializer: Callable[[], object] | None) -> None:
        """One worker thread. Its own loop rather than ``ThreadPoolExecutor``: no future, work
        item or condition per task, which the dispatcher thread would pay for under the GIL.
        Daemon threads: a task abandoned after ``task_timeout`` must not hold the process."""
        if initializer is not None:
            initializer()
        inbox, done, lock, fn = self._inbox, self._done, self._lock, self._fn
        cancelled, started, items, clock = self._cancelled, self._started, self._items, self._clock
        while (key := inbox.get()) is not None:
            with lock:
                if key in cancelled:
                    cancelled.discard(key)
                    continue
                started[key] = clock()
                item = items.pop(key)
            try:
                outcome: object = fn(item)
            except BaseException as exc:  # handed back as a value, like any outcome
                outcome = exc
            done.put((key, outcome))

    def __len__(self) -> int:
        """Tasks submitted and not yet handed back."""
        return len(self._pending)

    def full(self) -> bool:
        return len(self._pending) >= self.max_in_flight

    def submit(self, item: T) -> None:
        if self.full():
            raise RuntimeError("pool is full: check full() before submit()")
        key = next(self._keys)
        self._pending[key] = item
        self._items[key] = item
        self._inbox.put(key)

    def completed(
        self, timeout: float | None = None, *, wake: Collection[Future[object]] = ()
    ) -> list[tuple[T, R | BaseException]]:
        """Wait until at least one task completes (or ``timeout``, or a ``wake`` future is done),
        and hand back every completed task with its result or exception."""
        if not self._pending and not wake:
            return []
        for w in wake:
            if w not in self._watched:  # a done callback runs at once if ``w`` is already done
                self._watched.add(w)
                w.add_done_callback(self._woken)
        out: list[tuple[T, R | BaseException]] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            woken = self._drain(out, deadline)
            if out or woken or not (self._pending or wake):
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
        if self._task_timeout is not None:
            out.extend(self._overdue(self._task_timeout))
        return out

    def _woken(self, future: Future[Any]) -> None:
        self._done.put((future, _WOKEN))

    def _drain(self, out: list[tuple[T, R | BaseException]], deadline: float | None) -> bool:
        """Block for the first finished task (until ``deadline``), then take all that are
        queued; append them to ``out``. True if a wake future fired."""
        finished: list[tuple[object, object]] = []
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            finished.append(self._done.get(timeout=left))
            while True:
                finished.append(self._done.get_nowait())
        except queue.Empty:
            pass
        woken = False
        pending, started = self._pending, self._started
        for key, outcome in finished:
            if outcome is _WOKEN:
                self._watched.discard(key)
                woken = True
                continue
            if key not in pending:  # handed back already (abandoned, timed out)
                continue
            item = pending.pop(key)
            started.pop(key, None)
            out.append((item, outcome))  # type: ignore[arg-type]
        return woken

    def _overdue(self, limit: float) -> list[tuple[T, R | BaseException]]:
        """Tasks running longer than ``limit``, handed back as :class:`TaskTimeout`; looked
        for at most every 50 ms (the scan is linear in the tasks in flight)."""
        now = self._clock()
        if now < self._next_overdue_check:
            return []
        self._next_overdue_check = now + 0.05
        started = self._started
        late = [key for key, t in list(started.items()) if now - t > limit]
        out: list[tuple[T, R | BaseException]] = []
        for key in late:
            started.pop(key, None)
            if key in self._pending:
                item = self._pending.pop(key)
                out.append((item, TaskTimeout(f"task still running after {limit:g}s; abandoned")))
        return out

    def cancel_pending(self) -> list[T]:
        """Cancel the tasks that have not started; return their items for the caller to requeue."""
        with self._lock:
            waiting = list(self._items)
            self._cancelled.update(waiting)
            self._items.clear()
        return [self._pending.pop(key) for key in waiting]

    def abandon(self) -> list[T]:
        """Stop waiting for every task still running; return their items. Their results, when
        they come, are dropped (the threads cannot be killed: :meth:`shutdown` without waiting)."""
        self.cancel_pending()
        items = list(self._pending.values())
        self._pending.clear()
        self._started.clear()
        return items

    def shutdown(self, *, wait: bool = True, cancel: bool = False) -> None:
        if cancel:
            self.cancel_pending()
        for _ in self._threads:
            self._inbox.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

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
_WOKEN = object()
