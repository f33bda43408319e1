"""One crawl, running: ``compose`` builds the parts from settings in named steps, ``runner``
runs them (seed, claim, dispatch, finish), ``engine`` is the dispatcher loop, ``frontier`` the
per-host buffer, ``work`` one URL's job on a worker thread, ``pool``, ``progress``, ``summary``.

The only package that joins the stages: it imports ``crawler.store``, ``crawler.fetch`` and
``crawler.parse``. Must not import: ``crawler.commands``, ``crawler.tools``. Workers return
values; only the engine feeds the frontier, and only the frontier talks to the claims.
"""
