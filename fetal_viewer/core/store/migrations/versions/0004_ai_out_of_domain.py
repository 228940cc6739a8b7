"""Reads record whether the AI output shown was outside the model's domain.

The model's domain guard flags frames outside what it was trained on; the aided reveal then
withholds the output until the reader asks for it. ``reads.ai_out_of_domain`` keeps whether
that was so (NULL: no AI shown, or a model without a guard), so the analysis can split
aided reads by it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reads") as batch:
        batch.add_column(sa.Column("ai_out_of_domain", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reads") as batch:
        batch.drop_column("ai_out_of_domain")
