"""Deterministic benchmark sites: static HTML files on disk, and pages made on the fly.

:func:`generate` writes N pages of 8-15 KB of HTML with 10-20 links each, spread over H loopback
hosts, to ``ROOT/<host address>/`` (``index.html`` for ``/``, ``p/<i>.html`` for the others), so
nginx can serve the tree with ``root ROOT/$server_addr``. Every page is reachable from its
host's root (page i always links to page i+1), links use mixed spellings (``17.html``,
``/p/17.html``, ``../p/17.html``, ``./17.html#top``) and stay on their own host, so every peer
must find exactly ``pages_per_host`` pages per host. The output depends only on the arguments
(``random.Random(seed)``).

:func:`frontier_page` makes the pages of the "memory flat in the frontier" scenario: page ``n``
links to ``fanout`` URLs that no other page links to, so every fetched page grows the frontier.

Must not: touch the network, or write outside the directory it is given.
"""

from __future__ import annotations

import html
import os
import random
from dataclasses import dataclass
from pathlib import Path

WORDS = (  # noqa: SIM905 (a paragraph reads better than 58 quoted words)
    "river stone lantern orchard copper meadow harbor violet signal thunder ember quiet "
    "garden window silver forest candle market bridge winter summer autumn valley mountain "
    "paper letter engine archive station harvest compass mirror shadow morning evening "
    "castle island ocean desert canyon glacier prairie village city tower garden library "
    "theory method result measure sample figure table section chapter volume record"
).split()

PAGE_BYTES = (8_000, 15_000)
LINKS_PER_PAGE = (10, 20)


def host_addresses(count: int) -> list[str]:
    """``count`` loopback addresses: 127.0.0.2, 127.0.0.3, ... 127.0.1.2, ... (Linux routes all
    of 127/8 to the loopback interface, so each is bindable). Last octets 0, 1 and 255 are
    skipped, so 127.0.0.1 (what other programs use) never is one."""
    out: list[str] = []
    n = 0
    while len(out) < count:
        third, fourth = divmod(n, 256)
        n += 1
        if fourth in (0, 1, 255):
            continue
        if third > 255:
            raise ValueError(f"too many hosts: {count}")
        out.append(f"127.0.{third}.{fourth}")
    return out


def page_path(i: int) -> str:
    """The URL path of page ``i`` of a host: page 0 is the root."""
    return "/" if i == 0 else f"/p/{i}.html"


def _href(rng: random.Random, src: int, dst: int) -> str:
    """One spelling of a link from page ``src`` to page ``dst`` of the same host."""
    if dst == 0:
        return "/" if src == 0 else rng.choice(["/", "../"])
    name = f"{dst}.html"
    if src == 0:
        return rng.choice([f"p/{name}", f"/p/{name}", f"./p/{name}#top"])
    return rng.choice([name, f"/p/{name}", f"../p/{name}", f"./{name}#top"])


class _Text:
    """A pool of paragraphs, made once, that pages pick from (fast, and still varied)."""

    def __init__(self, rng: random.Random, count: int = 600) -> None:
        self.paragraphs = [
            " ".join(rng.choices(WORDS, k=rng.randint(30, 110))).capitalize() + "."
            for _ in range(count)
        ]

    def fill(self, rng: random.Random, size: int) -> list[str]:
        out: list[str] = []
        total = 0
        while total < size:
            p = rng.choice(self.paragraphs)
            out.append(p)
            total += len(p) + 8
        return out


