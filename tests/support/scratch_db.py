"""Scratch PostgreSQL databases for the tests, on the server at 127.0.0.1:5432.

Each one is `cds_test_<random>`, created through the admin URL `CDS_TEST_POSTGRES_URL` (default:
the local `test` database) and dropped afterwards, so nothing is ever left in `test`. Without a
reachable server, the PostgreSQL cases are skipped with the reason "PostgreSQL not reachable",
which the pytest summary shows: they never pass silently.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import URL, make_url

from cds_service.storage.database import upgrade

POSTGRES_ADMIN_URL = os.environ.get(
    "CDS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
NOT_REACHABLE = "PostgreSQL not reachable"


def _admin() -> psycopg.Connection:
    conninfo = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql")
    return psycopg.connect(conninfo.render_as_string(hide_password=False), autocommit=True)


@functools.cache
def postgres_reachable() -> bool:
    try:
        with _admin():
            return True
    except psycopg.Error:
        return False


def require_postgres() -> None:
    """Skip the calling test, visibly, when no PostgreSQL server answers."""
    if not postgres_reachable():
        pytest.skip(NOT_REACHABLE)


def scratch_database() -> Iterator[URL]:
    """Yields the URL of a new, empty scratch database; drops it when closed."""
    require_postgres()
    name = f"cds_test_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name)
    finally:
        drop_postgres(name)


def scratch_postgres() -> Iterator[str]:
    """Yields a migrated scratch database's URL; drops the database when closed."""
    for url in scratch_database():
        text = url.render_as_string(hide_password=False)
        upgrade(text)
        yield text


def drop_postgres(name: str) -> None:
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
