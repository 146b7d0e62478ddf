"""Extract coded findings from the patient's FHIR resources.

Candidates are picked on the raw JSON by a set lookup of their codes; only those are parsed
with the FHIR R4 models (`fhir.resources.R4B`), which costs about 100 µs a resource. A resource
that does not validate, or is about another patient, is skipped and reported, never fatal.
Record states that mean "not a finding" (entered in error, refuted, resolved, absent, …) are
applied here, before any rule sees the data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.observation import Observation
from pydantic import ValidationError

from .codes import CANONICAL_SYSTEMS, ICD10CM, LOINC, normalize_code, normalize_system
from .knowledge import Coding, KnowledgeBase
from .labs import Reading, read_measure
from .records import about_patient, resource_reference, to_date

MODELS = {"Condition": Condition, "Observation": Observation}
#: The elements the rules read, per resource type. Only these are validated and parsed: a
#: malformed element that no rule reads (a narrative, a performer) never hides a red flag, and
#: validation costs less.
READ_ELEMENTS = {
    "Condition": (
        "resourceType",
        "id",
        "subject",
        "code",
        "clinicalStatus",
        "verificationStatus",
        "onsetDateTime",
        "onsetPeriod",
        "onsetAge",
        "onsetRange",
        "onsetString",
        "recordedDate",
        "abatementDateTime",
        "abatementAge",
        "abatementPeriod",
        "abatementRange",
        "abatementString",
    ),
    "Observation": (
        "resourceType",
        "id",
        "subject",
        "status",
        "code",
        "valueQuantity",
        "valueCodeableConcept",
        "valueBoolean",
        "dataAbsentReason",
        "interpretation",
        "referenceRange",
        "effectiveDateTime",
        "effectivePeriod",
        "effectiveInstant",
        "issued",
    ),
}


@dataclass(frozen=True)
class Dated:
    """One date of a record: its kind (onset, recorded, taken, reported) and the day."""

    kind: str
    day: dt.date


@dataclass(frozen=True)
class Finding:
    """A coded condition or observation that is present and current for the patient."""

    reference: str
    resource_type: str
    valuesets: frozenset[str]
    coding: Coding
    dates: tuple[Dated, ...]  # clinical date first (onset / taken), then recorded / reported
    clinical_status: str | None = None
    qualifier: str | None = None  # e.g. "provisional", "recurrence"

    @property
    def date(self) -> dt.date | None:
        """The clinical date: onset (taken) when known, else the recording date."""
        return self.dates[0].day if self.dates else None


@dataclass(frozen=True)
class Measurement:
    """A quantitative result of one of the knowledge's measures."""

    reference: str
    measure: str
    coding: Coding
    reading: Reading
    dates: tuple[Dated, ...]

    @property
    def date(self) -> dt.date | None:
        return self.dates[0].day if self.dates else None


@dataclass(frozen=True)
class Skipped:
    reference: str
    reason: str


@dataclass
class PatientFindings:
    findings: list[Finding] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    examined: int = 0


def _lookup(kb: KnowledgeBase, system: str, code: str) -> tuple[str, str, frozenset[str] | None]:
    """The value sets holding a coding: exact first, then in normalised form (aliases, ICD dots)."""
    hits = kb.code_index.get((system, code))
    if hits is None and (system not in CANONICAL_SYSTEMS or system == ICD10CM):
        system = normalize_system(system)
        code = normalize_code(system, code)
        hits = kb.code_index.get((system, code))
    return system, code, hits


def _matching_valuesets(
    kb: KnowledgeBase, concepts: Iterable[object]
) -> tuple[frozenset[str], Coding | None]:
    """The value sets any coding of the concepts belongs to, and the first such coding.

    This runs on every resource of the chart, so it reads the raw JSON with plain type checks.
    """
    valuesets: frozenset[str] = frozenset()
    first: Coding | None = None
    for concept in concepts:
        if type(concept) is not dict:
            continue
        codings = concept.get("coding")
        if type(codings) is not list:
            continue
        for coding in codings:
            if type(coding) is not dict:
                continue
            system, code = coding.get("system"), coding.get("code")
            if type(system) is not str or type(code) is not str:
                continue
            system, code, hits = _lookup(kb, system, code)
            if hits:
                valuesets = valuesets | hits
                if first is None:
                    display = coding.get("display")
                    shown = display if type(display) is str and display else None
                    first = Coding(system, code, shown or _knowledge_display(kb, hits, code))
    return valuesets, first


