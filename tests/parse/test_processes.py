"""Parser processes give exactly what parsing on the fetcher thread gives, and survive their
children dying."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.parse.links import LinkPolicy, follow_links
from crawler.parse.processes import QUEUE_DEPTH, ParseFailed, ParserProcesses, process_count
from crawler.parse.soup import parse_html
from crawler.urls import Scope
from tests.crawlkit import crawl, query
from tests.mockserver import Page, generate_site, loopback_hosts

BASE = "http://a.test/dir/page.html"
POLICY = LinkPolicy(Scope(seed_hosts=frozenset({"http://a.test"})), max_depth=3)

PAGES: list[tuple[bytes, str | None]] = [
    (
        b"<html><head><title> Hello  there </title><base href='/other/'>"
        b"<meta name=robots content='noindex'><link rel=canonical href='/c?b=2&a=1'></head>"
        b"<body><a href='x.html'>x</a> <a href='http://b.test/'>out</a>"
        b"<a rel=nofollow href='../y#frag'>y</a><script>var t = 'no';</script> text</body></html>",
        None,
    ),
    ("<p>caf\u00e9 <a href='/\u00e9t\u00e9'>\u00e9</a></p>".encode("latin-1"), "latin-1"),
    (b"\xef\xbb\xbf<title>bom</title><a href=//a.test/z>z</a>", None),
    (b"<a href='/nul'>\x00</a>", None),  # lxml refuses NUL: the BeautifulSoup path
    (b"", None),
    (b"<meta name=robots content=nofollow><a href=/f>f</a>", "utf-8"),
]


@pytest.fixture
def parsers() -> Iterator[ParserProcesses]:
    p = ParserProcesses(1, POLICY, keep_text=True)
    assert p.wait_ready(30)
    yield p
    p.close()


@pytest.mark.parametrize(("body", "charset"), PAGES)
@pytest.mark.parametrize("depth", [0, 3])
def test_same_as_in_thread(
    parsers: ParserProcesses, body: bytes, charset: str | None, depth: int
) -> None:
    here = parse_html(body, BASE, charset=charset, keep_text=True)
    reply = parsers.parse(body, BASE, charset, depth)
    assert reply is not None
    page, new = reply
    assert page == here
    assert new == follow_links(POLICY, depth, here)


HUGE = b"<title>huge</title>" + b"".join(b"<a href=/%d>" % i for i in range(20_000))
"""A page a child takes ~0.3 s to parse: time to kill it mid-page."""


def kill_mid_page(parsers: ParserProcesses, queued: int) -> dict[str, Any]:
    """Send HUGE and then ``queued`` small pages to the only child, kill it while it parses
    HUGE, and return each page's outcome (``huge``, ``q0``...): a reply, None or ParseFailed."""
    body, charset = PAGES[0]
    (child,) = parsers._children
    results: dict[str, Any] = {}

    def parse(name: str, page: bytes) -> None:
        try:
            results[name] = parsers.parse(page, BASE, charset, 0)
        except ParseFailed as exc:
            results[name] = exc

    def start(name: str, page: bytes) -> threading.Thread:
        # Daemon: a page that waits forever must fail the test, not hang it.
        t = threading.Thread(target=parse, args=(name, page), daemon=True)
        t.start()
        return t

    deadline = time.monotonic() + 10
    threads = [start("huge", HUGE)]
    while not child._waiters and time.monotonic() < deadline:
        time.sleep(0.001)
    threads += [start(f"q{i}", body) for i in range(queued)]
    # The small pages are queued only once the huge one is written in full (one writer at a
    # time): the child has it, or it is in the pipe.
    while len(child._waiters) < 1 + queued and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(child._waiters) == 1 + queued
    os.kill(child.proc.pid, signal.SIGKILL)
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "a page waits forever on a child that is gone"
    return results


def test_a_dead_child_costs_the_page_it_was_parsing_and_is_replaced(
    parsers: ParserProcesses,
) -> None:
    body, charset = PAGES[0]
    parsers.parse(body, BASE, charset, 0)
    (child,) = parsers._children
    results = kill_mid_page(parsers, queued=2)

    failed = results["huge"]
    assert isinstance(failed, ParseFailed)
    assert "parser process exited with status -9" in str(failed)
    for name in ("q0", "q1"):  # resent: to the new child, or None (the caller parses it)
        assert results[name] is None or results[name][0].title == "Hello there"
    assert parsers.wait_ready(30)
    reply = parsers.parse(body, BASE, charset, 0)
    assert reply is not None
    assert reply[0].title == "Hello there"
    assert parsers._children[0] is not child


