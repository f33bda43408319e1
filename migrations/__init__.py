"""Alembic environment and revisions, shipped inside the package so an installed crawler can
migrate a database with no source tree and no ``alembic.ini`` (see ``crawler.store.db``)."""
