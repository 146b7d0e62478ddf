"""Small readers for raw FHIR JSON: references and clinical dates."""

from __future__ import annotations

import datetime as dt
import re
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


def to_date(value: object, today: dt.date) -> dt.date | None:
    """The calendar date (UTC) of a FHIR date, dateTime or instant, parsed by the models.

    A month-precision date ("2026-11") reads as the last day of that month (today at most), so
    that a finding from this month is never taken for an old one; a year alone is too vague and
    reads as unknown.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"(\d{4})-(\d{2})", value)
        if match and 1 <= int(match[2]) <= 12:
            year, month = int(match[1]), int(match[2])
            first_of_next = dt.date(year + month // 12, month % 12 + 1, 1)
            return min(first_of_next - dt.timedelta(days=1), today)
    return None
