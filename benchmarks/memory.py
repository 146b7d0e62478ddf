"""The memory's figures: feedback write throughput on SQLite and PostgreSQL, and the delay a dead
or hanging database adds to a service call.

    .venv/bin/python -m benchmarks.memory [--postgres URL] [--quick]

1. Feedback in process (Flask test client, one thread): single-item posts, then 100-item posts.
2. Feedback over HTTP: `cds-service serve --workers 2` on loopback, 8 client threads.
3. Service calls in process with the database live, gone (connection refused / folder moved)
   and hanging (accepts connections, never answers): p50, p95 and max per call.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import requests
from sqlalchemy.engine import make_url

from cds_service import Settings, create_app
from cds_service.knowledge_files import load_knowledge
from cds_service.settings import PROJECT_ROOT
from cds_service.storage.database import upgrade
from cds_service.tester_tools.samples import load_index, sample_request
from cds_service.web.state import EXTENSION_KEY

SERVICE = "back-spasm-patient-view"
KEY = "benchmark-audit-key-0123456789abcdef0123"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def feedback_item(n: int) -> dict[str, Any]:
    return {
        "card": f"card-{n}",
        "outcome": "overridden",
        "overrideReason": {"userComment": f"comment {n}"},
        "outcomeTimestamp": "2026-11-25T12:00:00Z",
    }


def red_flag_request() -> dict[str, Any]:
    kb = load_knowledge(PROJECT_ROOT / "knowledge")
    _, charts = load_index()
    chart = next(c for c in charts if c.name == "ces-new-urinary-retention")
    return sample_request(kb, chart, dt.datetime.now(dt.UTC).date())


# --------------------------------------------------------------------------- databases


@contextlib.contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    name = f"cds_bench_{secrets.token_hex(6)}"
    conninfo = make_url(admin_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def databases(postgres: str | None) -> Iterator[list[tuple[str, str]]]:
    with tempfile.TemporaryDirectory() as folder:
        found = [("SQLite", f"sqlite:///{folder}/db/cds.sqlite3")]
        with contextlib.ExitStack() as stack:
            if postgres:
                try:
                    found.append(("PostgreSQL", stack.enter_context(scratch_postgres(postgres))))
                except psycopg.Error as exc:
                    print(f"PostgreSQL not reachable ({exc}); SQLite only")
            for _, url in found:
                upgrade(url)
            yield found


def app_on(url: str, folder: Path) -> Any:
    settings = Settings(
        instance_path=folder, database_url=url, allow_unauthenticated=True, audit_key=KEY
    )
    return create_app(settings)


# --------------------------------------------------------------------------- measurements


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:8.0f}/s"


def feedback_in_process(url: str, folder: Path, posts: int) -> tuple[float, float]:
    """Items stored per second: one item per post, then 100 items per post."""
    client = app_on(url, folder).test_client()
    path = f"/cds-services/{SERVICE}/feedback"
    started = time.perf_counter()
    for n in range(posts):
        assert client.post(path, json={"feedback": [feedback_item(n)]}).status_code == 200
    single = posts / (time.perf_counter() - started)
    started = time.perf_counter()
    for batch in range(posts // 100):
        items = [feedback_item(10**6 + batch * 100 + i) for i in range(100)]
        assert client.post(path, json={"feedback": items}).status_code == 200
    batched = (posts // 100) * 100 / (time.perf_counter() - started)
    return single, batched


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def feedback_over_http(url: str, folder: Path, posts: int, threads: int = 8) -> float:
    port = free_port()
    env = {
        **os.environ,
        "CDS_DATABASE_URL": url,
        "CDS_INSTANCE_PATH": str(folder),
        "CDS_AUDIT_KEY": KEY,
    }
    command = [sys.executable, "-m", "cds_service", "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", "2", "--allow-unauthenticated"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            time.sleep(0.1)
        local = threading.local()

        def send(n: int) -> int:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            item = feedback_item(2 * 10**6 + n)
            response = local.session.post(
                f"{base}/cds-services/{SERVICE}/feedback", json={"feedback": [item]}, timeout=30
            )
            return response.status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            statuses = list(pool.map(send, range(posts)))
        elapsed = time.perf_counter() - started
        assert set(statuses) == {200}, set(statuses)
        return posts / elapsed
    finally:
        process.terminate()
        process.wait(timeout=30)


def call_times(app: Any, body: dict[str, Any], calls: int) -> list[float]:
    client = app.test_client()
    client.post(f"/cds-services/{SERVICE}", json=body)  # warm
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        response = client.post(f"/cds-services/{SERVICE}", json=body)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and response.get_json()["cards"]
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"p50 {statistics.median(ordered):6.2f} ms  p95 {p95:6.2f} ms  max {ordered[-1]:6.2f} ms"


@contextlib.contextmanager
def hanging_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung database)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for sock in held:
            sock.close()
        listener.close()


def dead_call_rows(
    name: str, url: str, folder: Path, body: dict[str, Any], calls: int
) -> list[tuple[str, list[float], dict[str, Any]]]:
    rows = []
    live = app_on(url, folder / f"{name}-live")
    rows.append((f"{name}, live", call_times(live, body, calls), stats_of(live)))
    if name == "SQLite":
        dead = app_on(url, folder / f"{name}-dead")
        db_folder = Path(make_url(url).database or "").parent
        db_folder.rename(db_folder.with_name("db-gone"))
        try:
            rows.append(("SQLite, folder gone", call_times(dead, body, calls), stats_of(dead)))
        finally:
            db_folder.with_name("db-gone").rename(db_folder)
        return rows
    refused = make_url(url).set(host="127.0.0.1", port=free_port()).render_as_string(False)
    dead = app_on(refused, folder / f"{name}-refused")
    rows.append((f"{name}, refused", call_times(dead, body, calls), stats_of(dead)))
    with hanging_server() as port:
        hung = make_url(url).set(host="127.0.0.1", port=port).render_as_string(False)
        app = app_on(hung, folder / f"{name}-hung")
        rows.append((f"{name}, hanging", call_times(app, body, calls), stats_of(app)))
    return rows


def stats_of(app: Any) -> dict[str, Any]:
    time.sleep(0.3)
    return app.extensions[EXTENSION_KEY].audit.writer.stats()


def measure(section: str, run: Callable[[], None]) -> None:
    print(f"\n{section}")
    run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("CDS_TEST_POSTGRES_URL"))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    postgres = None if args.no_postgres else (args.postgres or DEFAULT_POSTGRES)
    posts, http_posts, calls = (300, 400, 100) if args.quick else (1000, 2000, 300)
    body = red_flag_request()
    with tempfile.TemporaryDirectory() as tmp, databases(postgres) as found:
        folder = Path(tmp)

        def in_process() -> None:
            for name, url in found:
                single, batched = feedback_in_process(url, folder / name, posts)
                print(
                    f"  {name:11} 1 item/post {single:7.0f} items/s   "
                    f"100 items/post {batched:7.0f} items/s"
                )

        def over_http() -> None:
            for name, url in found:
                per_s = feedback_over_http(url, folder / f"{name}-http", http_posts)
                print(f"  {name:11} {per_s:7.0f} posts/s (1 item each, {http_posts} posts)")

        def dead() -> None:
            for name, url in found:
                for label, times, stats in dead_call_rows(name, url, folder, body, calls):
                    print(f"  {label:22} {summary(times)}   audit {stats}")

        measure(f"1. Feedback in process, one thread ({posts} posts)", in_process)
        measure("2. Feedback over HTTP, serve --workers 2, 8 client threads", over_http)
        measure(f"3. Service call with a red flag, in process ({calls} calls)", dead)


if __name__ == "__main__":
    main()
