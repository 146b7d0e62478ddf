"""openapi.yaml is a valid OpenAPI 3.1 document, and the service's real answers match it.

The app runs in process; each test makes a real call with the Flask test client and validates the
real response (status, headers, body) against the contract with openapi-core.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.deserializing.media_types.util import json_loads
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.request.exceptions import InvalidRequestBody
from openapi_core.validation.request.validators import V31RequestBodyValidator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from werkzeug.test import TestResponse

from cds_service import Settings, create_app
from cds_service.core.orders import suggestion_uuid
from cds_service.storage.database import upgrade

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"
NOW = dt.datetime(2025, 6, 10, 9, 0, tzinfo=dt.UTC)
PATIENT_ID = "pt-1"
PATIENT_VIEW = "/cds-services/back-spasm-patient-view"
ENCOUNTER_START = "/cds-services/back-spasm-encounter-start"
CDS_OPERATIONS = {
    ("/cds-services", "get"),
    ("/cds-services/{id}", "post"),
    ("/cds-services/{id}/feedback", "post"),
}
OPS_OPERATIONS = {("/healthz", "get"), ("/readyz", "get"), ("/openapi.yaml", "get")}

#: Media types the service uses that openapi-core does not parse by default.
MEDIA_TYPES = {"application/fhir+json": json_loads, "application/yaml": yaml.safe_load}


# --------------------------------------------------------------------------------- fixtures


def make_app(
    instance: Path, clock: Callable[[], dt.datetime] = lambda: NOW, **settings: Any
) -> Flask:
    # Development mode (no JWT) so that these tests keep testing the contract once JWT
    # authentication is enforced; the setting is the documented way to run without a token.
    config = Settings(instance_path=instance, allow_unauthenticated=True, **settings)
    upgrade(config.resolved_database_url())
    return create_app(config, clock=clock)


@pytest.fixture(scope="module")
def spec_dict() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text("utf-8"))


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    return OpenAPI.from_file_path(
        str(SPEC_PATH), config=Config(extra_media_type_deserializers=MEDIA_TYPES)
    )


@pytest.fixture(scope="module")
def body_validator() -> OpenAPI:
    """Validates request bodies only (the tests send no JWT, so security is left out)."""
    config = Config(
        request_validator_cls=V31RequestBodyValidator,
        extra_media_type_deserializers=MEDIA_TYPES,
    )
    return OpenAPI.from_file_path(str(SPEC_PATH), config=config)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_app(tmp_path_factory.mktemp("instance"))


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


# ---------------------------------------------------------------------------------- helpers


class SentRequest(WerkzeugOpenAPIRequest):
    """The real request, with the body bytes the test sent.

    The service reads the body stream once, uncached, so the adapter cannot read it again.
    `method` looks a 405 up under the path's operation: OpenAPI attaches responses to
    operations only, so the answer to a method a path does not serve is documented there.
    """

    def __init__(self, request: Any, body: bytes = b"", method: str | None = None):
        super().__init__(request)
        self._body = body
        self._method = method

    @property
    def body(self) -> bytes:
        return self._body

    @property
    def method(self) -> str:
        return self._method or super().method


def check_response(
    openapi: OpenAPI, response: TestResponse, body: bytes = b"", *, as_method: str | None = None
) -> None:
    """Raise unless the real response matches the contract (status, headers, media, body)."""
    request = SentRequest(response.request, body, as_method)
    openapi.validate_response(request, WerkzeugOpenAPIResponse(response))


def post(
    client: FlaskClient, path: str, body: Any, content_type: str = "application/json"
) -> tuple[TestResponse, bytes]:
    """POST `body` (JSON-encoded unless bytes); the response and the bytes sent."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, data=data, content_type=content_type), data


def condition(resource_id: str, code: str, display: str, onset: dt.date) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": resource_id,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "code": {
            "coding": [
                {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code, "display": display}
            ]
        },
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "onsetDateTime": onset.isoformat(),
    }


