"""sensor channels: measurements, diagnoses and per-channel verdicts

A sensor window is a record like a part: its features (RMS, kurtosis, velocity ...)
are measurements that trends and control charts aggregate in SQL, and its diagnosis
(the fault family it shows) is a column. A station judging several channels (two
camera views, a camera and a sensor) keeps each channel's own verdict and model, and each region
says which camera it was found in (``main`` for the records before).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 08:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("diagnosis", sa.String(length=64), nullable=True))
    op.add_column("regions", sa.Column("channel", sa.String(length=100), server_default="main", nullable=False))
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("inspection_id", sa.Integer(), sa.ForeignKey("inspections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
    )
    op.create_index("ix_measurements_inspection_id", "measurements", ["inspection_id"])
    op.create_index("ix_measurements_name_inspection", "measurements", ["name", "inspection_id"])
    op.create_table(
        "channel_results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("inspection_id", sa.Integer(), sa.ForeignKey("inspections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("verdict", sa.String(length=8), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("normalised_score", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("diagnosis", sa.String(length=64), nullable=True),
        sa.Column("model_sha256", sa.String(length=64), nullable=True),
    )
    op.create_index("ix_channel_results_inspection_id", "channel_results", ["inspection_id"])


def downgrade() -> None:
    op.drop_index("ix_channel_results_inspection_id", table_name="channel_results")
    op.drop_table("channel_results")
    op.drop_index("ix_measurements_name_inspection", table_name="measurements")
    op.drop_index("ix_measurements_inspection_id", table_name="measurements")
    op.drop_table("measurements")
    op.drop_column("regions", "channel")
    op.drop_column("inspections", "diagnosis")
