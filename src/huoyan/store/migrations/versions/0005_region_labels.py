"""region labels and confidences; reviews that correct a region's label

Detectors that name their defects (template comparison) give each region a label
(open, short, ...) and the classifier's confidence in it. A review may correct the
labels of an inspection's regions, by their position in the record: the labelled
boxes a retrained classifier learns from.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("regions", sa.Column("label", sa.String(length=64), nullable=True))
    op.add_column("regions", sa.Column("confidence", sa.Float(), nullable=True))
    op.add_column("reviews", sa.Column("regions", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("reviews", "regions")
    op.drop_column("regions", "confidence")
    op.drop_column("regions", "label")
