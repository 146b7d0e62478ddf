"""Migrations on both databases: from empty to head, from the previous revision, and back."""

from __future__ import annotations

import datetime as dt

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select

from cds_service.storage.database import (
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    schema_problem,
    upgrade,
)
from cds_service.storage.models import Base, SeenToken

HEAD = "0003_issued_suggestions"
MEMORY_TABLES = {
    "service_calls",
    "issued_cards",
    "fired_rules",
    "evidence_refs",
    "feedback",
    "issued_suggestions",
}


def tables(url: str) -> set[str]:
    engine = make_engine(url, create=True)  # an empty database may not exist yet
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_head_is_the_memory_revision(database):
    assert head_revision(database.url) == HEAD


def test_from_empty_to_head(database):
    assert tables(database.url) == set()
    upgrade(database.url)
    assert MEMORY_TABLES | {"seen_tokens", "alembic_version"} <= tables(database.url)
    engine = make_engine(database.url)
    try:
        assert current_revision(engine) == HEAD
        assert schema_problem(engine, database.url) is None
    finally:
        engine.dispose()


def test_from_the_previous_revision_keeps_its_data(database):
    upgrade(database.url, "0001_seen_tokens")
    assert tables(database.url).isdisjoint(MEMORY_TABLES)
    expires = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    engine = make_engine(database.url)
    try:
        assert "0001_seen_tokens" in (schema_problem(engine, database.url) or "")
        with engine.begin() as connection:
            token = {"issuer": "https://ehr.example", "jti": "j1", "expires_at": expires}
            connection.execute(insert(SeenToken), [token])
        upgrade(database.url)
        assert current_revision(engine) == HEAD
        with engine.connect() as connection:
            kept = connection.execute(select(SeenToken.issuer, SeenToken.jti)).all()
        assert kept == [("https://ehr.example", "j1")]
    finally:
        engine.dispose()
    assert tables(database.url) >= MEMORY_TABLES


def test_downgrade_to_the_previous_revision_and_up_again(database):
    upgrade(database.url)
    downgrade(database.url, "0001_seen_tokens")
    assert tables(database.url).isdisjoint(MEMORY_TABLES)
    assert "seen_tokens" in tables(database.url)
    upgrade(database.url)
    assert tables(database.url) >= MEMORY_TABLES


def test_the_models_match_the_migrations(database):
    """The SQLAlchemy models and the migrated schema agree (nothing for autogenerate to add)."""
    upgrade(database.url)
    engine = make_engine(database.url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_0003_adds_the_issued_suggestions_and_goes_back_to_0002(database):
    upgrade(database.url, "0002_audit_feedback")
    assert "issued_suggestions" not in tables(database.url)
    assert "issued_cards" in tables(database.url)
    upgrade(database.url)
    assert "issued_suggestions" in tables(database.url)
    downgrade(database.url, "0002_audit_feedback")
    assert "issued_suggestions" not in tables(database.url)
    assert {"issued_cards", "feedback"} <= tables(database.url)
