"""The suggestions issued with each card, so that accepted feedback can be matched and counted.

Revision ID: 0003_issued_suggestions
Revises: 0002_audit_feedback
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_issued_suggestions"
down_revision = "0002_audit_feedback"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issued_suggestions",
        sa.Column("uuid", sa.String(64), primary_key=True),
        sa.Column("card_uuid", sa.String(64), sa.ForeignKey("issued_cards.uuid"), nullable=False),
        sa.Column("suggestion_id", sa.String(128), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
    )
    op.create_index("ix_issued_suggestions_card_uuid", "issued_suggestions", ["card_uuid"])


def downgrade() -> None:
    op.drop_index("ix_issued_suggestions_card_uuid", table_name="issued_suggestions")
    op.drop_table("issued_suggestions")
