"""Parsing in separate processes, so a crawl uses more than one core.

Threads hide network latency but not CPU: every Python crawler on the zero-latency benchmark
is bound to one core by the GIL (docs/performance.md). Parsing a page — decoding, Lexbor's tree,
links resolved and canonicalized, the text hashed — is pure work on bytes, so it moves to child
processes while fetching, politeness and the single writer stay in the crawl's process.

Each child is ``python -m crawler.parse.processes``, speaking length-prefixed ``marshal`` messages
(the same interpreter on both ends; only the first, the link policy, is a pickle) on its stdin and
stdout: one request (body, URL, charset, depth), one reply, in order. A fetcher thread sends its
page to a child with room and blocks on the reply (releasing the GIL), so a crawl of 32 threads
needs only as many children as spare cores. A child holds up to :data:`QUEUE_DEPTH` pages: when
it finishes one, the next is already in its pipe, so it never waits for this process's GIL to
be handed more work (with one page at a time the crawl's process, the bottleneck, was busy 89 %
of the time on the throughput benchmark; with three, 93 %). Replies are plain tuples, not
dataclasses: pickling slotted dataclasses costs ~100 µs a page on the crawl's process, tuples a
few.

A child that dies (a crash in the parser, the OOM killer) costs the page it was parsing a ``parse``
error; it is replaced for the next page. Children ignore Ctrl-C (the crawl decides when to stop
and still parses during its grace period) and exit when their stdin closes, including when the
crawl is killed.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import marshal
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from crawler.parse.links import LinkPolicy, follow_links
from crawler.records import Link, NewLink, ParsedPage

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<I")
MAX_PROCESSES = 4
ENDED = "the crawl ended before this page was parsed"


def process_count(setting: int) -> int:
    """``[crawl] parse_processes``: -1 is one per CPU beyond the first, up to MAX_PROCESSES."""
    if setting >= 0:
        return setting
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(MAX_PROCESSES, (cpus or 1) - 1))


class ParseFailed(Exception):
    """The page could not be parsed; the message is the ``errors`` row's text."""


# -- the wire -------------------------------------------------------------------------------


def _send(out: IO[bytes], obj: Any) -> None:
    data = marshal.dumps(obj, 4)
    out.write(_HEADER.pack(len(data)) + data)
    out.flush()


def _receive(src: IO[bytes], loads: Callable[[bytes], Any] = marshal.loads) -> Any:
    head = src.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("parser process closed its output")
    (size,) = _HEADER.unpack(head)
    data = src.read(size)
    if len(data) < size:
        raise EOFError("parser process closed its output mid-reply")
    return loads(data)


Request = tuple[bytes, str, "str | None", int]
"""body, final URL, charset, depth of the page's URL."""


WIRE_FIELDS = ("title", "canonical_url", "noindex", "nofollow", "content_hash", "text")
"""The :class:`ParsedPage` fields a child sends, in this order, beside the page's links (plain
tuples: pickling slotted dataclasses costs far more than tuples, docs/architecture.md)."""


def to_wire(page: ParsedPage, new: tuple[NewLink, ...]) -> tuple[Any, ...]:
    """A parsed page and its new links as the child's ``("ok", ...)`` reply."""
    fields = tuple(getattr(page, name) for name in WIRE_FIELDS)
    return ("ok", fields, [tuple(link) for link in page.links], [tuple(n) for n in new])


def from_wire(reply: tuple[Any, ...]) -> tuple[ParsedPage, tuple[NewLink, ...]]:
    """The inverse of :func:`to_wire`."""
    _, fields, links, new = reply
    page = ParsedPage(
        links=tuple(Link(u, nf) for u, nf in links), **dict(zip(WIRE_FIELDS, fields, strict=True))
    )
    return page, tuple(NewLink(*n) for n in new)


