"""The CDS Hooks request envelope: what gets a 400 with a reason, and what is tolerated."""

from __future__ import annotations

import copy
import json

import pytest
from support.builders import ENCOUNTER_START, PATIENT_VIEW, condition, hook_body

from cds_service.settings import PROJECT_ROOT


def outcome_text(response) -> str:
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(i["diagnostics"] for i in body["issue"])


def without(body: dict, *path: str) -> dict:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


def with_value(body: dict, value, *path: str) -> dict:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


BASE = hook_body([condition("M62.830")])
AUTH = {
    "access_token": "tok",
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "patient/*.read",
    "subject": "cds-service",
}


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (without(BASE, "hook"), "hook"),
        (without(BASE, "hookInstance"), "hookInstance"),
        (without(BASE, "context"), "context"),
        (with_value(BASE, "order-sign", "hook"), "hook"),
        (with_value(BASE, 7, "hookInstance"), "hookInstance"),
        (with_value(BASE, "", "hookInstance"), "hookInstance"),
        (with_value(BASE, [], "context"), "context"),
        (without(BASE, "context", "patientId"), "context.patientId"),
        (without(BASE, "context", "userId"), "context.userId"),
        (with_value(BASE, 12, "context", "patientId"), "context.patientId"),
        (with_value(BASE, "../Patient/x?y", "context", "patientId"), "context.patientId"),
        (with_value(BASE, AUTH, "fhirAuthorization"), "fhirServer"),
        (with_value(BASE, "ftp://x", "fhirServer"), "fhirServer"),
        (with_value(BASE, [], "prefetch"), "prefetch"),
        (with_value(BASE, [1, 2], "fhirAuthorization"), "fhirAuthorization"),
        (
            with_value(
                with_value(BASE, "https://ehr.example/fhir", "fhirServer"),
                {**AUTH, "token_type": "MAC"},
                "fhirAuthorization",
            ),
            "fhirAuthorization.token_type",
        ),
        (
            with_value(
                with_value(BASE, "https://ehr.example/fhir", "fhirServer"),
                {**AUTH, "expires_in": "300"},
                "fhirAuthorization",
            ),
            "fhirAuthorization.expires_in",
        ),
        (
            with_value(
                with_value(BASE, "https://ehr.example/fhir", "fhirServer"),
                without(AUTH, "subject"),
                "fhirAuthorization",
            ),
            "fhirAuthorization.subject",
        ),
    ],
)
def test_malformed_envelope_is_a_400_naming_the_member(call, body, names):
    response = call(body)
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["expression"] == [names]
    assert names in issue["diagnostics"]


def test_encounter_start_requires_encounter_id(call):
    body = hook_body([condition("M62.830")], hook="encounter-start")
    response = call(without(body, "context", "encounterId"), ENCOUNTER_START)
    assert response.status_code == 400
    assert "context.encounterId" in outcome_text(response)


def test_hook_of_another_service_is_rejected(call):
    response = call(hook_body([condition("M62.830")]), ENCOUNTER_START)
    assert response.status_code == 400
    assert "encounter-start" in outcome_text(response)


def test_unknown_members_and_extensions_are_ignored(call):
    body = copy.deepcopy(BASE)
    body["extension"] = {"davinci-crd.configuration": {"alt-drug": True}}
    body["somethingNew"] = [1, 2, 3]
    body["context"]["extension"] = {"org.example.flag": "x"}
    body["context"]["appointments"] = {"resourceType": "Bundle"}
    assert call(body).status_code == 200


def test_repeated_hook_instance_is_tolerated(call):
    body = with_value(BASE, "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "hookInstance")
    assert call(body).status_code == 200
    assert call(body).status_code == 200


def test_fhir_authorization_with_server_is_accepted(call):
    body = with_value(
        with_value(BASE, "https://ehr.example/fhir", "fhirServer"), AUTH, "fhirAuthorization"
    )
    assert call(body).status_code == 200


def test_the_specifications_example_request_is_valid_and_asks_for_our_data(call):
    """The CDS Hooks 2.0 patient-view example carries none of our prefetch keys: 412."""
    body = json.loads(
        (PROJECT_ROOT / "examples/requests/spec-patient-view-example.json").read_text()
    )
    response = call(body, PATIENT_VIEW)
    assert response.status_code == 412
    text = outcome_text(response)
    for key in ("conditions", "labs", "findings"):
        assert key in text
    assert "some-opaque-fhir-access-token" not in response.get_data(as_text=True)