@pytest.mark.timeout(120)
def test_a_child_that_cannot_be_replaced_still_answers_its_pages(
    parsers: ParserProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of processes when a child dies: its waiting page fails (never hangs), and later
    pages are parsed by the caller."""
    import crawler.parse.processes as parseproc

    def no_more(setup: bytes) -> None:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(parseproc, "_Child", no_more)
    results = kill_mid_page(parsers, queued=1)

    assert isinstance(results["huge"], ParseFailed)
    assert results["q0"] is None  # resent, and no child is left: its caller parses it
    body, charset = PAGES[0]
    assert parsers.parse(body, BASE, charset, 0) is None  # no child left: the caller parses
    assert parsers._children == []


def test_an_idle_child_dying_costs_no_page(parsers: ParserProcesses) -> None:
    body, charset = PAGES[0]
    (child,) = parsers._children
    os.kill(child.proc.pid, signal.SIGKILL)
    child.proc.wait()
    reply = parsers.parse(body, BASE, charset, 0)  # None while the new child starts
    assert reply is None or reply[0].title == "Hello there"
    assert parsers.wait_ready(30)
    assert parsers._children[0] is not child


def test_pages_queue_in_a_busy_child(parsers: ParserProcesses) -> None:
    """Up to QUEUE_DEPTH pages wait in a child's pipe; more wait for room; all come back
    right, each to its own thread."""
    bodies = [f"<title>t{i}</title><a href='/l{i}'>x</a>".encode() for i in range(40)]
    results: dict[int, Any] = {}
    loads: list[int] = []

    def parse(i: int) -> None:
        loads.append(len(parsers._children[0]._waiters))
        results[i] = parsers.parse(bodies[i], BASE, None, 0)

    threads = [threading.Thread(target=parse, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert max(loads) <= QUEUE_DEPTH
    for i, (page, new) in results.items():
        assert page.title == f"t{i}"
        assert [n.url for n in new] == [f"http://a.test/l{i}"]
    assert not parsers._children[0]._waiters


def test_children_ignore_ctrl_c(parsers: ParserProcesses) -> None:
    body, charset = PAGES[0]
    parsers.parse(body, BASE, charset, 0)
    (child,) = parsers._children
    os.kill(child.proc.pid, signal.SIGINT)
    time.sleep(0.2)
    assert child.proc.poll() is None
    reply = parsers.parse(body, BASE, charset, 0)
    assert reply is not None
    assert reply[0].title == "Hello there"


def test_close_waits_for_children_and_refuses_more_work() -> None:
    p = ParserProcesses(2, POLICY)
    assert p.wait_ready(30)
    children = list(p._children)
    p.close()
    assert [c.proc.returncode for c in children] == [0, 0]
    with pytest.raises(ParseFailed):
        p.parse(b"<a href=/x>x</a>", BASE, None, 0)


def test_until_a_child_is_ready_the_caller_parses() -> None:
    p = ParserProcesses(1, POLICY)
    try:
        assert p.parse(b"<a href=/x>x</a>", BASE, None, 0) is None  # still starting
    finally:
        p.close()


def test_process_count() -> None:
    assert process_count(0) == 0
    assert process_count(3) == 3
    cpus = len(os.sched_getaffinity(0))
    assert process_count(-1) == max(0, min(4, cpus - 1))


DUMP = [
    "select url, state from urls order by url",  # depth: whichever link came first
    "select u.url, f.status_code, f.title, f.content_hash, f.noindex, f.canonical_url "
    "from fetches f join urls u on u.id = f.url_id order by u.url",
    "select s.url, d.url, l.nofollow from links l join urls s on s.id = l.src_url_id "
    "join urls d on d.id = l.dst_url_id order by 1, 2",
    "select u.url, e.kind, e.message from errors e join urls u on u.id = e.url_id order by 1",
]


@pytest.mark.timeout(120)
def test_a_crawl_stores_the_same_rows_with_and_without_parser_processes(
    site_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered: list[bool] = []
    start, parse = ParserProcesses.__init__, ParserProcesses.parse

    def start_and_wait(self: ParserProcesses, *args: Any, **kwargs: Any) -> None:
        start(self, *args, **kwargs)
        assert self.wait_ready(30)  # so that every page goes to a child

    def parse_and_count(self: ParserProcesses, *args: Any) -> Any:
        reply = parse(self, *args)
        answered.append(reply is not None)
        return reply

    monkeypatch.setattr(ParserProcesses, "__init__", start_and_wait)
    monkeypatch.setattr(ParserProcesses, "parse", parse_and_count)
    srv = site_server(hosts=loopback_hosts(2))
    gen = generate_site(srv.hosts, 60, port=srv.port, seed=3, site=srv.site)
    gen.add_linked("/nul.html", Page("<title>n\x00ul</title><a href='/p/1.html'>x</a>"), "/")
    dumps = []
    for n in (0, 2):
        run = tmp_path / f"parsers-{n}"
        run.mkdir()
        settings = {"crawl": {"parse_processes": n, "workers": 4}}
        assert crawl(run, gen.root_urls, settings=settings) == 0
        dumps.append([query(run / "crawl.db", q) for q in DUMP])
    assert answered
    assert all(answered)
    assert dumps[0] == dumps[1]
    assert len(dumps[0][1]) == len(gen.expected_urls)
