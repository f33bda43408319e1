"""What a running crawl is doing, every second: a live display on a terminal, log lines elsewhere.

The reporter runs on its own thread and only *reads*: a snapshot function the engine provides
(plain counters, safe to read without a lock) and, every few seconds, the number of URLs still
queued (a count on a read connection; SQLite's WAL lets it read while the writer writes). It
never slows the crawl: if it falls behind, it simply shows older figures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

log = logging.getLogger("crawler.run.progress")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The figures shown: pages done, queued, in flight, errors, rates."""

    pages: int
    ok: int
    failed: int
    blocked: int
    in_flight: int
    bytes: int
    elapsed_s: float
    queued: int | None = None

    def line(self, pages_per_s: float, bytes_per_s: float) -> str:
        queued = "?" if self.queued is None else str(self.queued)
        return (
            f"{self.pages} pages ({self.ok} ok, {self.failed} failed, {self.blocked} blocked), "
            f"{queued} queued, {self.in_flight} in flight, "
            f"{pages_per_s:.1f} pages/s, {_rate(bytes_per_s)}"
        )


def _rate(bytes_per_s: float) -> str:
    for unit in ("B/s", "KiB/s", "MiB/s"):
        if bytes_per_s < 1024 or unit == "MiB/s":
            return f"{bytes_per_s:.0f} {unit}" if unit == "B/s" else f"{bytes_per_s:.1f} {unit}"
        bytes_per_s /= 1024
    return ""  # pragma: no cover


class Progress:
    """Reports progress until stopped: ``live`` (rich, on a terminal) or a log line every
    ``interval_s`` seconds. ``queued`` is asked for at most every ``queued_every_s``."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        *,
        queued: Callable[[], int] | None = None,
        live: bool = False,
        interval_s: float = 10.0,
        queued_every_s: float = 2.0,
        stream: IO[str] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._queued = queued
        self._live = live
        self._interval_s = interval_s
        self._queued_every_s = queued_every_s
        self._stream = stream
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._last_queued: int | None = None
        self._queued_at = float("-inf")

    def start(self) -> Progress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _current(self) -> Snapshot:
        snap = self._snapshot()
        now = time.monotonic()
        if self._queued is not None and now - self._queued_at >= self._queued_every_s:
            self._queued_at = now
            try:
                self._last_queued = self._queued()
            except Exception:  # a busy database must not kill the display
                log.debug("could not count queued URLs", exc_info=True)
        return Snapshot(
            snap.pages,
            snap.ok,
            snap.failed,
            snap.blocked,
            snap.in_flight,
            snap.bytes,
            snap.elapsed_s,
            self._last_queued,
        )

    def _run(self) -> None:
        try:
            if self._live:
                self._run_live()
            else:
                self._run_log()
        except Exception:  # the display is a courtesy; the crawl goes on without it
            log.debug("progress display failed", exc_info=True)

    def _run_log(self) -> None:
        prev: Snapshot | None = None
        while not self._stop.wait(self._interval_s):
            snap = self._current()
            pps, bps = _rates(prev, snap)
            log.info(
                "progress: %s",
                snap.line(pps, bps),
                extra={
                    "pages": snap.pages,
                    "ok": snap.ok,
                    "failed": snap.failed,
                    "blocked": snap.blocked,
                    "queued": snap.queued,
                    "in_flight": snap.in_flight,
                    "pages_per_s": round(pps, 2),
                    "bytes_per_s": round(bps, 1),
                },
            )
            prev = snap

    def _run_live(self) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        console = Console(file=self._stream, stderr=self._stream is None)
        prev: Snapshot | None = None
        first = Text("starting...")
        with Live(first, console=console, refresh_per_second=4, transient=True) as live:
            while not self._stop.wait(1.0):
                snap = self._current()
                pps, bps = _rates(prev, snap)
                live.update(Text(f"crawling: {snap.line(pps, bps)}  [{snap.elapsed_s:.0f} s]"))
                prev = snap


def _rates(prev: Snapshot | None, snap: Snapshot) -> tuple[float, float]:
    """Rates over the last interval (over the whole run for the first one)."""
    if prev is None:
        dt_s = snap.elapsed_s
        pages, nbytes = snap.pages, snap.bytes
    else:
        dt_s = snap.elapsed_s - prev.elapsed_s
        pages, nbytes = snap.pages - prev.pages, snap.bytes - prev.bytes
    if dt_s <= 0:
        return 0.0, 0.0
    return pages / dt_s, nbytes / dt_s
