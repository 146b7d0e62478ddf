"""The Node FHIR test server answers browsers (CORS), so the CDS Hooks Sandbox can read it."""

from __future__ import annotations

import requests

ORIGIN = "http://127.0.0.1:8081"


def test_a_preflight_is_answered_without_a_token(fhir_server):
    response = requests.options(
        f"{fhir_server.base}/Condition?patient=x",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, accept",
        },
        timeout=10,
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "accept" in allowed
    assert "GET" in response.headers["Access-Control-Allow-Methods"]


def test_answers_to_a_browser_name_the_allowed_origin_even_a_401(fhir_server):
    ok = requests.get(
        f"{fhir_server.base}/Condition?patient=x",
        headers={**fhir_server.headers(), "Origin": ORIGIN},
        timeout=10,
    )
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == "*"
    refused = requests.get(f"{fhir_server.base}/Patient/x", headers={"Origin": ORIGIN}, timeout=10)
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == "*"


def test_other_clients_get_no_cors_headers(fhir_server):
    response = fhir_server.get("Condition?patient=x")
    assert "Access-Control-Allow-Origin" not in response.headers
