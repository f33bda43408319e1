"""A deterministic multi-host site of linked pages that knows what a correct crawler finds."""

from __future__ import annotations

import html
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urldefrag, urljoin

from tests.mockserver.behaviours import Page
from tests.mockserver.context import Behaviour, RequestContext
from tests.mockserver.site import Site

# --------------------------------------------------------------------------- generated site

_WORDS = "river stone lantern orchard copper meadow harbor violet signal thunder ember quiet"

EXTERNAL_HOST = "external.invalid"
"""Generated pages link here; it is never served (``.invalid`` never resolves)."""


@dataclass
class GeneratedPage:
    """A generated HTML page, rendered per request so `GeneratedSite.add_linked` can add links."""

    title: str
    paragraphs: list[str]
    anchors: list[str]
    """Raw ``<a ...>...</a>`` elements, rendered as a list."""

    def render(self) -> str:
        title = html.escape(self.title)
        paras = "\n".join(f"<p>{html.escape(p)}</p>" for p in self.paragraphs)
        items = "\n".join(f"<li>{a}</li>" for a in self.anchors)
        return (
            '<!doctype html>\n<html><head><meta charset="utf-8">'
            f"<title>{title}</title></head>\n<body><h1>{title}</h1>\n{paras}\n"
            f"<ul>\n{items}\n</ul>\n</body></html>\n"
        )

    def __call__(self, ctx: RequestContext) -> None:
        ctx.send(200, self.render())


@dataclass
class GeneratedSite:
    """A generated site and what a correct crawl of it finds.

    ``expected_urls``: every URL reachable from the hosts' roots through followable links
    (canonical ``http://127.0.0.2:PORT/p/17.html``, roots as ``http://127.0.0.2:PORT/``);
    it excludes external URLs and pages linked only with ``rel="nofollow"``.
    ``links``: (src, dst) pairs of every followable ``<a href>``, fragments removed, external
    destinations included. ``nofollow_links`` / ``nofollow_urls``: the ``rel="nofollow"`` ones.
    ``external_urls``: the links' destinations on ``EXTERNAL_HOST``.
    """

    site: Site
    hosts: tuple[str, ...]
    port: int
    pages: dict[str, GeneratedPage]
    """Generated pages by absolute URL."""
    expected_urls: set[str] = field(default_factory=set)
    links: set[tuple[str, str]] = field(default_factory=set)
    nofollow_links: set[tuple[str, str]] = field(default_factory=set)
    nofollow_urls: set[str] = field(default_factory=set)
    external_urls: set[str] = field(default_factory=set)

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"http://{host or self.hosts[0]}:{self.port}{path}"

    @property
    def root_urls(self) -> list[str]:
        """The seeds: ``http://HOST:PORT/`` for every host."""
        return [self.url("/", h) for h in self.hosts]

    def add_linked(
        self,
        path: str,
        behaviour: Behaviour,
        from_path: str = "/",
        host: str | None = None,
        *,
        expected: bool = True,
        text: str | None = None,
    ) -> str:
        """Serve ``behaviour`` at ``path`` on ``host`` (default: the first host) and link to it
        (``<a href="path">``) from the generated page ``from_path`` on that host.

        The link goes into ``links``; the URL into ``expected_urls`` unless ``expected=False``
        (e.g. for a target a crawler should not record as fetched). Returns the absolute URL.
        """
        host = host or self.hosts[0]
        src = self.url(from_path, host)
        page = self.pages[src]  # KeyError: from_path is not a generated page
        self.site.add(path, behaviour, host=host)
        label = html.escape(text or f"extra {path}")
        page.anchors.append(f'<a href="{html.escape(path)}">{label}</a>')
        dst = urldefrag(urljoin(src, path)).url
        self.links.add((src, dst))
        if expected:
            self.expected_urls.add(dst)
        return dst


def _page_path(i: int) -> str:
    return f"/p/{i}.html"


def _href(rng: random.Random, src_path: str, dst_path: str, base: str) -> str:
    """One of several spellings of a same-host link from ``src_path`` to ``dst_path``."""
    if dst_path == "/":
        return rng.choice(["/", "../", base + "/"]) if src_path != "/" else "/"
    name = dst_path.rsplit("/", 1)[1]
    if src_path.startswith("/p/"):
        forms = [name, dst_path, f"./{name}#s{rng.randint(1, 9)}", base + dst_path, f"../p/{name}"]
    else:
        forms = [f"p/{name}", dst_path, f"./p/{name}#s{rng.randint(1, 9)}", base + dst_path]
    return rng.choice(forms)


