"""One HTTP fetch with its limits: the fetcher (deadline, retries, body cap), proxies, the
private-network guard, the header fast path, robots.txt fetching and the per-host gate.

Must not import: ``crawler.store``, ``crawler.parse``, ``crawler.run``, ``crawler.commands``,
``crawler.tools``. A fetch knows nothing of the database or of HTML.
"""