def hook_request(prefetch: dict[str, Any] | None, hook: str = "patient-view") -> dict[str, Any]:
    context = {"userId": "Practitioner/dr-1", "patientId": PATIENT_ID}
    if hook == "encounter-start":
        context["encounterId"] = "enc-1"
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": "0b9e7c1e-2f4c-4b7a-9a55-6d1c2b3a4f5e",
        "context": context,
        "extension": {"org.example.client": {"ignored": True}},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def red_flag_prefetch() -> dict[str, Any]:
    """Back spasm for 6 days and urinary retention for 3: a new cauda equina red flag."""
    today = NOW.date()
    conditions = [
        condition("spasm", "M62.830", "Muscle spasm of back", today - dt.timedelta(days=6)),
        condition("retention", "R33.9", "Retention of urine, unspecified", today - dt.timedelta(3)),
    ]
    return {
        "patient": {"resourceType": "Patient", "id": PATIENT_ID},
        "conditions": {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(conditions),
            "entry": [
                {"fullUrl": f"Condition/{c['id']}", "resource": c, "search": {"mode": "match"}}
                for c in conditions
            ],
        },
        "labs": None,
        "findings": None,
    }


def issues(response: TestResponse) -> list[dict[str, Any]]:
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


# ------------------------------------------------------------------------------ the document


def test_document_is_valid_openapi_3_1(spec_dict: dict[str, Any]) -> None:
    assert spec_dict["openapi"].startswith("3.1.")
    validate(spec_dict, cls=OpenAPIV31SpecValidator)


def _flask_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?[^<>]+>", "{}", rule)


