"""Audit trail of service calls (cards, rules, evidence references) and clinicians' feedback.

Revision ID: 0002_audit_feedback
Revises: 0001_seen_tokens
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_audit_feedback"
down_revision = "0001_seen_tokens"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "service_calls",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("hook", sa.String(64), nullable=True),
        sa.Column("hook_instance", sa.String(256), nullable=True),
        sa.Column("client_issuer", sa.String(512), nullable=True),
        sa.Column("client_tenant", sa.String(256), nullable=True),
        sa.Column("client_jti", sa.String(256), nullable=True),
        sa.Column("patient_key", sa.String(64), nullable=True),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("knowledge_version", sa.String(64), nullable=False),
    )
    op.create_index("ix_service_calls_recorded_at", "service_calls", ["recorded_at"])
    op.create_index("ix_service_calls_patient_key", "service_calls", ["patient_key"])
    op.create_index(
        "ix_service_calls_service_recorded", "service_calls", ["service_id", "recorded_at"]
    )
    op.create_table(
        "issued_cards",
        sa.Column("uuid", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(36), sa.ForeignKey("service_calls.id"), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("theme", sa.String(128), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
    )
    op.create_index("ix_issued_cards_call_id", "issued_cards", ["call_id"])
    op.create_table(
        "fired_rules",
        sa.Column("call_id", sa.String(36), sa.ForeignKey("service_calls.id"), primary_key=True),
        sa.Column("rule_id", sa.String(128), primary_key=True),
        sa.Column("theme", sa.String(128), nullable=False),
        sa.Column("card_uuid", sa.String(64), sa.ForeignKey("issued_cards.uuid"), nullable=True),
    )
    op.create_index("ix_fired_rules_card_uuid", "fired_rules", ["card_uuid"])
    op.create_table(
        "evidence_refs",
        sa.Column("call_id", sa.String(36), sa.ForeignKey("service_calls.id"), primary_key=True),
        sa.Column("rule_id", sa.String(128), primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("reference", sa.String(512), primary_key=True),
        sa.Column("card_uuid", sa.String(64), sa.ForeignKey("issued_cards.uuid"), nullable=True),
    )
    op.create_index("ix_evidence_refs_card_uuid", "evidence_refs", ["card_uuid"])
    op.create_table(
        "feedback",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("card_uuid", sa.String(256), nullable=False),
        sa.Column("card_matched", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=True),
        sa.Column("override_system", sa.String(512), nullable=True),
        sa.Column("override_code", sa.String(256), nullable=True),
        sa.Column("override_display", sa.String(512), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_issuer", sa.String(512), nullable=True),
        sa.Column("client_tenant", sa.String(256), nullable=True),
        sa.Column("client_jti", sa.String(256), nullable=True),
    )
    op.create_index("ix_feedback_card_uuid", "feedback", ["card_uuid"])


def downgrade() -> None:
    op.drop_index("ix_feedback_card_uuid", table_name="feedback")
    op.drop_table("feedback")
    op.drop_index("ix_evidence_refs_card_uuid", table_name="evidence_refs")
    op.drop_table("evidence_refs")
    op.drop_index("ix_fired_rules_card_uuid", table_name="fired_rules")
    op.drop_table("fired_rules")
    op.drop_index("ix_issued_cards_call_id", table_name="issued_cards")
    op.drop_table("issued_cards")
    op.drop_index("ix_service_calls_service_recorded", table_name="service_calls")
    op.drop_index("ix_service_calls_patient_key", table_name="service_calls")
    op.drop_index("ix_service_calls_recorded_at", table_name="service_calls")
    op.drop_table("service_calls")
