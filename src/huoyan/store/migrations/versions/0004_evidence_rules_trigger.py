"""evidence table (replacing inspections.image_sha256/heatmap_sha256), rule outcomes, trigger

Each inspection's image and heat map become rows of ``evidence`` (kind, channel,
blob sha256, media type), so a part can carry several: two camera views, a vibration
window and its spectrum. Images kept before this release are recorded with the media
type ``application/octet-stream`` (the file was stored as it came; the API sniffs it
when serving); heat maps were always PNG. Inspections also keep the decision's rule
outcomes and the trigger payload (part and PLC job ids) from now on.

The old columns are dropped in place (``ALTER TABLE … DROP COLUMN``), not by copying
the table: on SQLite a copy would drop the original table, and the foreign keys'
ON DELETE CASCADE would empty regions and reviews with it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (old column, evidence kind, media type of what the old release stored there)
MOVED = (
    ("image_sha256", "image", "application/octet-stream"),
    ("heatmap_sha256", "anomaly-map", "image/png"),
)


def upgrade() -> None:
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_evidence_inspection_id", "evidence", ["inspection_id"])
    op.create_index("ix_evidence_sha256", "evidence", ["sha256"])
    # Image before heat map for each inspection: the order records list their evidence in.
    for column, kind, media in MOVED:
        op.execute(
            sa.text(
                f"INSERT INTO evidence (inspection_id, kind, channel, sha256, media_type) "
                f"SELECT id, :kind, 'main', {column}, :media FROM inspections "
                f"WHERE {column} IS NOT NULL ORDER BY id"
            ).bindparams(kind=kind, media=media)
        )
    for column, _, _ in MOVED:
        op.drop_column("inspections", column)
    op.add_column("inspections", sa.Column("rules", sa.JSON(), nullable=True))
    op.add_column("inspections", sa.Column("trigger", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("inspections", "trigger")
    op.drop_column("inspections", "rules")
    for column, kind, _ in MOVED:
        op.add_column("inspections", sa.Column(column, sa.String(length=64), nullable=True))
        # The first evidence of each kind: what the old columns could hold.
        op.execute(
            sa.text(
                f"UPDATE inspections SET {column} = (SELECT e.sha256 FROM evidence e "
                "WHERE e.inspection_id = inspections.id AND e.kind = :kind ORDER BY e.id LIMIT 1)"
            ).bindparams(kind=kind)
        )
    op.drop_index("ix_evidence_sha256", table_name="evidence")
    op.drop_index("ix_evidence_inspection_id", table_name="evidence")
    op.drop_table("evidence")
