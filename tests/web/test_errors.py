"""Every error is JSON with a reason; hostile or broken input never yields a 500."""

from __future__ import annotations

import json

import pytest
from support.builders import PATIENT_VIEW, condition, hook_body


def assert_outcome(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    return body["issue"][0]["diagnostics"]


def test_unknown_service_is_404(call):
    assert "no-such" in assert_outcome(call(hook_body(), "no-such"), 404)


def test_unknown_path_is_404(client):
    assert_outcome(client.get("/nothing-here"), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/cds-services/{PATIENT_VIEW}"),
        ("PUT", f"/cds-services/{PATIENT_VIEW}"),
        ("DELETE", "/cds-services"),
        ("POST", "/cds-services"),
    ],
)
def test_wrong_method_is_405_with_allow(client, method, path):
    response = client.open(path, method=method)
    assert_outcome(response, 405)
    assert response.headers["Allow"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_non_json_body_is_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(f"/cds-services/{PATIENT_VIEW}", data=b"{}", headers=headers)
    assert_outcome(response, 415)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{",
        b"{'hook': 1}",
        b"\xff\xfe\x00",
        b"[1, 2",
        b"nul",
        b'{"a": NaN',
    ],
)
def test_unparseable_json_is_400(client, raw):
    response = client.post(
        f"/cds-services/{PATIENT_VIEW}", data=raw, content_type="application/json"
    )
    assert_outcome(response, 400)


@pytest.mark.parametrize("body", [None, 1, "text", [], [{"hook": "patient-view"}], True])
def test_json_that_is_not_an_object_is_400(client, body):
    response = client.post(
        f"/cds-services/{PATIENT_VIEW}", data=json.dumps(body), content_type="application/json"
    )
    assert_outcome(response, 400)


def test_deep_nesting_is_rejected(client):
    raw = b'{"hook": "patient-view", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = client.post(
        f"/cds-services/{PATIENT_VIEW}", data=raw, content_type="application/json"
    )
    assert "deeper" in assert_outcome(response, 400)


def test_body_over_the_limit_is_413(client):
    raw = b'{"hook": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    response = client.post(
        f"/cds-services/{PATIENT_VIEW}", data=raw, content_type="application/json"
    )
    assert_outcome(response, 413)


def test_fhir_json_content_type_is_accepted(client):
    response = client.post(
        f"/cds-services/{PATIENT_VIEW}",
        data=json.dumps(hook_body()),
        content_type="application/fhir+json; charset=utf-8",
    )
    assert response.status_code == 200


HOSTILE_PREFETCH_VALUES = [
    {"resourceType": "Bundle", "entry": "nope"},
    {"resourceType": "Bundle", "entry": [None, 1, "x", {"resource": None}, {"resource": [1]}]},
    {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Condition"}}]},
    {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Condition",
                    "subject": {"reference": "Patient/bs-test-1"},
                    "code": {
                        "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R33.9"}]
                    },
                    "onsetDateTime": {"not": "a date"},
                }
            }
        ],
    },
    {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Condition",
                    "subject": "Patient/bs-test-1",
                    "code": {"coding": "R33.9"},
                }
            }
        ],
    },
    {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "subject": {"reference": "Patient/bs-test-1"},
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
                    "valueQuantity": {"value": "abc", "unit": "mmol/L"},
                }
            }
        ],
    },
    {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "subject": {"reference": "Patient/bs-test-1"},
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
                    "valueQuantity": {"value": 1e308, "unit": "mmol/L"},
                    "referenceRange": [{"low": {"value": -1e308}}],
                }
            }
        ],
    },
    {"resourceType": "Bundle", "link": [{"relation": "next", "url": 5}], "entry": []},
    {"resourceType": "Patient", "id": ["x"]},
    {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Condition",
                    "subject": {"reference": "Patient/bs-test-1"},
                    "code": {"coding": [{"system": ["x"], "code": {"a": 1}}, {"system": None}]},
                }
            }
        ],
    },
]


@pytest.mark.parametrize("value", HOSTILE_PREFETCH_VALUES)
@pytest.mark.parametrize("key", ["conditions", "labs", "patient"])
def test_hostile_prefetch_content_never_breaks_the_call(call, key, value):
    body = hook_body([condition("M62.830")])
    body["prefetch"][key] = value
    response = call(body)
    assert response.status_code in (200, 412), response.get_data(as_text=True)
    assert response.mimetype == "application/json"


def test_markup_in_record_text_cannot_reach_the_card_as_html(call):
    evil = condition("R33.9")
    evil["code"]["coding"][0]["display"] = "<img src=x onerror=alert(1)> [click](http://evil) **x**"
    evil["id"] = "c-1"
    cards = call(hook_body([condition("M62.830"), evil])).get_json()["cards"]
    detail = cards[0]["detail"]
    assert "<img" not in detail and "<" not in detail.replace("&lt;", "")
    assert "[click](" not in detail
