"""keyed audit chain (entry MACs, a single-row head) and API key scopes

Existing entries keep their hash links and get no MAC (they were written without a
key); the head starts at their count and newest hash, unkeyed until the next append.
Existing API keys get the ``upload`` scope only: before this release a key carried its
user's whole role, which let a camera's key read records and post reviews. Make a new
key with the scopes a reader needs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 02:30:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("scopes", sa.String(length=100), server_default="upload", nullable=False))
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=True),
        sa.Column("last_sha256", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    conn = op.get_bind()
    count, last_id = conn.execute(sa.text("SELECT count(*), max(id) FROM audit_log")).one()
    last = conn.execute(sa.text("SELECT sha256 FROM audit_log WHERE id = :id"), {"id": last_id}).scalar()
    op.bulk_insert(
        head,
        [
            {
                "id": 1,
                "entries": int(count or 0),
                "last_id": last_id,
                "last_sha256": last or GENESIS,
                "mac": None,
                "updated_at": datetime.now(UTC),
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("mac")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scopes")
