"""The FHIR test server for testers (`scripts/fhir-server`): a chosen port, and a port in use."""

from __future__ import annotations

import os
import socket
import subprocess

import requests
from support.fhir_servers import SERVER_DIR
from support.served import free_port

from cds_service.settings import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "fhir-server"


def start(port: int) -> subprocess.Popen[str]:
    assert (SERVER_DIR / "node_modules" / "@medplum").is_dir(), "scripts/test installs it"
    env = {**os.environ, "PORT": str(port), "FHIR_SERVER_TOKEN": ""}
    return subprocess.Popen(
        [str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_the_port_can_be_chosen():
    port = free_port()
    process = start(port)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == f"listening http://127.0.0.1:{port}/fhir"
        answer = requests.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=10)
        assert answer.status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=10)  # and close its pipes


def test_a_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start(port)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [
        f"fhir-server: cannot listen: port {port} on 127.0.0.1 is already in use; "
        "choose another port"
    ]
