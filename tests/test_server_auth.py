"""End to end, with authentication: `cds-service serve` on granian, real HTTP on loopback.

Real JWTs over real sockets; replay refused across two workers sharing one SQLite
file, and across two separate `serve` processes on one database (SQLite, and PostgreSQL in a
scratch database); CORS preflight from a browser origin; the header limits of the application
and of the server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from support.jwt_clients import SigningKey, claims, generate_key, sign, write_trusted_clients
from support.scratch_db import scratch_postgres
from support.served import Served, refusal, serve, upgrade_database
from test_server import sample_request

ISSUER = "https://ehr.example.org"
SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"
DISCOVERY = "/cds-services"
PATIENT_VIEW = "/cds-services/back-spasm-patient-view"
FEEDBACK = "/cds-services/back-spasm-patient-view/feedback"


@dataclass
class Server(Served):
    """The service requiring JWTs, with helpers to call it with a token."""

    def token(self, key: SigningKey, path: str, **changes: Any) -> str:
        return sign(key, "ES384", claims(self.url + path, iss=ISSUER, **changes))

    def get(self, path: str, token: str, **headers: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}", **headers}
        return requests.get(self.url + path, headers=headers, timeout=10)

    def workers(self) -> list[int]:
        """The worker processes (children of the arbiter)."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in children]


