"""review chain: every review linked to the one before it, per station

Reviews are judgements that change what a part counts as (a confirmed defect, a false
alarm), so they are chained like the records: each review stored from now on carries its
station, its position in the station's review chain and ``chain_sha256`` = SHA-256(the
previous review's chain_sha256 + the digest of this review's content, which names the
inspection by its key). Reviews stored before this revision are reported as unchained.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reviews", sa.Column("station_id", sa.String(length=128), nullable=True))
    op.add_column("reviews", sa.Column("chain_pos", sa.Integer(), nullable=True))
    op.add_column("reviews", sa.Column("chain_sha256", sa.String(length=64), nullable=True))
    op.create_index("ix_reviews_station_chain", "reviews", ["station_id", "chain_pos"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_reviews_station_chain", table_name="reviews")
    op.drop_column("reviews", "chain_sha256")
    op.drop_column("reviews", "chain_pos")
    op.drop_column("reviews", "station_id")