def test_every_route_the_app_serves_is_documented(app: Flask, spec_dict: dict[str, Any]) -> None:
    documented = {
        (re.sub(r"\{[^}]+\}", "{}", path), method)
        for path, item in spec_dict["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }
    served = {
        (_flask_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }
    assert served, "the app serves no route"
    assert served - documented == set()


def test_security_applies_to_cds_operations_only(spec_dict: dict[str, Any]) -> None:
    scheme = spec_dict["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for path, method in CDS_OPERATIONS:
        operation = spec_dict["paths"][path][method]
        assert operation["security"] == [{"bearerAuth": []}], (path, method)
        unauthorized = operation["responses"]["401"]
        assert unauthorized == {"$ref": "#/components/responses/Unauthorized"}
    challenge = spec_dict["components"]["responses"]["Unauthorized"]["headers"]
    assert challenge["WWW-Authenticate"]["required"] is True
    for path, method in OPS_OPERATIONS:
        assert spec_dict["paths"][path][method]["security"] == [], (path, method)


def test_documented_examples_match_their_schemas(openapi: OpenAPI, spec_dict: dict) -> None:
    examples = spec_dict["components"]["examples"]
    cases = [
        (200, "CriticalCardResponse"),
        (412, "MissingPrefetchOutcome"),
    ]
    for status, name in cases:
        request = MockRequest("http://localhost", "post", PATIENT_VIEW)
        data = json.dumps(examples[name]["value"]).encode()
        openapi.validate_response(request, MockResponse(data, status_code=status))


FEEDBACK_PATH = "/cds-services/back-spasm-patient-view/feedback"
ACCEPTED = {
    "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
    "outcome": "accepted",
    # a suggestion uuid as the service derives it for that card
    "acceptedSuggestions": [
        {"id": suggestion_uuid("9368d37b-283f-44a0-93ea-547cebab93ed", "repeat-potassium")}
    ],
    "outcomeTimestamp": "2025-06-10T09:00:00Z",
}
OVERRIDDEN = {  # as the CDS Hooks Sandbox sends it: a reason without `display`
    "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
    "outcome": "overridden",
    "overrideReason": {
        "reason": {
            "system": "https://back-spasm-cds.org/fhir/CodeSystem/override-reason",
            "code": "already-evaluated",
        },
        "userComment": "seen in clinic yesterday",
    },
    "outcomeTimestamp": "2025-06-10T09:00:00.52Z",
}


@pytest.mark.parametrize(
    ("items", "valid"),
    [
        ([ACCEPTED, OVERRIDDEN], True),
        ([{k: v for k, v in ACCEPTED.items() if k != "acceptedSuggestions"}], False),
        ([{**OVERRIDDEN, "outcome": "dismissed"}], False),
        ([{**OVERRIDDEN, "overrideReason": {}}], False),
        ([], False),
    ],
)
def test_feedback_contract(body_validator: OpenAPI, items: list[dict], valid: bool) -> None:
    """The documented feedback body (the endpoint itself is not called here)."""
    data = json.dumps({"feedback": items}).encode()
    request = MockRequest("http://localhost", "post", FEEDBACK_PATH, data=data)
    if valid:
        body_validator.validate_request(request)
    else:
        with pytest.raises(InvalidRequestBody):
            body_validator.validate_request(request)


# ------------------------------------------------------------------------------- discovery


def test_discovery(client: FlaskClient, openapi: OpenAPI) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    check_response(openapi, response)
    services = {s["id"]: s for s in response.get_json()["services"]}
    assert services["back-spasm-patient-view"]["hook"] == "patient-view"
    assert set(services["back-spasm-patient-view"]["prefetch"]) == {
        "patient",
        "conditions",
        "labs",
        "findings",
        "vitals",
        "medication_requests",
        "medication_statements",
    }


def test_discovery_wrong_method_405(client: FlaskClient, openapi: OpenAPI) -> None:
    response, sent = post(client, "/cds-services", {})
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    check_response(openapi, response, sent, as_method="get")


def test_unexpected_error_500(openapi: OpenAPI, tmp_path: Path) -> None:
    def broken_clock() -> dt.datetime:
        raise RuntimeError("clock broke")

    with make_app(tmp_path, clock=broken_clock).test_client() as client:
        response = client.get("/cds-services")
    assert response.status_code == 500
    assert "clock broke" not in response.get_data(as_text=True)
    check_response(openapi, response)


# ---------------------------------------------------------------------------- service calls


@pytest.mark.parametrize("content_type", ["application/json", "application/fhir+json"])
def test_patient_view_with_red_flag_returns_cards(
    client: FlaskClient, openapi: OpenAPI, body_validator: OpenAPI, content_type: str
) -> None:
    response, sent = post(client, PATIENT_VIEW, hook_request(red_flag_prefetch()), content_type)
    assert response.status_code == 200, response.get_data(as_text=True)
    body_validator.validate_request(SentRequest(response.request, sent))
    check_response(openapi, response, sent)
    cards = response.get_json()["cards"]
    assert cards, "a new urinary retention with back spasm must give a card"
    assert cards[0]["indicator"] == "critical"


def test_encounter_start_with_red_flag_returns_cards(
    client: FlaskClient, openapi: OpenAPI, body_validator: OpenAPI
) -> None:
    body = hook_request(red_flag_prefetch(), hook="encounter-start")
    response, sent = post(client, ENCOUNTER_START, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    body_validator.validate_request(SentRequest(response.request, sent))
    check_response(openapi, response, sent)
    assert response.get_json()["cards"]


def test_documented_request_example_is_answered(
    client: FlaskClient, openapi: OpenAPI, body_validator: OpenAPI, spec_dict: dict
) -> None:
    example = spec_dict["components"]["examples"]["PatientViewRequest"]["value"]
    response, sent = post(client, PATIENT_VIEW, example)
    assert response.status_code == 200, response.get_data(as_text=True)
    body_validator.validate_request(SentRequest(response.request, sent))
    check_response(openapi, response, sent)


def test_no_finding_gives_empty_cards(client: FlaskClient, openapi: OpenAPI) -> None:
    prefetch = {
        "patient": None,
        "conditions": {"resourceType": "Bundle", "type": "searchset", "total": 0},
        "labs": None,
        "findings": None,
    }
    response, sent = post(client, PATIENT_VIEW, hook_request(prefetch))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"cards": []}
    check_response(openapi, response, sent)


def test_empty_prefetch_412(client: FlaskClient, openapi: OpenAPI) -> None:
    response, sent = post(client, PATIENT_VIEW, hook_request({}))
    assert response.status_code == 412
    check_response(openapi, response, sent)
    where = {e for issue in issues(response) for e in issue.get("expression", [])}
    assert where == {"prefetch.conditions", "prefetch.labs", "prefetch.findings"}


def test_malformed_json_400(client: FlaskClient, openapi: OpenAPI) -> None:
    response, sent = post(client, PATIENT_VIEW, b'{"hook": "patient-view",')
    assert response.status_code == 400
    check_response(openapi, response, sent)
    assert issues(response)[0]["code"] == "invalid"


def test_malformed_envelope_400(
    client: FlaskClient, openapi: OpenAPI, body_validator: OpenAPI
) -> None:
    body = hook_request(red_flag_prefetch())
    del body["context"]["patientId"]
    response, sent = post(client, PATIENT_VIEW, body)
    assert response.status_code == 400
    check_response(openapi, response, sent)
    assert issues(response)[0]["expression"] == ["context.patientId"]
    with pytest.raises(InvalidRequestBody):  # the contract rejects the same body
        body_validator.validate_request(SentRequest(response.request, sent))


def test_unknown_service_404(client: FlaskClient, openapi: OpenAPI) -> None:
    response, sent = post(client, "/cds-services/no-such-service", hook_request({}))
    assert response.status_code == 404
    check_response(openapi, response, sent)
    assert issues(response)[0]["code"] == "not-found"


def test_wrong_method_405(client: FlaskClient, openapi: OpenAPI) -> None:
    response = client.get(PATIENT_VIEW)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    check_response(openapi, response, as_method="post")


def test_body_too_large_413(openapi: OpenAPI, tmp_path: Path) -> None:
    body = hook_request(red_flag_prefetch())
    body["extension"] = {"org.example.padding": {"text": "x" * 2048}}
    with make_app(tmp_path, max_body_bytes=1024).test_client() as client:
        response, sent = post(client, PATIENT_VIEW, body)
    assert response.status_code == 413
    check_response(openapi, response, sent)
    assert issues(response)[0]["code"] == "too-costly"


def test_text_plain_body_415(client: FlaskClient, openapi: OpenAPI) -> None:
    body = hook_request(red_flag_prefetch())
    response, sent = post(client, PATIENT_VIEW, body, content_type="text/plain")
    assert response.status_code == 415
    check_response(openapi, response, sent)
    assert issues(response)[0]["code"] == "not-supported"


# ------------------------------------------------------------------------------- operations


def test_healthz(client: FlaskClient, openapi: OpenAPI) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    check_response(openapi, response)
    assert response.get_json() == {"status": "ok"}


def test_readyz(client: FlaskClient, openapi: OpenAPI) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    check_response(openapi, response)
    assert response.get_json()["rules"] > 0


def test_metrics(client: FlaskClient, openapi: OpenAPI) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    check_response(openapi, response)
    assert "# TYPE cds_service_calls_total counter" in response.get_data(as_text=True)


def test_openapi_route_serves_this_document(client: FlaskClient, openapi: OpenAPI) -> None:
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    check_response(openapi, response)
    assert response.get_data(as_text=True) == SPEC_PATH.read_text("utf-8")


# -------------------------------------------------------------------------------- feedback


def test_feedback_200(client: FlaskClient, openapi: OpenAPI, body_validator: OpenAPI) -> None:
    response, sent = post(client, FEEDBACK_PATH, {"feedback": [ACCEPTED, OVERRIDDEN]})
    assert response.status_code == 200, response.get_data(as_text=True)
    body_validator.validate_request(SentRequest(response.request, sent))
    check_response(openapi, response, sent)
    assert response.get_json() == {}


def test_feedback_malformed_400(client: FlaskClient, openapi: OpenAPI) -> None:
    bad = {**ACCEPTED, "outcomeTimestamp": "yesterday"}
    response, sent = post(client, FEEDBACK_PATH, {"feedback": [OVERRIDDEN, bad]})
    assert response.status_code == 400
    check_response(openapi, response, sent)
    assert issues(response)[0]["expression"] == ["feedback[1].outcomeTimestamp"]


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status"),
    [
        ("/cds-services/no-such-service/feedback", {"feedback": [ACCEPTED]}, None, 404),
        (FEEDBACK_PATH, b"feedback", "text/plain", 415),
        (FEEDBACK_PATH, {"feedback": [OVERRIDDEN] * 1001}, None, 413),
    ],
)
def test_feedback_errors(
    client: FlaskClient, openapi: OpenAPI, path: str, body: Any, content_type: str, status: int
) -> None:
    response, sent = post(client, path, body, content_type or "application/json")
    assert response.status_code == status
    check_response(openapi, response, sent)


def test_feedback_wrong_method_405(client: FlaskClient, openapi: OpenAPI) -> None:
    response = client.get(FEEDBACK_PATH)
    assert response.status_code == 405
    check_response(openapi, response, as_method="post")


def test_feedback_database_unavailable_503(openapi: OpenAPI, tmp_path: Path) -> None:
    """A database without the feedback table (never upgraded) cannot store it."""
    config = Settings(instance_path=tmp_path, allow_unauthenticated=True)
    with create_app(config, clock=lambda: NOW).test_client() as client:
        response, sent = post(client, FEEDBACK_PATH, {"feedback": [ACCEPTED]})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    check_response(openapi, response, sent)
    assert issues(response)[0]["code"] == "transient"
