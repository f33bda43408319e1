"""Everything that talks SQL: the database, the single writer, and the statements it runs.

``db`` (engines, migrations), ``writer`` (the one thread that writes, batched), ``lock`` (one
crawl per SQLite file), ``rawsql`` (statements compiled once), ``common`` (tables, helpers),
``hosts``, ``discovered`` (URL insert and dedup), ``claims`` (local and shared strategies behind
one interface, with ``give_back``), ``results`` (storing a batch), ``runs`` (crawl rows and the
recrawl queries).

Must not import: ``crawler.fetch``, ``crawler.parse``, ``crawler.run``, ``crawler.commands``,
``crawler.tools``. It takes values (``crawler.records``) and gives values back.
"""
