"""ix_urls_frontier in hand-out order again: (state, priority DESC, depth, id).

SQLite's batch mode rebuilt ``urls`` in 0002 and 0003 and re-created the index from reflection,
which lost ``DESC``: every claim then sorted all queued URLs instead of walking the index.
PostgreSQL kept the index; re-creating it there too leaves one definition everywhere.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CREATE = "CREATE INDEX ix_urls_frontier ON urls (state, priority DESC, depth, id)"


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_urls_frontier")
    op.execute(CREATE)


def downgrade() -> None:
    pass  # the same index serves revision 0004
