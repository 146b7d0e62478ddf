"""Every table of the service, migrated by Alembic (`migrations/versions/`).

`SeenToken` holds the client JWT ids already accepted (revision `0001_seen_tokens`); the others
are the audit trail and feedback (`0002_audit_feedback`, `0003_issued_suggestions`).

A service call has the cards it issued; each card has the rules that fired for its theme, and each
rule its evidence references. Feedback refers to a card by the uuid the client sends, which need
not be one we issued (`card_matched` says whether it is).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class SeenToken(Base):
    """A client JWT `jti` already accepted: a second use within its lifetime is a replay."""

    __tablename__ = "seen_tokens"

    issuer: Mapped[str] = mapped_column(String(512), primary_key=True)
    jti: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


#: An auto-incrementing 64-bit key (SQLite only auto-increments INTEGER PRIMARY KEY).
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class ServiceCall(Base):
    """One `POST /cds-services/{id}`: who called, about whom (pseudonymously), the outcome."""

    __tablename__ = "service_calls"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    service_id: Mapped[str] = mapped_column(String(128))
    hook: Mapped[str | None] = mapped_column(String(64))
    hook_instance: Mapped[str | None] = mapped_column(String(256))
    client_issuer: Mapped[str | None] = mapped_column(String(512))
    client_tenant: Mapped[str | None] = mapped_column(String(256))
    client_jti: Mapped[str | None] = mapped_column(String(256))
    patient_key: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[int] = mapped_column(SmallInteger)
    latency_ms: Mapped[float] = mapped_column(Float)
    knowledge_version: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_service_calls_service_recorded", "service_id", "recorded_at"),)


class IssuedCard(Base):
    """A card the service sent, by the uuid the client will quote in feedback."""

    __tablename__ = "issued_cards"

    uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("service_calls.id"), index=True)
    position: Mapped[int] = mapped_column(SmallInteger)
    theme: Mapped[str] = mapped_column(String(128))
    indicator: Mapped[str] = mapped_column(String(16))


class IssuedSuggestion(Base):
    """A suggestion a card carried (Alembic revision `0003_issued_suggestions`): its uuid, as
    accepted feedback quotes it, its id in knowledge/orders.yaml and the rules that offered it."""

    __tablename__ = "issued_suggestions"

    uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    card_uuid: Mapped[str] = mapped_column(ForeignKey("issued_cards.uuid"), index=True)
    suggestion_id: Mapped[str] = mapped_column(String(128))
    rules: Mapped[list[Any]] = mapped_column(JSON())


class FiredRule(Base):
    """A rule that fired in a call; `card_uuid` is its theme's card (None if the card was cut)."""

    __tablename__ = "fired_rules"

    call_id: Mapped[str] = mapped_column(ForeignKey("service_calls.id"), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    theme: Mapped[str] = mapped_column(String(128))
    card_uuid: Mapped[str | None] = mapped_column(ForeignKey("issued_cards.uuid"), index=True)


class EvidenceRef(Base):
    """A FHIR resource a rule rested on: `evidence` (the trigger), `context` (a requirement met)
    or `older` (a not-new red flag shown as one line on the first card)."""

    __tablename__ = "evidence_refs"

    call_id: Mapped[str] = mapped_column(ForeignKey("service_calls.id"), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    reference: Mapped[str] = mapped_column(String(512), primary_key=True)
    card_uuid: Mapped[str | None] = mapped_column(ForeignKey("issued_cards.uuid"), index=True)


class Feedback(Base):
    """One feedback item, stored once: `fingerprint` is the idempotency key."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    service_id: Mapped[str] = mapped_column(String(128))
    card_uuid: Mapped[str] = mapped_column(String(256), index=True)
    card_matched: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(16))
    accepted_suggestions: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    override_system: Mapped[str | None] = mapped_column(String(512))
    override_code: Mapped[str | None] = mapped_column(String(256))
    override_display: Mapped[str | None] = mapped_column(String(512))
    user_comment: Mapped[str | None] = mapped_column(Text)
    outcome_timestamp: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    client_issuer: Mapped[str | None] = mapped_column(String(512))
    client_tenant: Mapped[str | None] = mapped_column(String(256))
    client_jti: Mapped[str | None] = mapped_column(String(256))
