"""urls.failures and urls.not_found for the recrawl schedule; crawls.command.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PAGES_VIEW = importlib.import_module("migrations.versions.0001_initial").PAGES_VIEW


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS pages")
    with op.batch_alter_table("urls", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failures", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("not_found", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    with op.batch_alter_table("crawls", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "command", sa.String(length=16), server_default=sa.text("'crawl'"), nullable=False
            )
        )
    op.execute(PAGES_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS pages")
    with op.batch_alter_table("crawls", schema=None) as batch_op:
        batch_op.drop_column("command")
    with op.batch_alter_table("urls", schema=None) as batch_op:
        batch_op.drop_column("not_found")
        batch_op.drop_column("failures")
    op.execute(PAGES_VIEW)
