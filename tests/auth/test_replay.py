"""The `jti` replay guard on the real databases: SQLite and PostgreSQL (127.0.0.1:5432).

Each PostgreSQL test gets a scratch database (`cds_test_<random>`, created from the admin URL
`CDS_TEST_POSTGRES_URL`, default the local `test` database) and drops it afterwards, so nothing
is left in `test`. PostgreSQL is part of this suite: without it these cases fail.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from support.scratch_db import drop_postgres, scratch_postgres

from cds_service.auth.replay import ReplayGuard
from cds_service.storage.database import DatabaseUnavailable, make_engine, upgrade
from cds_service.storage.models import SeenToken

ISSUER = "https://ehr.example.org"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
        upgrade(url)
        yield url
    else:
        yield from scratch_postgres()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def guard(database_url: str) -> Iterator[tuple[ReplayGuard, Clock]]:
    engine = make_engine(database_url)
    clock = Clock()
    try:
        yield ReplayGuard(engine, purge_interval_s=60, clock=clock), clock
    finally:
        engine.dispose()


def test_a_jti_is_accepted_once_per_issuer(guard):
    replay, clock = guard
    until = clock.now + 300
    assert replay.first_use(ISSUER, "jti-1", until) is True
    assert replay.first_use(ISSUER, "jti-1", until) is False
    assert replay.first_use(ISSUER, "jti-1", until + 500) is False
    assert replay.first_use("https://other-ehr.example.org", "jti-1", until) is True
    assert replay.first_use(ISSUER, "jti-2", until) is True


def test_an_expired_row_may_be_taken_over(guard):
    replay, clock = guard
    assert replay.first_use(ISSUER, "jti-1", clock.now + 10)
    clock.now += 9
    assert not replay.first_use(ISSUER, "jti-1", clock.now + 300)
    clock.now += 2  # the first token has expired: its jti can no longer be replayed with it
    assert replay.first_use(ISSUER, "jti-1", clock.now + 300)
    assert not replay.first_use(ISSUER, "jti-1", clock.now + 300)


def test_expired_rows_are_purged_periodically(guard, database_url):
    replay, clock = guard
    for index in range(5):
        assert replay.first_use(ISSUER, f"old-{index}", clock.now + 10)
    clock.now += 30
    assert replay.first_use(ISSUER, "recent", clock.now + 300)  # not yet due: nothing purged
    assert _count(database_url) == 6
    clock.now += 61
    assert replay.first_use(ISSUER, "newest", clock.now + 300)  # due: expired rows go
    assert _count(database_url) == 2


def _count(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(SeenToken)).scalar_one()
    finally:
        engine.dispose()


def test_concurrent_claims_of_one_jti_in_threads_succeed_once(guard):
    replay, clock = guard
    start = threading.Barrier(16)

    def claim(_: int) -> bool:
        start.wait()
        return replay.first_use(ISSUER, "contended", clock.now + 300)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(claim, range(16)))
    assert results.count(True) == 1


def _claim_all(url: str, jtis: list[str]) -> list[str]:
    """In another process, on its own engine: the jtis this process won."""
    engine = make_engine(url)
    try:
        replay = ReplayGuard(engine)
        until = time.time() + 300
        return [jti for jti in jtis if replay.first_use(ISSUER, jti, until)]
    finally:
        engine.dispose()


def test_concurrent_claims_across_processes_succeed_once_each(database_url):
    jtis = [f"jti-{index}" for index in range(40)]
    context = multiprocessing.get_context("fork")  # separate processes, quick to start
    with ProcessPoolExecutor(4, mp_context=context) as pool:
        won = [
            jti for result in pool.map(_claim_all, [database_url] * 4, [jtis] * 4) for jti in result
        ]
    assert sorted(won) == sorted(jtis), "each jti accepted exactly once over all processes"


def test_an_unreachable_database_raises_never_accepts(tmp_path):
    engine = make_engine("postgresql+psycopg://127.0.0.1:9/nowhere", connect_timeout_s=1)
    replay = ReplayGuard(engine)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        replay.first_use(ISSUER, "jti-1", time.time() + 300)
    assert time.monotonic() - started < 5


def test_a_database_that_goes_away_raises_never_accepts():
    urls = scratch_postgres()
    url = next(urls)
    engine = make_engine(url)
    try:
        replay = ReplayGuard(engine)
        assert replay.first_use(ISSUER, "jti-1", time.time() + 300)
        drop_postgres(make_url(url).database or "")
        with pytest.raises(DatabaseUnavailable):
            replay.first_use(ISSUER, "jti-2", time.time() + 300)
    finally:
        engine.dispose()
        urls.close()
