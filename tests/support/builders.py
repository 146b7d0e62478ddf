"""Builders of FHIR resources and CDS Hooks requests for the tests, dated on a fixed clock."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

FIXED_NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
TODAY = FIXED_NOW.date()
PATIENT_ID = "bs-test-1"
PATIENT_VIEW = "back-spasm-patient-view"
ENCOUNTER_START = "back-spasm-encounter-start"


def days_ago(days: int) -> str:
    return (TODAY - dt.timedelta(days=days)).isoformat()


def condition(
    code: str,
    *,
    system: str = "http://hl7.org/fhir/sid/icd-10-cm",
    onset_days_ago: int | None = 2,
    recorded_days_ago: int | None = None,
    clinical: str | None = "active",
    verification: str | None = None,
    patient: str = PATIENT_ID,
    rid: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Condition for the test patient, dated relative to the fixed clock."""
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid or f"c-{uuid.uuid4().hex[:8]}",
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": system, "code": code}]},
    }
    if clinical:
        resource["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": clinical,
                }
            ]
        }
    if verification:
        resource["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        }
    if onset_days_ago is not None:
        resource["onsetDateTime"] = days_ago(onset_days_ago)
    if recorded_days_ago is not None:
        resource["recordedDate"] = days_ago(recorded_days_ago)
    resource.update(extra)
    return resource


def observation(
    code: str,
    *,
    system: str = "http://loinc.org",
    days: int = 1,
    status: str = "final",
    patient: str = PATIENT_ID,
    rid: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid or f"o-{uuid.uuid4().hex[:8]}",
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": system, "code": code}]},
        "effectiveDateTime": days_ago(days),
    }
    resource.update(extra)
    return resource


RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def medication(
    code: str,
    *,
    kind: str = "MedicationRequest",
    status: str = "active",
    started_days_ago: int = 200,
    route: str | None = None,
    patient: str = PATIENT_ID,
    **extra: Any,
) -> dict[str, Any]:
    """A MedicationRequest (or MedicationStatement) coded in RxNorm, started days ago."""
    resource: dict[str, Any] = {
        "resourceType": kind,
        "id": f"m-{uuid.uuid4().hex[:8]}",
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
    }
    if kind == "MedicationRequest":
        resource["intent"] = "order"
        resource["authoredOn"] = days_ago(started_days_ago)
    else:
        resource["effectivePeriod"] = {"start": days_ago(started_days_ago)}
    if route:
        dosage = [{"route": {"coding": [{"system": "http://snomed.info/sct", "code": route}]}}]
        resource["dosageInstruction" if kind == "MedicationRequest" else "dosage"] = dosage
    resource.update(extra)
    return resource


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


def searchset(resources: list[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


def hook_body(
    conditions: list[Mapping[str, Any]] | None = None,
    observations: list[Mapping[str, Any]] | None = None,
    *,
    hook: str = "patient-view",
    patient: str = PATIENT_ID,
    medications: list[Mapping[str, Any]] | None = None,
    birth_date: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A CDS Hooks request with every prefetch key filled (observations go to both keys' bundle)."""
    context: dict[str, Any] = {"userId": "Practitioner/dr-1", "patientId": patient}
    if hook == "encounter-start":
        context["encounterId"] = "enc-1"
    obs = list(observations or [])
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": patient}
            | ({"birthDate": birth_date} if birth_date else {}),
            "conditions": searchset(list(conditions or [])),
            "labs": searchset(
                [o for o in obs if o["code"]["coding"][0]["system"] == "http://loinc.org"]
            ),
            "findings": searchset(
                [o for o in obs if o["code"]["coding"][0]["system"] != "http://loinc.org"]
            ),
            "vitals": searchset([]),
            "medication_requests": searchset(
                [m for m in medications or [] if m["resourceType"] == "MedicationRequest"]
            ),
            "medication_statements": searchset(
                [m for m in medications or [] if m["resourceType"] == "MedicationStatement"]
            ),
        },
    }
    body.update(overrides)
    return body


def cards_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


SNOMED = "http://snomed.info/sct"
