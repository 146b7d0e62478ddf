"""Synthetic charts for the benchmark: many irrelevant resources and a few that matter.

A chart of N resources is a patient-view request whose prefetch holds N Conditions and
Observations: about 1 in 5 Conditions and 4 in 5 Observations (vital signs and routine labs),
of which only a handful are findings the rules read (a back spasm, a new red flag, a low
potassium result, a stenosis), as in a real chart where most of the record is unrelated.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

#: Common, unrelated problems (ICD-10-CM).
OTHER_CONDITIONS = [
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("K21.9", "Gastro-esophageal reflux disease without esophagitis"),
    ("F41.1", "Generalized anxiety disorder"),
    ("M17.11", "Unilateral primary osteoarthritis, right knee"),
    ("E66.9", "Obesity, unspecified"),
    ("N39.0", "Urinary tract infection, site not specified"),
    ("J06.9", "Acute upper respiratory infection, unspecified"),
]
#: Routine results that no rule reads (LOINC, UCUM unit, typical value).
OTHER_OBSERVATIONS = [
    ("8867-4", "Heart rate", "/min", 72.0, "vital-signs"),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 128.0, "vital-signs"),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 82.0, "vital-signs"),
    ("8310-5", "Body temperature", "Cel", 36.8, "vital-signs"),
    ("29463-7", "Body weight", "kg", 81.0, "vital-signs"),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 98.0, "laboratory"),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.9, "laboratory"),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 14.1, "laboratory"),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 139.0, "laboratory"),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 6.1, "laboratory"),
]


def _condition(pid: str, rid: str, code: str, display: str, onset: dt.date) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": ICD, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset.isoformat(),
        "recordedDate": onset.isoformat(),
    }


def _observation(
    pid: str,
    rid: str,
    code: str,
    display: str,
    unit: str,
    value: float,
    category: str,
    when: dt.date,
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": f"{when.isoformat()}T09:30:00Z",
        "issued": f"{when.isoformat()}T11:02:00Z",
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def _relevant(pid: str, today: dt.date) -> list[dict[str, Any]]:
    """The few resources the rules read: one of each card theme's triggers."""
    days = dt.timedelta
    return [
        _condition(pid, "spasm", "M62.830", "Muscle spasm of back", today - days(4)),
        _condition(pid, "retention", "R33.9", "Retention of urine, unspecified", today - days(2)),
        _condition(
            pid,
            "stenosis",
            "M48.061",
            "Spinal stenosis, lumbar region without neurogenic claudication",
            today - days(700),
        ),
        _observation(
            pid,
            "k-low",
            "2823-3",
            "Potassium [Moles/volume] in Serum or Plasma",
            "mmol/L",
            3.1,
            "laboratory",
            today - days(1),
        ),
    ]


def chart_resources(
    size: int, today: dt.date, pid: str = "bench-1", seed: int = 7
) -> list[dict[str, Any]]:
    """`size` resources: the relevant few, then unrelated problems and results."""
    rng = random.Random(seed + size)
    resources = _relevant(pid, today)[: max(0, min(4, size))]
    n = len(resources)
    while len(resources) < size:
        when = today - dt.timedelta(days=rng.randint(0, 3650))
        if rng.random() < 0.2:
            code, display = rng.choice(OTHER_CONDITIONS)
            resources.append(_condition(pid, f"c{n}", code, display, when))
        else:
            code, display, unit, value, category = rng.choice(OTHER_OBSERVATIONS)
            value = round(value * rng.uniform(0.85, 1.15), 1)
            resources.append(_observation(pid, f"o{n}", code, display, unit, value, category, when))
        n += 1
    return resources


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"https://ehr.example/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def hook_request(size: int, today: dt.date, pid: str = "bench-1") -> dict[str, Any]:
    """A patient-view request carrying a chart of `size` resources in its prefetch."""
    resources = chart_resources(size, today, pid)
    conditions = [r for r in resources if r["resourceType"] == "Condition"]
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    labs = [o for o in observations if o["category"][0]["coding"][0]["code"] == "laboratory"]
    others = [o for o in observations if o not in labs]
    return {
        "hook": "patient-view",
        "hookInstance": "5f1f9c2e-3b7a-4d8e-9c61-2a0b8e6d4f10",
        "context": {"userId": "Practitioner/bench", "patientId": pid},
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "id": pid,
                "gender": "female",
                "birthDate": "1971-03-02",
            },
            "conditions": _searchset(conditions),
            "labs": _searchset(labs),
            "findings": _searchset(others),
        },
    }
