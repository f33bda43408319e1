"""The command line: ``cli`` (the parser and ``main``), one module per command (``crawl``,
``recrawl``, ``worker``, ``schedule``, ``db``), and logging set-up. The reading tools live in
:mod:`crawler.tools` with the same ``NAME``/``register``/``run`` shape.

No crawl logic of its own: it parses arguments, resolves settings and calls
:mod:`crawler.run`. Must not import: nothing imports it (it is the top); it must not be
imported by any other package.
"""
