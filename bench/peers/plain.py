"""The plain pattern, as most people write it: requests + ThreadPoolExecutor + BeautifulSoup +
sqlite3. ``python plain.py SEEDS OUT.db --workers 32``.

A sliding window of futures (never ``executor.map``); each worker fetches with its own
``requests.Session`` and parses with BeautifulSoup (lxml); the main thread resolves links with
``urljoin``, dedups them in a set, keeps them on the seeds' hosts, and stores pages and links in
SQLite, committing every 500 pages.
"""

from __future__ import annotations

import argparse
import sqlite3
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from urllib.parse import urldefrag, urljoin, urlsplit

import requests
from bs4 import BeautifulSoup

_local = threading.local()


def session() -> requests.Session:
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
    return s


def fetch(url: str) -> tuple[str, int, str | None, list[str]]:
    try:
        r = session().get(url, timeout=30)
    except requests.RequestException:
        return url, 0, None, []
    title, links = None, []
    if r.status_code == 200 and "html" in r.headers.get("Content-Type", ""):
        soup = BeautifulSoup(r.content, "lxml")
        title = soup.title.get_text() if soup.title else None
        links = [str(a["href"]) for a in soup.find_all("a", href=True)]
    return url, r.status_code, title, links


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("seeds")
    ap.add_argument("db")
    ap.add_argument("--workers", type=int, default=32)
    args = ap.parse_args()
    with open(args.seeds) as f:
        seeds = [line.strip() for line in f if line.strip()]
    hosts = {urlsplit(u).netloc for u in seeds}
    db = sqlite3.connect(args.db)
    db.execute("CREATE TABLE pages (url TEXT PRIMARY KEY, status INTEGER, title TEXT)")
    db.execute("CREATE TABLE links (src TEXT, dst TEXT)")
    seen = set(seeds)
    queue = deque(seeds)
    running: set[Future[tuple[str, int, str | None, list[str]]]] = set()
    stored = 0
    with ThreadPoolExecutor(args.workers) as pool:
        while queue or running:
            while queue and len(running) < 2 * args.workers:
                running.add(pool.submit(fetch, queue.popleft()))
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                url, status, title, hrefs = fut.result()
                db.execute("INSERT INTO pages VALUES (?, ?, ?)", (url, status, title))
                targets = {urldefrag(urljoin(url, h)).url for h in hrefs}
                db.executemany("INSERT INTO links VALUES (?, ?)", [(url, t) for t in targets])
                for t in targets:
                    if t not in seen and urlsplit(t).netloc in hosts:
                        seen.add(t)
                        queue.append(t)
                stored += 1
                if stored % 500 == 0:
                    db.commit()
    db.commit()
    db.close()


if __name__ == "__main__":
    main()
