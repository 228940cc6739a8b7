"""Initial reader-study schema: readers, studies, cases, enrolments, sessions, reads.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "readers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("years_experience", sa.Float(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_readers"),
        sa.UniqueConstraint("pseudonym", name="uq_readers_pseudonym"),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("design", sa.String(16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("confidence_scale", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("washout_days", sa.Float(), nullable=False),
        sa.Column("model_card", sa.JSON(), nullable=True),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_studies"),
        sa.UniqueConstraint("name", name="uq_studies_name"),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("frame", sa.Integer(), nullable=False),
        sa.Column("reference_label", sa.String(64), nullable=False),
        sa.Column("reference_source", sa.String(128), nullable=False),
        sa.Column("ga_weeks", sa.Float(), nullable=True),
        sa.Column("center", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name="fk_cases_study_id_studies", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_cases"),
        sa.UniqueConstraint("study_id", "pseudonym", name="uq_cases_study_pseudonym"),
    )
    op.create_index("ix_cases_study_id", "cases", ["study_id"])
    op.create_table(
        "enrolments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("order_seed", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name="fk_enrolments_study_id_studies", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["reader_id"],
            ["readers.id"],
            name="fk_enrolments_reader_id_readers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_enrolments"),
        sa.UniqueConstraint("study_id", "reader_id", name="uq_enrolments_study_reader"),
    )
    op.create_table(
        "reading_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.Integer(), nullable=False),
        sa.Column("condition", sa.String(16), nullable=False),
        sa.Column("order_seed", sa.Integer(), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("ended_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name="fk_reading_sessions_study_id_studies",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reader_id"],
            ["readers.id"],
            name="fk_reading_sessions_reader_id_readers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_reading_sessions"),
        sa.UniqueConstraint("uid", name="uq_reading_sessions_uid"),
        sa.UniqueConstraint("study_id", "reader_id", "arm", name="uq_sessions_study_reader_arm"),
    )
    op.create_table(
        "reads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("condition", sa.String(16), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=False),
        sa.Column("anomaly_prob", sa.Integer(), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("submitted_at", TZ, nullable=False),
        sa.Column("active_ms", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("ai_model_sha", sa.String(64), nullable=True),
        sa.Column("ai_probs", sa.JSON(), nullable=True),
        sa.Column("ai_heatmap_visible", sa.Boolean(), nullable=True),
        sa.Column("changed_from_unaided", sa.Boolean(), nullable=True),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["reading_sessions.id"],
            name="fk_reads_session_id_reading_sessions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name="fk_reads_study_id_studies", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["reader_id"], ["readers.id"], name="fk_reads_reader_id_readers", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name="fk_reads_case_id_cases", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"],
            ["reads.id"],
            name="fk_reads_supersedes_id_reads",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_reads"),
        sa.UniqueConstraint("uid", name="uq_reads_uid"),
    )
    op.create_index("ix_reads_session_id", "reads", ["session_id"])
    op.create_index(
        "ix_reads_reader_case_condition", "reads", ["reader_id", "case_id", "condition"]
    )


def downgrade() -> None:
    for table in ("reads", "reading_sessions", "enrolments", "cases", "studies", "readers"):
        op.drop_table(table)
