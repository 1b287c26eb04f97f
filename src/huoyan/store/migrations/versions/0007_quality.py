"""quality: lots on records, frozen control limits, plant settings, alarm acknowledgement

A part may carry the lot it belongs to (from the trigger, the upload or its file name),
so NG rates can be charted per lot. Control limits frozen in Phase II are kept with a
version and who froze them, so a chart always says which limits it used. The plant's
settings (its shift calendar) live in the database, where the CLI and every server read
the same ones. An alarm is acknowledged by someone, at a time, with a comment.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("lot", sa.String(length=200), nullable=True))
    op.create_index("ix_inspections_station_lot", "inspections", ["station_id", "lot"])
    op.create_table(
        "control_limits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(length=128), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("chart", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("frozen_by", sa.String(length=100), nullable=False),
        sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.UniqueConstraint("station_id", "metric", "chart", "version", name="uq_control_limits_version"),
    )
    op.create_table(
        "plant_settings",
        sa.Column("key", sa.String(length=64), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("events", sa.Column("acknowledged_by", sa.String(length=100), nullable=True))
    op.add_column("events", sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("events", sa.Column("ack_comment", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("events", "ack_comment")
    op.drop_column("events", "acknowledged_at")
    op.drop_column("events", "acknowledged_by")
    op.drop_table("plant_settings")
    op.drop_table("control_limits")
    op.drop_index("ix_inspections_station_lot", table_name="inspections")
    op.drop_column("inspections", "lot")