def render(title: str, hrefs: list[str], paragraphs: list[str], rng: random.Random) -> str:
    """An HTML page: a nav list with half the links, the rest inline in the paragraphs."""
    nav_n = len(hrefs) // 2
    nav = "\n".join(
        f'<li><a href="{html.escape(h)}">{WORDS[i % len(WORDS)]} {i}</a></li>'
        for i, h in enumerate(hrefs[:nav_n])
    )
    inline = hrefs[nav_n:]
    body: list[str] = []
    for i, p in enumerate(paragraphs):
        if i < len(inline):
            word = rng.choice(WORDS)
            body.append(f'<p>{p} See <a href="{html.escape(inline[i])}">{word}</a>.</p>')
        else:
            body.append(f"<p>{p}</p>")
    body.extend(f'<p><a href="{html.escape(h)}">more</a></p>' for h in inline[len(paragraphs) :])
    t = html.escape(title)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<title>{t}</title>\n<meta name="viewport" content="width=device-width">\n'
        '<link rel="stylesheet" href="/style.css"></head>\n'
        f"<body><header><h1>{t}</h1><nav><ul>\n{nav}\n</ul></nav></header>\n"
        f"<main><article>\n" + "\n".join(body) + "\n</article></main>\n"
        "<footer><p>Generated for the crawler benchmark.</p></footer>\n</body></html>\n"
    )


@dataclass(frozen=True)
class StaticSite:
    """A generated site on disk."""

    root: Path
    """Holds one directory per host address."""
    hosts: tuple[str, ...]
    pages_per_host: int
    bytes: int
    """Total HTML bytes written."""

    @property
    def total_pages(self) -> int:
        return len(self.hosts) * self.pages_per_host

    def seeds(self, port: int) -> list[str]:
        return [f"http://{h}:{port}/" for h in self.hosts]


def generate(
    root: Path,
    hosts: list[str],
    pages_per_host: int,
    *,
    seed: int = 0,
    page_bytes: tuple[int, int] = PAGE_BYTES,
    links_per_page: tuple[int, int] = LINKS_PER_PAGE,
    crawl_delay: float | None = None,
) -> StaticSite:
    """Write the site under ``root``; with ``crawl_delay``, each host gets a robots.txt with
    ``Crawl-delay``. Directories are made world-readable: nginx's workers run as nobody."""
    if pages_per_host < 1:
        raise ValueError("pages_per_host must be >= 1")
    rng = random.Random(seed)
    text = _Text(rng)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    total = 0
    lo, hi = links_per_page
    for host in hosts:
        hdir = root / host
        (hdir / "p").mkdir(parents=True, exist_ok=True)
        os.chmod(hdir, 0o755)
        os.chmod(hdir / "p", 0o755)
        if crawl_delay is not None:
            (hdir / "robots.txt").write_text(
                f"User-agent: *\nCrawl-delay: {crawl_delay:g}\nDisallow: /private/\n"
            )
        for i in range(pages_per_host):
            wanted = rng.randint(lo, hi)
            targets = [i + 1] if i + 1 < pages_per_host else []
            others = rng.choices(range(pages_per_host), k=max(0, wanted - len(targets)))
            targets += others
            rng.shuffle(targets)
            hrefs = [_href(rng, i, t) for t in targets]
            size = rng.randint(*page_bytes)
            # ~1.4 KB of markup around the text and links
            paragraphs = text.fill(rng, max(0, size - 1_400 - 60 * len(hrefs)))
            page = render(f"{host} page {i}", hrefs, paragraphs, rng).encode()
            while len(page) < page_bytes[0]:  # the markup estimate fell short
                paragraphs.append(rng.choice(text.paragraphs))
                page = render(f"{host} page {i}", hrefs, paragraphs, rng).encode()
            total += len(page)
            path = hdir / ("index.html" if i == 0 else f"p/{i}.html")
            path.write_bytes(page)
    return StaticSite(root, tuple(hosts), pages_per_host, total)


def frontier_page(n: int, fanout: int, *, size: int = 8_000) -> bytes:
    """Page ``/f/<n>.html``: links to ``/f/<n*fanout+1>.html`` ... ``/f/<n*fanout+fanout>.html``,
    URLs no other page links to (a tree), padded to about ``size`` bytes of text."""
    rng = random.Random(n)
    first = n * fanout + 1
    hrefs = [f"/f/{k}.html" for k in range(first, first + fanout)]
    paragraphs = _FRONTIER_TEXT.fill(rng, max(0, size - 1_400 - 40 * fanout))
    return render(f"frontier {n}", hrefs, paragraphs, rng).encode()


_FRONTIER_TEXT = _Text(random.Random(1), count=200)
