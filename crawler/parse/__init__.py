"""Bytes → values: title, links, canonical, meta robots, text and hash (``soup``, the entry
point; ``charset``, the HTML standard's encoding sniffing; ``lexbor``, the standard's parsing,
read through ``common``), parser processes, link policy, extraction rules (on a BeautifulSoup
tree), sitemaps.

Pure apart from the parser processes' pipes. Must not import: ``crawler.store``,
``crawler.fetch``, ``crawler.run``, ``crawler.commands``, ``crawler.tools``.
"""
