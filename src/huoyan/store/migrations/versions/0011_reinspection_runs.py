"""re-inspection runs: archived images scored again with a given model (``huoyan batch``),
each result beside the original verdict so the dashboard can show what would change

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reinspection_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=200), nullable=False, unique=True),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=500), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("recipe_id", sa.String(length=200), nullable=False),
        sa.Column("recipe_version", sa.String(length=100), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "reinspection_results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("reinspection_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("item", sa.String(length=400), nullable=False),
        sa.Column("inspection_id", sa.Integer(), sa.ForeignKey("inspections.id", ondelete="SET NULL"), nullable=True),
        sa.Column("source_name", sa.String(length=1000), nullable=False),
        sa.Column("verdict", sa.String(length=8), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("normalised_score", sa.Float(), nullable=True),
        sa.Column("regions", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("original_verdict", sa.String(length=8), nullable=True),
        sa.Column("original_score", sa.Float(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("run_id", "item", name="uq_reinspection_item"),
    )
    op.create_index(
        "ix_reinspection_results_run_verdicts", "reinspection_results", ["run_id", "original_verdict", "verdict"]
    )


def downgrade() -> None:
    op.drop_index("ix_reinspection_results_run_verdicts", table_name="reinspection_results")
    op.drop_table("reinspection_results")
    op.drop_table("reinspection_runs")
