"""Ratings and active time may be unset; study options.

A reader who never touches a rating leaves it unset (NULL), never a default taken for an
answer; headless reads have no active time. Studies gain an ``options`` JSON object
(``require_ratings``, ``show_ga``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reads") as batch:
        for column in ("confidence", "anomaly_prob", "active_ms"):
            batch.alter_column(column, existing_type=sa.Integer(), nullable=True)
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("options", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("options")
    # unset values cannot be kept in NOT NULL columns: they become 0 on the way down
    op.execute("UPDATE reads SET confidence = 0 WHERE confidence IS NULL")
    op.execute("UPDATE reads SET anomaly_prob = 0 WHERE anomaly_prob IS NULL")
    op.execute("UPDATE reads SET active_ms = 0 WHERE active_ms IS NULL")
    with op.batch_alter_table("reads") as batch:
        for column in ("confidence", "anomaly_prob", "active_ms"):
            batch.alter_column(column, existing_type=sa.Integer(), nullable=False)
