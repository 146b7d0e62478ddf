"""End to end: `cds-service serve` on granian, called over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.served import CDS, refusal, serve, upgrade_database

from cds_service.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    env = {**os.environ, "CDS_INSTANCE_PATH": str(tmp_path_factory.mktemp("instance"))}
    upgrade_database(env)
    served = serve(env, tmp_path_factory.mktemp("log") / "server.log", "--allow-unauthenticated")
    try:
        yield served.url
    finally:
        served.stop()


def sample_request(name: str) -> dict:
    out = subprocess.run(
        [*CDS, "samples", "request", name], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_discovery_over_http(server):
    response = requests.get(f"{server}/cds-services", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    hooks = {s["hook"] for s in response.json()["services"]}
    assert hooks == {"patient-view", "encounter-start", "order-select", "order-sign"}


def test_patient_view_with_a_red_flag_over_http(server):
    body = sample_request("ces-new-urinary-retention")
    response = requests.post(f"{server}/cds-services/back-spasm-patient-view", json=body, timeout=5)
    assert response.status_code == 200
    cards = response.json()["cards"]
    assert cards[0]["indicator"] == "critical"
    assert "cauda equina" in cards[0]["summary"]


def test_the_shipped_sample_request_is_a_valid_call(server):
    body = json.loads((PROJECT_ROOT / "examples/requests/patient-view.json").read_text())
    response = requests.post(f"{server}/cds-services/back-spasm-patient-view", json=body, timeout=5)
    assert response.status_code == 200
    assert isinstance(response.json()["cards"], list)


def test_specification_example_gets_412_over_http(server):
    body = json.loads(
        (PROJECT_ROOT / "examples/requests/spec-patient-view-example.json").read_text()
    )
    response = requests.post(f"{server}/cds-services/back-spasm-patient-view", json=body, timeout=5)
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"


def test_errors_over_http_are_json(server):
    response = requests.post(
        f"{server}/cds-services/back-spasm-patient-view",
        data=b"{oops",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    response = requests.post(f"{server}/cds-services/nope", json={}, timeout=5)
    assert response.status_code == 404


def test_the_server_is_granian_not_the_development_server(server):
    response = requests.get(f"{server}/healthz", timeout=5)
    assert "granian" in response.headers.get("Server", "").lower()


def test_serve_refuses_a_database_that_is_behind(tmp_path):
    env = {**os.environ, "CDS_INSTANCE_PATH": str(tmp_path)}
    assert "cds-service db upgrade" in refusal(env, "--allow-unauthenticated")


def test_serve_refuses_to_start_without_trusted_clients_or_development_mode(tmp_path):
    env = {**os.environ, "CDS_INSTANCE_PATH": str(tmp_path)}
    upgrade_database(env)
    env.pop("CDS_TRUSTED_CLIENTS", None)
    assert "allow-unauthenticated" in refusal(env)


def test_serve_refuses_broken_knowledge(tmp_path):
    broken = tmp_path / "knowledge"
    broken.mkdir()
    env = {**os.environ, "CDS_KNOWLEDGE_DIR": str(broken), "CDS_INSTANCE_PATH": str(tmp_path)}
    assert "knowledge" in refusal(env, "--allow-unauthenticated")


def test_development_mode_warns_loudly(tmp_path):
    env = {**os.environ, "CDS_INSTANCE_PATH": str(tmp_path)}
    upgrade_database(env)
    serve(env, Path(tmp_path) / "out.log", "--allow-unauthenticated").stop()
    assert "DEVELOPMENT MODE" in (Path(tmp_path) / "out.log").read_text()


def test_a_worker_never_creates_a_database_that_is_not_there(tmp_path):
    """A worker starting while the database's disk is away must fail, not start an empty one."""
    from cds_service import Settings, create_app

    instance = tmp_path / "instance"
    app = create_app(Settings(instance_path=instance, allow_unauthenticated=True))
    response = app.test_client().post(
        "/cds-services/back-spasm-patient-view/feedback",
        json={
            "feedback": [
                {
                    "card": "6e0bd0a4-3f2a-4a4e-9d6b-7f9a3f8a1c11",
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-11-25T10:00:00Z",
                }
            ]
        },
    )
    assert response.status_code == 503
    assert not (instance / "cds.sqlite3").exists()


def test_a_chunked_body_is_read_whole_and_limited(server):
    """Bodies are buffered by the server before the application runs: chunked ones too."""
    raw = json.dumps(sample_request("ces-new-urinary-retention")).encode()
    url = f"{server}/cds-services/back-spasm-patient-view"
    headers = {"Content-Type": "application/json"}
    pieces = (raw[i : i + 1000] for i in range(0, len(raw), 1000))
    response = requests.post(url, data=pieces, headers=headers, timeout=10)
    assert response.status_code == 200 and response.json()["cards"]
    too_big = (b" " * 1_000_000 for _ in range(11))  # over the 10 MiB default
    response = requests.post(url, data=too_big, headers=headers, timeout=30)
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"
