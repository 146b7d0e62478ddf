"""`cds-service serve` on loopback (gunicorn, real worker processes) for the memory's tests."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from conftest import TEST_AUDIT_KEY

from cds_service.knowledge_files import load_knowledge
from cds_service.samples import load_index, sample_request
from cds_service.settings import PROJECT_ROOT

CDS = [sys.executable, "-m", "cds_service"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until /healthz answers: the port accepts as soon as the master listens, but a busy
    machine may take seconds to boot the workers, so a probe may time out as well as fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError("server did not come up")


@contextmanager
def serving(database_url: str, folder: Path, workers: int = 2) -> Iterator[str]:
    """The service on gunicorn with `workers` processes; stopped gracefully (SIGTERM)."""
    port = free_port()
    env = {
        **os.environ,
        "CDS_DATABASE_URL": database_url,
        "CDS_INSTANCE_PATH": str(folder / "instance"),
        "CDS_AUDIT_KEY": TEST_AUDIT_KEY,
    }
    command = [*CDS, "serve", "--port", str(port), "--workers", str(workers)]
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"server-{port}.log").open("w") as log:
        process = subprocess.Popen(
            [*command, "--allow-unauthenticated"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def red_flag_request() -> dict[str, Any]:
    """A sample request dated today, with a new cauda equina red flag."""
    kb = load_knowledge(PROJECT_ROOT / "knowledge")
    _, charts = load_index()
    chart = next(c for c in charts if c.name == "ces-new-urinary-retention")
    return sample_request(kb, chart, dt.datetime.now(dt.UTC).date())