def _knowledge_display(kb: KnowledgeBase, valuesets: frozenset[str], code: str) -> str:
    for vs_id in sorted(valuesets):
        for coding in kb.valuesets[vs_id].codes:
            if coding.code == code:
                return coding.display
    return code


def _measure_coding(kb: KnowledgeBase, concept: object) -> tuple[str, Coding] | None:
    if type(concept) is not dict or type(concept.get("coding")) is not list:
        return None
    for coding in concept["coding"]:
        if type(coding) is not dict or coding.get("code") not in kb.measure_index:
            continue
        if normalize_system(coding.get("system")) != LOINC:
            continue
        code = coding["code"]
        display = coding.get("display")
        shown = display if type(display) is str and display else kb.measure_index_display(code)
        return kb.measure_index[code], Coding(LOINC, code, shown)
    return None


def _validate(resource: Mapping[str, Any]) -> Any:
    """The FHIR R4 model of the elements the rules read (a ValidationError when malformed)."""
    rtype = resource["resourceType"]
    read = {k: resource[k] for k in READ_ELEMENTS[rtype] if k in resource}
    return MODELS[rtype].model_validate(read)


def _dated(
    candidates: Iterable[tuple[object, str]], today: dt.date, tolerance: dt.timedelta
) -> tuple[Dated, ...]:
    """The usable dates among (value, kind) candidates, in order; far-future dates are unusable."""
    latest_allowed = today + tolerance
    out = []
    for value, kind in candidates:
        day = to_date(value, today)
        if day is not None and day <= latest_allowed and kind not in (d.kind for d in out):
            out.append(Dated(kind, day))
    return tuple(out)


def _model_code(concept: Any) -> str | None:
    """The first code of a parsed CodeableConcept (status elements)."""
    for coding in (concept.coding or []) if concept is not None else []:
        if coding.code:
            return str(coding.code)
    return None


def _condition_finding(
    kb: KnowledgeBase, cond: Condition, valuesets: frozenset[str], coding: Coding, today: dt.date
) -> Finding | str:
    policy = kb.policy
    verification = _model_code(cond.verificationStatus)
    clinical = _model_code(cond.clinicalStatus)
    if verification in policy.excluded_verification:
        return f"verification status {verification}"
    if clinical in policy.excluded_clinical:
        return f"clinical status {clinical}"
    abated = any(
        getattr(cond, name) is not None
        for name in (
            "abatementDateTime",
            "abatementAge",
            "abatementPeriod",
            "abatementRange",
            "abatementString",
        )
    )
    if clinical is None and abated and policy.abatement_ends_condition:
        return "abated"
    onset = cond.onsetDateTime or (cond.onsetPeriod.start if cond.onsetPeriod else None)
    tolerance = dt.timedelta(hours=policy.future_tolerance_hours)
    dates = _dated([(onset, "onset"), (cond.recordedDate, "recorded")], today, tolerance)
    qualifier = verification if verification not in (None, "confirmed") else None
    if clinical in ("recurrence", "relapse"):
        qualifier = clinical
    return Finding(
        reference=f"Condition/{cond.id}" if cond.id else "Condition (no id)",
        resource_type="Condition",
        valuesets=valuesets,
        coding=coding,
        dates=dates,
        clinical_status=clinical,
        qualifier=qualifier,
    )


def _observation_dates(kb: KnowledgeBase, obs: Observation, today: dt.date) -> tuple[Dated, ...]:
    start = obs.effectivePeriod.start if obs.effectivePeriod else None
    tolerance = dt.timedelta(hours=kb.policy.future_tolerance_hours)
    candidates = [
        (obs.effectiveDateTime, "taken"),
        (obs.effectiveInstant, "taken"),
        (start, "taken"),
        (obs.issued, "reported"),
    ]
    return _dated(candidates, today, tolerance)


