"""Bytes → values: title, links, canonical, meta robots, text and hash (``soup``, the
BeautifulSoup reference, and ``fast``, lxml alone, sharing ``common``), parser processes,
link policy, extraction rules, sitemaps.

Pure apart from the parser processes' pipes. Must not import: ``crawler.store``,
``crawler.fetch``, ``crawler.run``, ``crawler.commands``, ``crawler.tools``.
"""
