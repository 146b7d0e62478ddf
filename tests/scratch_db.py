"""Scratch PostgreSQL databases for the tests, on the server at 127.0.0.1:5432.

Each one is `cds_test_<random>`, created from the admin URL `CDS_TEST_POSTGRES_URL` (default:
the local `test` database), migrated to the current schema, and dropped afterwards, so nothing
is ever left in `test`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
from sqlalchemy.engine import make_url

from cds_service.db import upgrade

POSTGRES_ADMIN_URL = os.environ.get(
    "CDS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _admin() -> psycopg.Connection:
    conninfo = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql")
    return psycopg.connect(conninfo.render_as_string(hide_password=False), autocommit=True)


def scratch_postgres() -> Iterator[str]:
    """Yields a migrated scratch database's URL; drops the database when closed."""
    name = f"cds_test_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False)
        upgrade(url)
        yield url
    finally:
        drop_postgres(name)


def drop_postgres(name: str) -> None:
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