def _interpretation_codes(obs: Observation) -> frozenset[str]:
    codes = set()
    for concept in obs.interpretation or []:
        codes.update(c.code for c in concept.coding or [] if c.code)
    return frozenset(codes)


def _absence_reason(kb: KnowledgeBase, obs: Observation) -> str | None:
    """Why an observation of a finding records it as absent, or None when it is present."""
    if obs.dataAbsentReason is not None:
        return "data absent"
    if obs.valueBoolean is False:
        return "recorded as absent (valueBoolean false)"
    if obs.valueCodeableConcept is not None:
        for coding in obs.valueCodeableConcept.coding or []:
            system = normalize_system(coding.system)
            if (system, normalize_code(system, coding.code)) in kb.policy.absent_values:
                return "recorded as absent"
    if _interpretation_codes(obs) & kb.policy.negative_interpretations:
        return "interpreted as negative"
    return None


def _observation_finding(
    kb: KnowledgeBase, obs: Observation, valuesets: frozenset[str], coding: Coding, today: dt.date
) -> Finding | str:
    if obs.status in kb.policy.excluded_observation_status:
        return f"status {obs.status}"
    absent = _absence_reason(kb, obs)
    if absent:
        return absent
    return Finding(
        reference=f"Observation/{obs.id}" if obs.id else "Observation (no id)",
        resource_type="Observation",
        valuesets=valuesets,
        coding=coding,
        dates=_observation_dates(kb, obs, today),
        qualifier="preliminary" if obs.status == "preliminary" else None,
    )


def _measurement(
    kb: KnowledgeBase, obs: Observation, measure_id: str, coding: Coding, today: dt.date
) -> Measurement | str:
    if obs.status in kb.policy.excluded_observation_status:
        return f"status {obs.status}"
    if obs.dataAbsentReason is not None:
        return "data absent"
    reading = read_measure(kb.measures[measure_id], obs, _interpretation_codes(obs))
    if reading is None:
        return "no quantity value"
    return Measurement(
        reference=f"Observation/{obs.id}" if obs.id else "Observation (no id)",
        measure=measure_id,
        coding=coding,
        reading=reading,
        dates=_observation_dates(kb, obs, today),
    )


def _first_error(exc: ValidationError) -> str:
    """Where validation failed, without the offending value (it may hold patient data)."""
    errors = exc.errors(include_url=False, include_input=False)
    where = ".".join(str(p) for p in errors[0]["loc"]) if errors else "?"
    return f"invalid FHIR R4 {where}: {errors[0]['msg'] if errors else ''}".strip()


def extract_findings(
    kb: KnowledgeBase, resources: Iterable[Mapping[str, Any]], patient_id: str, today: dt.date
) -> PatientFindings:
    """The patient's findings and measurements; everything else is skipped or ignored."""
    out = PatientFindings()
    for resource in resources:
        out.examined += 1
        rtype = resource.get("resourceType")
        if rtype not in MODELS:
            continue
        concepts = [resource.get("code")]
        if rtype == "Observation":
            concepts.append(resource.get("valueCodeableConcept"))
            measure = _measure_coding(kb, resource.get("code"))
        else:
            measure = None
        valuesets, coding = _matching_valuesets(kb, concepts)
        if coding is None and measure is None:
            continue
        reference = resource_reference(resource)
        if not about_patient(resource, patient_id):
            out.skipped.append(Skipped(reference, "about another patient or no subject"))
            continue
        try:
            model = _validate(resource)
        except ValidationError as exc:
            out.skipped.append(Skipped(reference, _first_error(exc)))
            continue
        results: list[Finding | Measurement | str] = []
        if coding is not None:
            builder = _condition_finding if rtype == "Condition" else _observation_finding
            results.append(builder(kb, model, valuesets, coding, today))
        if measure is not None:
            results.append(_measurement(kb, model, measure[0], measure[1], today))
        for result in results:
            if isinstance(result, str):
                out.skipped.append(Skipped(reference, result))
            elif isinstance(result, Finding):
                out.findings.append(result)
            else:
                out.measurements.append(result)
    return out
