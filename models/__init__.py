"""SQLAlchemy 2.0 typed models: the public database schema (DESIGN §4, docs/schema.md).

Column names are a contract with users' queries: add freely, rename or drop only with a new
Alembic migration and a CHANGELOG entry. This package never imports ``crawler``: the schema is
a layer below the code that fills it, so enum values are repeated here as plain strings and a
test checks they equal ``crawler.records``/``crawler.errors``.
"""

from models.base import Base, metadata
from models.tables import Body, Crawl, Error, Fetch, Host, Link, Url

__all__ = ["Base", "Body", "Crawl", "Error", "Fetch", "Host", "Link", "Url", "metadata"]
