"""Initial schema: crawls, hosts, urls, fetches, links, errors and the pages view.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The latest fetch of every URL, joined with its URL and host: what most users want to query.
PAGES_VIEW = """
CREATE VIEW pages AS
SELECT
    u.id AS url_id,
    u.url AS url,
    h.host AS host,
    u.state AS state,
    u.depth AS depth,
    f.id AS fetch_id,
    f.crawl_id AS crawl_id,
    f.fetched_at AS fetched_at,
    f.status_code AS status_code,
    f.final_url AS final_url,
    f.redirects AS redirects,
    f.content_type AS content_type,
    f.content_length AS content_length,
    f.elapsed_ms AS elapsed_ms,
    f.title AS title,
    f.content_hash AS content_hash,
    f.changed AS changed,
    f.not_modified AS not_modified,
    f.canonical_url AS canonical_url,
    f.noindex AS noindex,
    f.data AS data
FROM urls AS u
JOIN hosts AS h ON h.id = u.host_id
JOIN fetches AS f ON f.id = (SELECT max(f2.id) FROM fetches AS f2 WHERE f2.url_id = u.id)
"""


def upgrade() -> None:
    op.create_table(
        "crawls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("seed_file", sa.Text(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("pages_fetched", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("errors", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("bytes_fetched", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'finished', 'interrupted', 'failed')",
            name=op.f("ck_crawls_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crawls")),
    )
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=300), nullable=False),
        sa.Column("robots_txt", sa.Text(), nullable=True),
        sa.Column("robots_fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("crawl_delay", sa.Float(), nullable=True),
        sa.Column("next_allowed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hosts")),
        sa.UniqueConstraint("host", name=op.f("uq_hosts_host")),
    )
    op.create_table(
        "urls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("discovered_from", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_fetch_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fetch_interval", sa.Float(), nullable=True),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.Text(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'fetching', 'done', 'failed', 'blocked', 'gone', 'excluded')",
            name=op.f("ck_urls_state"),
        ),
        sa.ForeignKeyConstraint(
            ["discovered_from"], ["urls.id"], name=op.f("fk_urls_discovered_from_urls")
        ),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_urls_host_id_hosts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_urls")),
        sa.UniqueConstraint("url", name=op.f("uq_urls_url")),
    )
    op.create_index(
        "ix_urls_frontier",
        "urls",
        ["state", sa.literal_column("priority DESC"), "depth", "id"],
        unique=False,
    )
    op.create_index("ix_urls_host_id_state", "urls", ["host_id", "state"], unique=False)
    op.create_index("ix_urls_next_fetch_at", "urls", ["next_fetch_at"], unique=False)
    op.create_table(
        "errors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url_id", sa.Integer(), nullable=False),
        sa.Column("crawl_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('dns', 'connect', 'timeout', 'tls', 'http_status', 'too_large', "
            "'redirect', 'robots', 'content', 'parse', 'other')",
            name=op.f("ck_errors_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["crawl_id"], ["crawls.id"], name=op.f("fk_errors_crawl_id_crawls")
        ),
        sa.ForeignKeyConstraint(["url_id"], ["urls.id"], name=op.f("fk_errors_url_id_urls")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_errors")),
    )
    op.create_index("ix_errors_crawl_id_kind", "errors", ["crawl_id", "kind"], unique=False)
    op.create_index("ix_errors_url_id", "errors", ["url_id"], unique=False)
    op.create_table(
        "fetches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url_id", sa.Integer(), nullable=False),
        sa.Column("crawl_id", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("final_url", sa.Text(), nullable=False),
        sa.Column("redirects", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("content_length", sa.BigInteger(), nullable=True),
        sa.Column("elapsed_ms", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("changed", sa.Boolean(), nullable=True),
        sa.Column("not_modified", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("canonical_url", sa.Text(), nullable=True),
        sa.Column("noindex", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["crawl_id"], ["crawls.id"], name=op.f("fk_fetches_crawl_id_crawls")
        ),
        sa.ForeignKeyConstraint(["url_id"], ["urls.id"], name=op.f("fk_fetches_url_id_urls")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fetches")),
    )
    op.create_index(op.f("ix_fetches_crawl_id"), "fetches", ["crawl_id"], unique=False)
    op.create_index("ix_fetches_url_id_id", "fetches", ["url_id", "id"], unique=False)
    op.create_table(
        "links",
        sa.Column("src_url_id", sa.Integer(), nullable=False),
        sa.Column("dst_url_id", sa.Integer(), nullable=False),
        sa.Column("nofollow", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dst_url_id"], ["urls.id"], name=op.f("fk_links_dst_url_id_urls")),
        sa.ForeignKeyConstraint(["src_url_id"], ["urls.id"], name=op.f("fk_links_src_url_id_urls")),
        sa.PrimaryKeyConstraint("src_url_id", "dst_url_id", name=op.f("pk_links")),
    )
    op.create_index("ix_links_dst_url_id", "links", ["dst_url_id"], unique=False)

    op.execute(PAGES_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS pages")
    for table in ("links", "errors", "fetches", "urls", "hosts", "crawls"):
        op.drop_table(table)
