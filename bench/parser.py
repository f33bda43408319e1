"""Parser micro-benchmark: ``parse_html`` CPU per page, as docs/performance.md ("Parser") gives it.

    python -m bench.parser          # small (scenario 1's pages) and large (187 KB news) pages

Small: 40 pages as ``bench.sitegen`` renders them for scenario 1 (10 KB, 10-20 links). Large: 3
generated news pages (~580 links, inline CSS and JS, JSON-LD, SVG icons, a noscript pixel).
CPU time (``process_time``), the median of 5 runs; the machine's noise is large, so compare
runs interleaved with another tree (``PYTHONPATH=<other tree> python -m bench.parser``).
"""

from __future__ import annotations

import json
import random
import statistics
import time

from bench.sitegen import WORDS, _href, _Text, render
from crawler.parse.soup import parse_html

URL = "http://127.0.0.2:8080/p/3.html"


def sitegen_pages(n: int = 40, pages_per_host: int = 1000) -> list[str]:
    """As sitegen.generate builds them (seed 0), without writing files."""
    rng = random.Random(0)
    text = _Text(rng)
    out = []
    for i in range(n):
        wanted = rng.randint(10, 20)
        targets = [i + 1, *rng.choices(range(pages_per_host), k=wanted - 1)]
        rng.shuffle(targets)
        hrefs = [_href(rng, i, t) for t in targets]
        size = rng.randint(8_000, 15_000)
        paragraphs = text.fill(rng, max(0, size - 1_400 - 60 * len(hrefs)))
        out.append(render(f"127.0.0.2 page {i}", hrefs, paragraphs, rng))
    return out


def news_page(seed: int, target: int = 200_000) -> str:
    rng = random.Random(seed)
    w = lambda k: " ".join(rng.choices(WORDS, k=k))  # noqa: E731
    icon = (
        '<svg class="i" viewBox="0 0 24 24" aria-hidden="true"><path d="M12 2L2 7l10 5 10-5-10-5z'
        '"/><use href="#sprite-x"></use></svg>'
    )
    head = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>{w(8).title()} | The Daily {w(1).title()}</title>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="robots" content="index, follow, max-image-preview:large">',
        *[
            f'<meta property="og:{k}" content="{w(6)}">'
            for k in ("title", "description", "type", "url", "image")
        ],
        '<link rel="canonical" href="https://news.example/2026/12/04/story">',
        *[
            f'<link rel="preload" href="/static/font{i}.woff2" as="font" crossorigin>'
            for i in range(6)
        ],
        "<style>"
        + "".join(f".c{i}{{margin:{i}px;color:#{i:06x};display:flex}}\n" for i in range(600))
        + "</style>",
        "<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)}"
        "var tpl='<a href=\"/not-a-link\">x</a>';"
        + "var cfg={"
        + ",".join(f'"k{i}":"{w(3)}"' for i in range(300))
        + "};</script>",
        '<script type="application/ld+json">{"@context":"https://schema.org","@type":"NewsArticle",'
        f'"headline":"{w(10)}","articleBody":"{w(400)}"}}</script>',
        '<noscript><img src="https://px.example/p.gif?id=1" width=1 height=1></noscript>',
        "</head>",
    ]
    body = ['<body class="article"><header><a class=logo href="/">' + icon + "</a><nav><ul>"]
    body += [
        f'<li class="nav-item"><a href="/section/{w(1)}-{i}" data-track="nav{i}">{w(2)}</a></li>'
        for i in range(120)
    ]
    body.append("</ul></nav></header><main><article><h1>" + w(10) + "</h1>")
    i = 0
    while sum(map(len, head)) + sum(map(len, body)) < target * 0.8:
        i += 1
        links = " ".join(
            f'<a href="https://news.example/{w(1)}/{rng.randint(1, 10**6)}'
            f'?utm_source=x&amp;ref={i}">{w(2)}</a>'
            for _ in range(rng.randint(0, 3))
        )
        body.append(
            f'<p class="c{i % 600}" style="font-size:{12 + i % 5}px">'
            f"{w(rng.randint(40, 90))} {links}</p>"
        )
        if i % 15 == 0:
            body.append(
                f'<figure><img src="/img/{i}.jpg" alt="{w(4)}" loading=lazy>'
                f"<figcaption>{w(12)}</figcaption></figure>"
            )
            body.append(
                "<aside class=related><h3>Related</h3><ul>"
                + "".join(
                    f'<li><a href="/story/{rng.randint(1, 10**6)}">{icon}{w(6)}</a></li>'
                    for _ in range(8)
                )
                + "</ul></aside>"
            )
            body.append(
                "<script>(function(){var s=document.createElement('script');s.src='/ads.js?"
                + str(i)
                + "';})();</script>"
            )
    body.append(
        "</article><section class=comments>"
        + "".join(
            f"<div class=comment><b>{w(2)}</b><p>{w(30)}</p>"
            f'<a href="#c{j}" rel=nofollow>reply</a></div>'
            for j in range(40)
        )
    )
    body.append(
        "</section></main><footer><div class=cols>"
        + "".join(f'<a href="/about/{w(1)}{j}">{w(2)}</a> ' for j in range(150))
        + "</div><p>© 2026</p></footer>"
    )
    body.append(
        "<script>"
        + "".join(f"function f{j}(a){{return a*{j}+'{w(2)}';}}\n" for j in range(250))
        + "</script></body></html>"
    )
    return "".join(head) + "\n".join(body)


def main() -> None:
    small = [p.encode() for p in sitegen_pages()]
    large = [news_page(seed).encode() for seed in range(3)]
    out: dict[str, float] = {}
    for name, pages, rounds in (("small", small, 25), ("large", large, 6)):
        runs = []
        for _ in range(5):
            start = time.process_time()
            for _ in range(rounds):
                for page in pages:
                    parse_html(page, URL)
            runs.append((time.process_time() - start) / (rounds * len(pages)) * 1e6)
        out[f"{name}_us_per_page"] = round(statistics.median(runs))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
