"""Seen client tokens: the JWT `jti` replay guard shared by every worker and instance.

Revision ID: 0001_seen_tokens
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_seen_tokens"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_tokens",
        sa.Column("issuer", sa.String(512), primary_key=True),
        sa.Column("jti", sa.String(256), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_seen_tokens_expires_at", "seen_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_seen_tokens_expires_at", table_name="seen_tokens")
    op.drop_table("seen_tokens")