def generate_site(
    hosts: Sequence[str],
    pages_per_host: int,
    *,
    port: int,
    seed: int = 0,
    links_per_page: tuple[int, int] = (3, 8),
    cross_host_links: bool = True,
    site: Site | None = None,
) -> GeneratedSite:
    """Generate linked HTML pages ``/p/0.html`` .. on every host, into ``site`` (or a new one).

    The port is needed for absolute links, so start the server first and generate into its
    site: ``generate_site(srv.hosts, 20, port=srv.port, site=srv.site)``. The structure
    depends only on ``seed`` and the arguments (``random.Random(seed)``).

    Each host's ``/`` links to page 0 (and a few more), page i links to page i+1, so every
    page is reachable from its root; other same-host links use mixed spellings (``17.html``,
    ``/p/17.html``, ``./17.html#s3``, ``http://HOST:PORT/p/17.html``, ``../p/17.html``, ``/``).
    ``links_per_page`` bounds the same-host + cross-host links of a page; some pages add a link
    to ``EXTERNAL_HOST``; every root has one such link and one ``rel="nofollow"`` link to
    ``/nofollow.html`` (served, linked from nowhere else).
    """
    if pages_per_host < 1:
        raise ValueError("pages_per_host must be >= 1")
    rng = random.Random(seed)
    gen = GeneratedSite(
        site=site if site is not None else Site(), hosts=tuple(hosts), port=port, pages={}
    )
    lo, hi = links_per_page
    for host in gen.hosts:
        base = f"http://{host}:{port}"
        others = [h for h in gen.hosts if h != host] if cross_host_links else []
        paths = ["/", *(_page_path(i) for i in range(pages_per_host))]
        for index, src_path in enumerate(paths):
            src = base + src_path
            anchors: list[tuple[str, str, str]] = []  # (href, dst, rel)
            chain = paths[index + 1] if index + 1 < len(paths) else None
            candidates = [p for p in paths if p not in (src_path, chain)]
            wanted = rng.randint(lo, hi)
            if others and rng.random() < 0.3:
                other = rng.choice(others)
                dst_path = rng.choice(["/", _page_path(rng.randrange(pages_per_host))])
                dst = f"http://{other}:{port}{dst_path}"
                anchors.append((dst, dst, ""))
            targets = [chain] if chain else []
            extra = max(0, min(len(candidates), wanted - len(anchors) - len(targets)))
            targets += rng.sample(candidates, extra)
            anchors += [(_href(rng, src_path, t, base), base + t, "") for t in targets]
            if src_path == "/" or rng.random() < 0.15:
                ext = f"http://{EXTERNAL_HOST}/x/{rng.randrange(1000)}"
                anchors.append((ext, ext, ""))
            if src_path == "/":
                anchors.append(("/nofollow.html", base + "/nofollow.html", "nofollow"))
            rng.shuffle(anchors)
            page = GeneratedPage(
                title=f"{host} {src_path}",
                paragraphs=[" ".join(rng.choices(_WORDS.split(), k=rng.randint(8, 30)))],
                anchors=[],
            )
            for n, (href, dst, rel) in enumerate(anchors):
                resolved = urldefrag(urljoin(src, href)).url
                assert resolved == dst, (src, href, dst)
                rel_attr = f' rel="{rel}"' if rel else ""
                page.anchors.append(f'<a href="{html.escape(href)}"{rel_attr}>link {n}</a>')
                if rel == "nofollow":
                    gen.nofollow_links.add((src, dst))
                    gen.nofollow_urls.add(dst)
                else:
                    gen.links.add((src, dst))
                if dst.startswith(f"http://{EXTERNAL_HOST}/"):
                    gen.external_urls.add(dst)
            gen.pages[src] = page
            gen.expected_urls.add(src)
            gen.site.add(src_path, page, host=host)
        gen.site.add("/nofollow.html", Page("<title>nofollow</title><p>hidden</p>"), host=host)
    return gen
