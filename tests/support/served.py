"""`cds-service serve` on loopback for the end-to-end tests: real server, real workers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

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


def upgrade_database(env: dict[str, str]) -> None:
    """`cds-service db upgrade` with this environment, as an operator runs it before `serve`."""
    subprocess.run([*CDS, "db", "upgrade"], env=env, check=True, capture_output=True)


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Graceful stop (SIGTERM), as a process manager does."""
        self.process.terminate()
        self.process.wait(timeout=30)


def serve(env: dict[str, str], log: Path, *options: str, workers: int = 1) -> Served:
    """Start `cds-service serve` on a free loopback port and wait until it answers."""
    port = free_port()
    env = {"CDS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", **env}
    command = [
        *CDS,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *options,
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    served = Served(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_up(served.url, process)
    except RuntimeError:
        served.stop()
        raise RuntimeError(log.read_text()) from None
    return served


def refusal(env: dict[str, str], *options: str) -> str:
    """The one line `cds-service serve` prints when it refuses to start (it must refuse)."""
    result = subprocess.run(
        [*CDS, "serve", "--port", str(free_port()), *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0, "the service started"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]
