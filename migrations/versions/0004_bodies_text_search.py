"""bodies (kept HTML), fetches.text, full-text search (SQLite FTS5), pages.text.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_VIEW = importlib.import_module("migrations.versions.0001_initial").PAGES_VIEW
# The view gains the page text, last, so queries written against the old columns still work.
PAGES_VIEW = OLD_VIEW.replace(
    "    f.data AS data\nFROM", "    f.data AS data,\n    f.text AS text\nFROM"
)

# Full-text search over the title and text of every fetch, with the fetch id as rowid. An
# external-content table: the text lives once, in fetches; the writer keeps the index in step.
FTS = (
    "CREATE VIRTUAL TABLE fetches_fts USING fts5("
    "title, text, content='fetches', content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
)


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS pages")
    with op.batch_alter_table("fetches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("text", sa.Text(), nullable=True))
    op.create_table(
        "bodies",
        sa.Column("fetch_id", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.String(length=16), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["fetch_id"], ["fetches.id"], name=op.f("fk_bodies_fetch_id_fetches")
        ),
        sa.PrimaryKeyConstraint("fetch_id", name=op.f("pk_bodies")),
    )
    op.execute(PAGES_VIEW)
    if op.get_bind().dialect.name == "sqlite":
        op.execute(FTS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS fetches_fts")
    op.execute("DROP VIEW IF EXISTS pages")
    op.drop_table("bodies")
    with op.batch_alter_table("fetches", schema=None) as batch_op:
        batch_op.drop_column("text")
    op.execute(OLD_VIEW)
