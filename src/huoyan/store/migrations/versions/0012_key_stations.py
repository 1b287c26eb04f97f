"""API keys limited to named stations: a shop-floor PC's key acts for its own stations only

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        # NULL: any station (every key made before this release).
        batch.add_column(sa.Column("stations", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("stations")
