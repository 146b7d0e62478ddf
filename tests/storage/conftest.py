"""The memory's tests run on both databases: SQLite always, PostgreSQL where one answers.

Each test gets its own database: a SQLite file in its temporary folder, or a scratch PostgreSQL
database (see `tests/support/scratch_db.py`; skipped, visibly, without a reachable server).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, func, select
from support.audit_key import TEST_AUDIT_KEY
from support.builders import FIXED_NOW
from support.scratch_db import scratch_database
from support.tcp_proxy import TcpProxy

from cds_service import Settings, create_app
from cds_service.storage.database import upgrade
from cds_service.web.state import EXTENSION_KEY, ServiceState


@dataclass
class TestDatabase:
    kind: str  # "sqlite" or "postgresql"
    url: str
    #: the real server behind a proxy (PostgreSQL) or the SQLite file
    direct_url: str
    proxy: TcpProxy | None = None
    folder: Path | None = None

    def engine(self) -> Engine:
        return create_engine(self.direct_url)

    def count(self, table: Any, *where: Any) -> int:
        engine = self.engine()
        try:
            with engine.connect() as connection:
                return connection.execute(
                    select(func.count()).select_from(table).where(*where)
                ).scalar_one()
        finally:
            engine.dispose()

    def rows(self, query: Any) -> list[Any]:
        engine = self.engine()
        try:
            with engine.connect() as connection:
                return list(connection.execute(query))
        finally:
            engine.dispose()

    def disappear(self) -> None:
        """The database goes away: the proxy is cut, or the SQLite folder is moved away."""
        if self.proxy is not None:
            self.proxy.cut()
        else:
            assert self.folder is not None
            self.folder.rename(self.folder.with_name(self.folder.name + "-gone"))

    def come_back(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
        else:
            assert self.folder is not None
            self.folder.with_name(self.folder.name + "-gone").rename(self.folder)


def _scratch_postgres() -> Iterator[TestDatabase]:
    """A scratch database reached through a TCP proxy the test can cut."""
    for direct in scratch_database():
        proxy = TcpProxy((direct.host or "127.0.0.1", direct.port or 5432)).start()
        proxied = direct.set(host="127.0.0.1", port=proxy.port)
        try:
            yield TestDatabase(
                "postgresql",
                proxied.render_as_string(hide_password=False),
                direct.render_as_string(hide_password=False),
                proxy=proxy,
            )
        finally:
            proxy.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """An empty database of each kind."""
    if request.param == "sqlite":
        folder = tmp_path / "db"
        folder.mkdir()
        url = f"sqlite:///{folder / 'cds.sqlite3'}"
        yield TestDatabase("sqlite", url, url, folder=folder)
        return
    yield from _scratch_postgres()


@pytest.fixture
def migrated(database: TestDatabase) -> TestDatabase:
    """A database of each kind at the current schema."""
    upgrade(database.url)
    return database


AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(migrated: TestDatabase, tmp_path: Path) -> Iterator[AppFactory]:
    """Build the service on the migrated database (development mode, fixed clock)."""
    apps: list[Flask] = []

    def _make(**settings: Any) -> Flask:
        config = Settings(
            instance_path=tmp_path / "instance",
            database_url=migrated.url,
            allow_unauthenticated=True,
            audit_key=TEST_AUDIT_KEY,
            **settings,
        )
        app = create_app(config, clock=lambda: FIXED_NOW)
        apps.append(app)
        return app

    yield _make
    for app in apps:
        service_state(app).audit.writer.close(timeout=5)
        service_state(app).engine.dispose()


def service_state(app: Flask) -> ServiceState:
    return app.extensions[EXTENSION_KEY]


def flush(app: Flask, timeout: float = 10.0) -> None:
    """Wait until the app's audit writer has written every queued record."""
    assert service_state(app).audit.writer.flush(timeout), service_state(app).audit.writer.stats()