def server_env(instance: Path, trusted: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    return {
        **env,
        "CDS_INSTANCE_PATH": str(instance),
        "CDS_TRUSTED_CLIENTS": str(trusted),
        "CDS_CORS_ORIGINS": SANDBOX_ORIGIN,
        "CDS_AUDIT_KEY": "test-audit-key-0123456789abcdef-0123456789",
        **extra,
    }


def start(env: dict[str, str], log: Path, workers: int = 1) -> Server:
    served = serve(env, log, workers=workers)
    return Server(served.url, served.process, served.log)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_key("P-384")


@pytest.fixture(scope="module")
def trusted(tmp_path_factory, key) -> Path:
    folder = tmp_path_factory.mktemp("trust")
    return write_trusted_clients(folder / "trusted.yaml", [{"issuer": ISSUER, "jwks": key.jwks()}])


@pytest.fixture(scope="module")
def instance(tmp_path_factory, trusted) -> Path:
    folder = tmp_path_factory.mktemp("instance")
    env = server_env(folder, trusted)
    upgrade_database(env)
    return folder


@pytest.fixture(scope="module")
def auth_server(instance, trusted) -> Iterator[Server]:
    """Two workers on one SQLite file, JWTs required."""
    server = start(server_env(instance, trusted), instance / "server.log", workers=2)
    try:
        yield server
    finally:
        server.stop()


def assert_401(response: requests.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["issue"][0]["code"] == "login"


# ------------------------------------------------------------------------ every route


def test_every_cds_route_requires_a_valid_jwt_over_http(auth_server, key):
    url = auth_server.url
    assert_401(requests.get(url + DISCOVERY, timeout=5))
    assert_401(requests.post(url + PATIENT_VIEW, json={}, timeout=5))
    assert_401(requests.post(url + FEEDBACK, json={}, timeout=5))
    token = auth_server.token(key, DISCOVERY)
    assert auth_server.get(DISCOVERY, token).status_code == 200
    body = sample_request("ces-new-urinary-retention")
    token = auth_server.token(key, PATIENT_VIEW)
    response = requests.post(
        url + PATIENT_VIEW, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert response.status_code == 200
    assert response.json()["cards"][0]["indicator"] == "critical"
    feedback = {
        "feedback": [
            {
                "card": response.json()["cards"][0]["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-25T10:00:00Z",
            }
        ]
    }
    token = auth_server.token(key, FEEDBACK)
    response = requests.post(
        url + FEEDBACK, json=feedback, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert response.status_code == 200, response.text


def test_the_open_routes_stay_open(auth_server):
    about = "/about/rules/new-bladder-or-bowel-loss"
    public = ("/about/icon.png", about, f"{about}.json", "/about/CodeSystem/card-topic")
    for path in ("/healthz", "/readyz", "/openapi.yaml", *public):
        assert requests.get(auth_server.url + path, timeout=5).status_code == 200, path


def test_rejections_are_logged_without_the_token(auth_server, key):
    token = auth_server.token(key, PATIENT_VIEW)  # for another route: refused
    assert_401(auth_server.get(DISCOVERY, token))
    time.sleep(0.2)
    log = auth_server.log.read_text()
    assert "JWT rejected on GET /cds-services: InvalidAudienceError" in log
    assert token not in log


# ------------------------------------------------------------------------ replay


def _io_reads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


def test_a_replay_is_refused_across_two_workers(auth_server, key):
    """Each token sent 8 times at once: exactly one is accepted, whichever worker takes it."""
    workers = auth_server.workers()
    assert len(workers) == 2
    before = {pid: _io_reads(pid) for pid in workers}
    tokens = [auth_server.token(key, DISCOVERY) for _ in range(12)]

    def call(token: str) -> int:
        return auth_server.get(DISCOVERY, token, Connection="close").status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(call, [t for t in tokens for _ in range(8)]))
    per_token = [statuses[i * 8 : (i + 1) * 8] for i in range(len(tokens))]
    assert all(s.count(200) == 1 and s.count(401) == 7 for s in per_token), per_token
    served = [pid for pid in workers if _io_reads(pid) > before[pid] + 10_000]
    assert len(served) == 2, "both workers took part"


def test_a_replay_is_refused_by_another_instance_on_the_same_sqlite(
    auth_server, key, instance, trusted
):
    other = start(server_env(instance, trusted), instance / "other.log")
    try:
        _assert_replay_refused_across(auth_server, other, key)
    finally:
        other.stop()


def _assert_replay_refused_across(first: Server, second: Server, key: SigningKey) -> None:
    jti = f"shared-{time.time_ns()}"
    token_a = first.token(key, DISCOVERY, jti=jti)
    assert first.get(DISCOVERY, token_a).status_code == 200
    token_b = second.token(key, DISCOVERY, jti=jti)  # same issuer and jti, for the other instance
    assert_401(second.get(DISCOVERY, token_b))
    fresh = second.token(key, DISCOVERY)
    assert second.get(DISCOVERY, fresh).status_code == 200


def test_a_replay_is_refused_by_another_instance_on_the_same_postgresql(tmp_path, trusted, key):
    urls = scratch_postgres()
    database_url = next(urls)
    servers: list[Server] = []
    try:
        for name in ("a", "b"):
            folder = tmp_path / name
            folder.mkdir()
            env = server_env(folder, trusted, CDS_DATABASE_URL=database_url)
            servers.append(start(env, folder / "server.log"))
        _assert_replay_refused_across(servers[0], servers[1], key)
    finally:
        for server in servers:
            server.stop()
        urls.close()


# ------------------------------------------------------------------------ CORS


def test_a_browser_preflight_needs_no_token(auth_server):
    for path, method, asked in [
        (DISCOVERY, "GET", "authorization"),
        (PATIENT_VIEW, "POST", "authorization,content-type"),
        (FEEDBACK, "POST", "authorization,content-type"),
    ]:
        response = requests.options(
            auth_server.url + path,
            headers={
                "Origin": SANDBOX_ORIGIN,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": asked,
            },
            timeout=5,
        )
        assert response.status_code == 200, (path, response.text)
        assert response.headers["Access-Control-Allow-Origin"] == SANDBOX_ORIGIN
        allowed = response.headers["Access-Control-Allow-Headers"].lower().replace(" ", "")
        assert set(asked.split(",")) <= set(allowed.split(","))
        methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
        assert methods == {"GET", "POST", "OPTIONS"}


def test_a_header_outside_the_list_is_not_allowed(auth_server):
    response = requests.options(
        auth_server.url + DISCOVERY,
        headers={
            "Origin": SANDBOX_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization,x-forwarded-host",
        },
        timeout=5,
    )
    allowed = response.headers.get("Access-Control-Allow-Headers", "").lower()
    assert "x-forwarded-host" not in allowed


def test_another_origin_gets_no_cors_headers(auth_server):
    response = requests.options(
        auth_server.url + DISCOVERY,
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        timeout=5,
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_401_reaches_the_browser_client(auth_server):
    response = requests.get(
        auth_server.url + DISCOVERY, headers={"Origin": SANDBOX_ORIGIN}, timeout=5
    )
    assert_401(response)
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX_ORIGIN


# ------------------------------------------------------------------------ header limits


def test_headers_over_the_application_limit_get_a_json_431(auth_server):
    headers = {f"X-Padding-{i}": "x" * 6000 for i in range(3)}  # each line under its own limit
    response = requests.get(auth_server.url + DISCOVERY, headers=headers, timeout=5)
    assert response.status_code == 431
    assert response.json()["issue"][0]["code"] == "too-costly"


def test_one_header_line_over_its_limit_gets_a_json_431(auth_server):
    response = requests.get(
        auth_server.url + DISCOVERY, headers={"X-Padding": "x" * 9000}, timeout=5
    )
    assert response.status_code == 431
    assert "header line of" in response.json()["issue"][0]["diagnostics"]


def test_more_than_100_headers_are_refused_with_431(auth_server):
    headers = {f"X-Many-{i}": "x" for i in range(101)}
    response = requests.get(auth_server.url + "/healthz", headers=headers, timeout=5)
    assert response.status_code == 431


def test_a_request_line_over_its_limit_gets_a_json_414(auth_server):
    response = requests.get(auth_server.url + DISCOVERY + "?q=" + "x" * 5000, timeout=5)
    assert response.status_code == 414
    assert response.json()["issue"][0]["code"] == "too-costly"


# ------------------------------------------------------------------------ start-up


def test_serve_refuses_a_bad_trusted_clients_file(tmp_path):
    bad = tmp_path / "trusted.yaml"
    bad.write_text("clients:\n  - issuer: https://ehr.example.org\n")
    env = server_env(tmp_path, bad)
    upgrade_database(env)
    line = refusal(env)
    assert "trusted clients invalid" in line and "no key source" in line


# ------------------------------------------------------------------------ audience and logs


def test_serve_refuses_to_start_without_a_public_base_url(instance, trusted):
    env = {k: v for k, v in server_env(instance, trusted).items() if k != "CDS_PUBLIC_BASE_URL"}
    assert "CDS_PUBLIC_BASE_URL is not set" in refusal(env)


def test_the_audience_is_the_configured_url_whatever_host_and_proxy_headers_say(auth_server, key):
    """A token minted for another service with the same path is refused, even when the
    request's Host and X-Forwarded-* headers name that other service."""
    other = "https://other-service.example.org"
    token = sign(key, "ES384", claims(other + DISCOVERY, iss=ISSUER))
    spoofed = {
        "Host": "other-service.example.org",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "other-service.example.org",
    }
    assert_401(auth_server.get(DISCOVERY, token, **spoofed))
    assert auth_server.get(DISCOVERY, auth_server.token(key, DISCOVERY)).status_code == 200


def test_a_token_is_in_no_log_wherever_it_is_sent(auth_server, key, instance):
    """In the query string (refused: 401), in a header, in the body: no log line holds it."""
    tokens = [auth_server.token(key, DISCOVERY) for _ in range(3)]
    query, header, body = tokens
    response = requests.get(f"{auth_server.url}{DISCOVERY}?access_token={query}", timeout=5)
    assert_401(response)
    assert auth_server.get(DISCOVERY, header).status_code == 200
    response = requests.post(
        auth_server.url + PATIENT_VIEW, json={"token": body}, headers={"X-Token": body}, timeout=5
    )
    assert_401(response)
    logs = [p for p in instance.rglob("*") if p.is_file() and p.suffix in {".log", ".txt", ""}]
    logs.append(auth_server.log)
    assert auth_server.log.read_text().strip(), "the server wrote its log"
    for path in logs:
        text = path.read_text(errors="replace")
        for token in tokens:
            assert token not in text, f"a token is in {path}"
