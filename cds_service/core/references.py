"""Small readers for raw FHIR JSON: references and clinical dates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def patient_id_of(reference: object) -> str | None:
    """The Patient id a Reference points at ("Patient/1", "https://x/fhir/Patient/1/_history/2")."""
    if not isinstance(reference, dict):
        return None
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return None
    parts = ref.strip().split("?")[0].split("/")
    for index in range(len(parts) - 1):
        if parts[index] == "Patient" and parts[index + 1]:
            return parts[index + 1]
    return None


def about_patient(resource: Mapping[str, Any], patient_id: str) -> bool:
    """Whether a resource's subject (or patient) is the patient in context."""
    subject = resource.get("subject", resource.get("patient"))
    return patient_id_of(subject) == patient_id


def resource_reference(resource: Mapping[str, Any]) -> str:
    rid = resource.get("id")
    rtype = resource.get("resourceType", "Resource")
    return f"{rtype}/{rid}" if isinstance(rid, str) and rid else f"{rtype} (no id)"
