"""record chain: every inspection record linked to the one before it, per station

Each record stored from now on carries its position in its station's chain and
``chain_sha256`` = SHA-256(previous record's chain_sha256 + the digest of this record's
content: its columns and its regions, evidence, measurements and channels). Editing a
verdict, deleting or reordering a record breaks the chain at that record; checkpoints of
the chain's head, written to the keyed audit trail, show a truncated tail. Records stored
before this revision have no position and are reported as unchained.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("chain_pos", sa.Integer(), nullable=True))
    op.add_column("inspections", sa.Column("chain_sha256", sa.String(length=64), nullable=True))
    op.create_index("ix_inspections_station_chain", "inspections", ["station_id", "chain_pos"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_inspections_station_chain", table_name="inspections")
    op.drop_column("inspections", "chain_sha256")
    op.drop_column("inspections", "chain_pos")