def parse_request(policy: LinkPolicy, keep_text: bool, request: Request) -> tuple[Any, ...]:
    """One page, as the child answers it: ``("ok", page fields, page links, new links)`` or
    ``("error", message)``."""
    from crawler import errors
    from crawler.parse.soup import parse_html

    body, url, charset, depth = request
    try:
        page = parse_html(
            body,
            url,
            charset=charset,
            sort_query=policy.sort_query,
            strip_tracking=policy.strip_tracking,
            keep_text=keep_text,
        )
    except Exception as exc:
        return ("error", errors.describe(exc))
    return to_wire(page, follow_links(policy, depth, page))


def _serve() -> None:
    """The child's loop: the first message is (LinkPolicy, keep_text); then pages until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    src = sys.stdin.buffer
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt replies
    try:
        policy, keep_text = _receive(src, pickle.loads)
        _send(out, ("ready", os.getpid()))
        while True:
            request = _receive(src)
            _send(out, parse_request(policy, keep_text, request))
    except (EOFError, BrokenPipeError):
        return


# -- the crawl's side -------------------------------------------------------------------------

QUEUE_DEPTH = 3
"""Pages a child may hold at once: the one it parses and the next ones, waiting in its pipe.
A queued page lets the child go on without waiting for this process to hand it more work,
which takes the GIL; deeper queues only keep more fetcher threads waiting."""

_Reply = tuple[Any, ...] | BaseException


class _Resend(Exception):
    """The page was queued in a child that ended before reaching it: not its fault."""


class _Child:
    """One child, its pipes, and the fetcher threads waiting on it, in the order they sent
    their pages (a child answers in order)."""

    def __init__(self, setup: bytes) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crawler.parse.processes"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout
        self.stdin.write(setup)
        self.stdin.flush()
        self.ready = False
        self.dead = False
        self._send_lock = threading.Lock()
        self._waiters: collections.deque[queue.SimpleQueue[_Reply]] = collections.deque()

    def submit(self, request: Request) -> queue.SimpleQueue[_Reply]:
        """Send a page; its reply (or the exception that ended the child) arrives in the box."""
        box: queue.SimpleQueue[_Reply] = queue.SimpleQueue()
        with self._send_lock:  # the waiter is queued before its page can be answered
            if self.dead:
                raise EOFError("parser process has ended")
            self._waiters.append(box)
            try:
                _send(self.stdin, request)
            except BaseException:
                self._waiters.pop()
                raise
        return box

    def answer_next(self, reply: tuple[Any, ...]) -> None:
        self._waiters.popleft().put(reply)

    def fail_all(self, exc: BaseException) -> None:
        """The child is gone: the page it was parsing gets ``exc`` (it may be what killed
        it); the pages queued behind it go elsewhere (:class:`_Resend`); none is sent to it."""
        with self._send_lock:
            self.dead = True
            if self._waiters:
                self._waiters.popleft().put(exc)
            while self._waiters:
                self._waiters.popleft().put(_Resend())

    def close(self, timeout: float) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stdout.close()


class ParserProcesses:
    """A fixed set of parser children; :meth:`parse` is called from many fetcher threads.

    Each ready child has :data:`QUEUE_DEPTH` tokens in one queue; a fetcher thread takes a
    token (waiting if there is none), sends its page to that child and blocks on its reply,
    which the child's reader thread hands over, putting the token back. (A queue rather than
    a condition and a load count: waiting and waking run no Python code under the GIL.)

    A child takes a few hundred milliseconds to start (an interpreter, selectolax, bs4): until one
    is ready, and whenever none is alive, :meth:`parse` answers None and the page is parsed on
    the fetcher thread, so a small crawl never waits for its parsers."""

    def __init__(self, count: int, policy: LinkPolicy, *, keep_text: bool = False) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        data = pickle.dumps((policy, keep_text), protocol=pickle.HIGHEST_PROTOCOL)
        self._setup = _HEADER.pack(len(data)) + data
        self._slots: queue.SimpleQueue[_Child] = queue.SimpleQueue()
        """A token per page a child may take; a dead child's tokens are dropped when drawn."""
        self._state = threading.Condition()
        """Guards the children list, their ``ready``, and ``_live``."""
        self._children: list[_Child] = []
        self._live = 0
        """Children that said they are ready and have not died."""
        self._closed = False
        for _ in range(count):
            self._spawn()

    def _spawn(self) -> None:
        """Start a child; its reader thread waits for its "ready", then hands out replies."""
        with self._state:
            if self._closed:  # a thread the crawl stopped waiting for: no new children
                return
            child = _Child(self._setup)
            self._children.append(child)
        threading.Thread(target=self._read, args=(child,), daemon=True).start()

    def _read(self, child: _Child) -> None:
        try:
            _receive(child.stdout)  # ("ready", pid)
        except (OSError, EOFError, ValueError, TypeError) as exc:
            if not self._closed:
                log.warning("a parser process failed to start: %s", exc)
            self._retire(child, exc)
            return
        with self._state:
            child.ready = True
            self._live += 1
            self._state.notify_all()
        for _ in range(QUEUE_DEPTH):
            self._slots.put(child)
        while True:
            try:
                reply = _receive(child.stdout)
            except (OSError, EOFError, ValueError, TypeError) as exc:
                if self._closed:  # it exits because close() closed its input; close() reaps it
                    child.fail_all(exc)
                    return
                try:
                    self._spawn()  # first: the set of children is never empty in between
                except OSError as cannot:  # out of processes or descriptors: parse in threads
                    log.warning("a parser process could not be started: %s", cannot)
                finally:
                    self._retire(child, exc)  # whatever happens, its waiting pages are answered
                return
            self._slots.put(child)
            child.answer_next(reply)

    def wait_ready(self, timeout: float) -> bool:
        """Whether every child is ready within ``timeout`` seconds (for tests and benchmarks:
        a crawl never waits)."""
        with self._state:
            return self._state.wait_for(
                lambda: bool(self._children) and self._live == len(self._children), timeout
            )

    def _pick(self) -> _Child | None:
        """A child with room for a page (its token taken); None if none is alive."""
        while True:
            if self._closed:
                raise ParseFailed(ENDED)
            if not self._live:
                return None
            try:
                child = self._slots.get(timeout=0.5)
            except queue.Empty:
                continue
            if not child.dead:
                return child

    def parse(
        self, body: bytes, url: str, charset: str | None, depth: int
    ) -> tuple[ParsedPage, tuple[NewLink, ...]] | None:
        """The page and its links as :func:`crawler.parse.soup.parse_html` and
        :func:`crawler.parse.links.follow_links` give them; :class:`ParseFailed` if the page cannot
        be parsed; None if no child is ready (the caller parses the page itself)."""
        while True:
            child = self._pick()
            if child is None:
                return None
            try:
                reply = child.submit((body, url, charset, depth)).get()
            except (OSError, EOFError, ValueError, TypeError) as exc:  # it never got the page
                child.fail_all(exc)
                continue
            if isinstance(reply, _Resend):
                continue
            if not isinstance(reply, BaseException):
                break
            if self._closed:
                raise ParseFailed(ENDED) from reply
            try:  # its output closes a moment before its exit status is there to read
                code: int | None = child.proc.wait(1.0)
            except subprocess.TimeoutExpired:
                code = None
            how = f"exited with status {code}" if code is not None else f"failed: {reply}"
            raise ParseFailed(f"parser process {how} while parsing this page") from reply
        if reply[0] != "ok":
            raise ParseFailed(reply[1])
        return from_wire(reply)

    def _retire(self, child: _Child, exc: BaseException) -> None:
        """A child ended (or failed to start): fail the pages it held, and reap it."""
        with self._state:
            if child in self._children:
                self._children.remove(child)
            if child.ready:
                self._live -= 1
                child.ready = False
            self._state.notify_all()
        child.fail_all(exc)
        child.proc.kill()
        child.close(timeout=1.0)

    def close(self, timeout: float = 5.0) -> None:
        """Close every child's input and wait for it to exit (so its CPU time is counted in
        the crawl's own, and no process outlives the crawl)."""
        with self._state:
            children, self._children = self._children, []
            self._closed = True
            self._state.notify_all()
        for child in children:
            if not child.ready:  # still starting: it has parsed nothing, no need to wait
                child.proc.kill()
            child.close(timeout)


if __name__ == "__main__":
    _serve()
