"""The discovery document: services, titles, and prefetch templates a client can fill."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

# "status" is a token parameter, matched by equality: inside the specification's query subset
ALLOWED_PARAMS = {"patient", "code", "category", "date", "status", "_count", "_sort"}


def services(client) -> list[dict]:
    response = client.get("/cds-services")
    assert response.status_code == 200
    return response.get_json()["services"]


def test_a_service_for_patient_view_and_one_for_encounter_start(client):
    hooks = {s["hook"]: s for s in services(client)}
    assert set(hooks) == {"patient-view", "encounter-start", "order-select", "order-sign"}
    for service in hooks.values():
        assert service["id"] and service["title"] and service["description"]
        assert set(service["prefetch"]) == {
            "patient",
            "conditions",
            "labs",
            "findings",
            "vitals",
            "medication_requests",
            "medication_statements",
        }


def test_prefetch_templates_use_only_context_tokens_and_the_query_subset(client):
    for service in services(client):
        for key, template in service["prefetch"].items():
            tokens = re.findall(r"\{\{(.*?)\}\}", template)
            assert tokens == ["context.patientId"], (key, template)
            assert "{" not in re.sub(r"\{\{context\.patientId\}\}", "", template)
            path, _, query = template.partition("?")
            if not query:
                assert path == "Patient/{{context.patientId}}"
                continue
            for name, value in parse_qsl(query):
                assert name in ALLOWED_PARAMS, (key, name)
                if name == "date":
                    assert re.fullmatch(r"ge\d{4}-\d{2}-\d{2}", value), value


def test_date_windows_follow_the_clock(client):
    by_key = services(client)[0]["prefetch"]
    assert "date=ge2026-10-26" in by_key["labs"]  # 30 days before the fixed clock
    assert "date=ge2026-08-27" in by_key["findings"]  # 90 days
    assert "http://loinc.org|2823-3" in by_key["labs"]
    assert "http://loinc.org|9269-2" in by_key["labs"]


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready" and ready["rules"] > 10
