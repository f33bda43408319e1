"""urls.kind (page or sitemap), urls.lastmod and urls.changefreq from sitemaps.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The view reads urls: SQLite's batch mode rebuilds the table, so the view goes and comes back.
PAGES_VIEW = importlib.import_module("migrations.versions.0001_initial").PAGES_VIEW


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS pages")
    with op.batch_alter_table("urls", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kind", sa.String(length=16), server_default=sa.text("'page'"), nullable=False
            )
        )
        batch_op.add_column(sa.Column("lastmod", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("changefreq", sa.String(length=16), nullable=True))
        batch_op.create_check_constraint("kind", "kind IN ('page', 'sitemap')")
    op.execute(PAGES_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS pages")
    with op.batch_alter_table("urls", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_urls_kind"), type_="check")
        batch_op.drop_column("changefreq")
        batch_op.drop_column("lastmod")
        batch_op.drop_column("kind")
    op.execute(PAGES_VIEW)
