"""quality: lots on records, frozen control limits, plant settings, alarm acknowledgement

A part may carry the lot it belongs to (from the trigger, the upload or its file name),
so NG rates can be charted per lot. Control limits frozen in Phase II are kept with a
version and who froze them, so a chart always says which limits it used. The plant's
settings (its shift calendar) live in the database, where the CLI and every server read
the same ones. An alarm is acknowledged by someone, at a time, with a comment.

``inspection_rollup`` keeps, per station, 15-minute bucket of arrival and lot, the verdict
counts and the sums of OK parts' scores, maintained by a trigger on every insert (whoever
inserts: the station, a spool flush, a bulk load), so that a month of control charts reads
a few thousand rows instead of a million. Existing records are rolled up here once.

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

BUCKET_S = 900  # huoyan.core.plant.BUCKET_S when this migration was written: migrations stay as written
ROLLUP_COUNTS = ("judged", "ng", "errors", "score_n", "norm_n")
ROLLUP_VALUES = ("score", "norm")  # an OK part's raw score and its score / threshold


def _bucket(dialect: str, column: str) -> str:
    if dialect == "postgresql":
        return f"CAST(floor(extract(epoch from {column}) / {BUCKET_S}) AS BIGINT)"
    return f"(CAST(strftime('%s', {column}) AS INTEGER) / {BUCKET_S})"


def _row_values(dialect: str, row: str) -> str:
    """One inspection's contribution to its rollup row."""
    ok = f"{row}.verdict = 'OK'"
    parts = [
        f"{row}.station_id",
        _bucket(dialect, f"{row}.arrived_at"),
        f"coalesce({row}.lot, '')",
        f"CASE WHEN {row}.verdict IN ('OK', 'NG') THEN 1 ELSE 0 END",
        f"CASE WHEN {row}.verdict = 'NG' THEN 1 ELSE 0 END",
        f"CASE WHEN {row}.verdict = 'ERROR' THEN 1 ELSE 0 END",
    ]
    for column in ("score", "normalised_score"):
        parts.append(f"CASE WHEN {ok} AND {row}.{column} IS NOT NULL THEN 1 ELSE 0 END")
    for column in ("score", "normalised_score"):
        value = f"CASE WHEN {ok} THEN {row}.{column} END"
        parts += [f"coalesce({value}, 0)", f"coalesce({value} * {value}, 0)", value, value]
    return ", ".join(parts)


COLUMNS = (
    "station_id, bucket, lot, judged, ng, errors, score_n, norm_n, "
    "score_sum, score_squares, score_min, score_max, norm_sum, norm_squares, norm_min, norm_max"
)


def _merge(dialect: str) -> str:
    t = "inspection_rollup"
    sets = [f"{c} = {t}.{c} + excluded.{c}" for c in (*ROLLUP_COUNTS, "score_sum", "score_squares")]
    sets += [f"{c} = {t}.{c} + excluded.{c}" for c in ("norm_sum", "norm_squares")]
    for prefix in ROLLUP_VALUES:
        low, high = f"{prefix}_min", f"{prefix}_max"
        if dialect == "postgresql":  # LEAST and GREATEST pass over NULLs
            sets += [f"{low} = LEAST({t}.{low}, excluded.{low})", f"{high} = GREATEST({t}.{high}, excluded.{high})"]
        else:  # SQLite's min() and max() of several arguments are NULL if one is
            sets += [
                f"{low} = coalesce(min({t}.{low}, excluded.{low}), {t}.{low}, excluded.{low})",
                f"{high} = coalesce(max({t}.{high}, excluded.{high}), {t}.{high}, excluded.{high})",
            ]
    return "ON CONFLICT (station_id, bucket, lot) DO UPDATE SET " + ", ".join(sets)


def rollup_trigger(dialect: str) -> list[str]:
    insert = f"INSERT INTO inspection_rollup ({COLUMNS}) VALUES ({_row_values(dialect, 'NEW')}) {_merge(dialect)}"
    if dialect == "postgresql":
        return [
            "CREATE FUNCTION inspections_rollup() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {insert}; RETURN NEW; END $$",
            "CREATE TRIGGER inspections_rollup AFTER INSERT ON inspections "
            "FOR EACH ROW EXECUTE FUNCTION inspections_rollup()",
        ]
    return [f"CREATE TRIGGER inspections_rollup AFTER INSERT ON inspections BEGIN {insert}; END"]


def backfill(dialect: str) -> str:
    """Roll up the records stored before this migration, one statement."""
    names = [c.strip() for c in COLUMNS.split(",")]
    keys, rest = names[:3], names[3:]
    aggregate = []
    for name in rest:
        fn = "min" if name.endswith("_min") else "max" if name.endswith("_max") else "sum"
        aggregate.append(f"{fn}({name})")
    aliased = ", ".join(f"{v} AS {n}" for v, n in zip(_split(_row_values(dialect, "i")), names, strict=True))
    return (
        f"INSERT INTO inspection_rollup ({COLUMNS}) SELECT {', '.join(keys)}, {', '.join(aggregate)} "
        f"FROM (SELECT {aliased} FROM inspections i) AS r GROUP BY {', '.join(keys)}"
    )


def _split(values: str) -> list[str]:
    """The comma-separated expressions of ``_row_values`` (commas inside parentheses kept)."""
    out, depth, current = [], 0, ""
    for ch in values:
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        current += ch
    out.append(current.strip())
    return out


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
    op.create_table(
        "inspection_rollup",
        sa.Column("station_id", sa.String(length=128), primary_key=True),
        sa.Column("bucket", sa.BigInteger(), primary_key=True),
        sa.Column("lot", sa.String(length=200), primary_key=True),
        *[sa.Column(name, sa.Integer(), nullable=False) for name in ROLLUP_COUNTS],
        *[
            sa.Column(f"{prefix}_{part}", sa.Float(), nullable=part in ("min", "max"))
            for prefix in ROLLUP_VALUES
            for part in ("sum", "squares", "min", "max")
        ],
    )
    dialect = op.get_bind().dialect.name
    for statement in rollup_trigger(dialect):
        op.execute(statement)
    op.execute(backfill(dialect))
    op.add_column("events", sa.Column("acknowledged_by", sa.String(length=100), nullable=True))
    op.add_column("events", sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("events", sa.Column("ack_comment", sa.Text(), nullable=True))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS inspections_rollup ON inspections")
        op.execute("DROP FUNCTION IF EXISTS inspections_rollup()")
    else:
        op.execute("DROP TRIGGER IF EXISTS inspections_rollup")
    op.drop_table("inspection_rollup")
    op.drop_column("events", "ack_comment")
    op.drop_column("events", "acknowledged_at")
    op.drop_column("events", "acknowledged_by")
    op.drop_table("plant_settings")
    op.drop_table("control_limits")
    op.drop_index("ix_inspections_station_lot", table_name="inspections")
    op.drop_column("inspections", "lot")
