"""Extract coded findings from the patient's FHIR resources.

Candidates are picked on the raw JSON by a set lookup of their codes. Conditions and the
Observations that record a finding are then read from the raw JSON with plain type checks: what
can be read is read, what cannot is noted, and nothing raises. A resource that matches a red-flag
code but cannot be read at all is kept as an unreadable record to verify, never dropped silently.
Results (labs, scores) are validated with the FHIR R4 models (`fhir.resources.R4B`); an element
that does not validate is left out and the rest is read. A plain result is read by the lean reader
(`lean_measure`), which accepts only what the models accept and defers to them when unsure.

Record states that mean "not a finding" (entered in error, refuted, resolved, abated, recorded
absent) are applied here, before any rule sees the data. The same finding (same code) recorded
several times is one finding with every reference (see `merge_findings`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B.observation import Observation
from pydantic import ValidationError

from .codes import CANONICAL_SYSTEMS, ICD10CM, LOINC, code_key, normalize_code, normalize_system
from .dates import Limits, abatement_day, birth_date, onset_span, parse_day
from .knowledge import Coding, KnowledgeBase, KnownCodes
from .labs import Reading, read_measure
from .lean_measure import lean_observation
from .memo import remember
from .references import patient_id_of, resource_reference

#: The FHIR models parsed here (results only); built at start-up so the first call is not slower.
MODELS = {"Observation": Observation}
#: The elements a lab or score reading needs; only these are validated.
MEASURE_ELEMENTS = (
    "resourceType",
    "id",
    "status",
    "code",
    "valueQuantity",
    "dataAbsentReason",
    "interpretation",
    "referenceRange",
)
#: How a finding's newness is known: from its onset, from its recording (no onset given), or not.
ONSET, RECORDED, UNKNOWN = "onset", "recorded", "unknown"


@dataclass(frozen=True)
class Dated:
    """One date of a record: its kind (onset, recorded, taken, reported) and the day."""

    kind: str
    day: dt.date


@dataclass(frozen=True)
class Finding:
    """A coded condition or observation that is present and current for the patient.

    `when` is the day that decides whether it is new: its onset when one is given and readable,
    else (no onset at all) its recording date. When the onset is given but cannot be read, or no
    date can be read, `when` is None and `not_after` is the earliest recording date, if any: the
    finding began no later than that. `review` is set for a record that is listed for the
    clinician but counts as neither present nor absent: "text" (free text, an uncoded value),
    "unknown" (dataAbsentReason) or "unreadable"; "past" marks a condition that is no longer
    current (kept only to count past episodes).
    """

    references: tuple[str, ...]
    resource_type: str
    valuesets: frozenset[str]
    coding: Coding
    dates: tuple[Dated, ...]  # clinical date first (onset / taken), then recorded / reported
    clinical_status: str | None = None
    #: the clinical status says it is current (policy.yaml `active_clinical`, or a medicine's
    #: `active_status`), and that it has come back after a remission (`recurring_clinical`)
    active: bool = False
    recurring: bool = False
    qualifier: str | None = None  # e.g. "provisional", "recurrence"
    when: dt.date | None = None
    since: dt.date | None = None  # an imprecise onset's first possible day (`when` its last)
    timing: str = UNKNOWN  # ONSET | RECORDED | UNKNOWN
    not_after: dt.date | None = None
    notes: tuple[str, ...] = ()
    review: str | None = None

    @property
    def reference(self) -> str:
        return self.references[0]

    @property
    def date(self) -> dt.date | None:
        """The day that decides newness (see the class docstring)."""
        return self.when


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
    #: records of a finding listed for the clinician to read or verify (`Finding.review` set)
    to_review: list[Finding] = field(default_factory=list)
    #: conditions no longer current (inactive, resolved, remission): past episodes, never alarms
    past: list[Finding] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    examined: int = 0
    #: Patient.birthDate of the patient in context, when it was given and readable
    birth_date: dt.date | None = None
    patient_reference: str = "Patient"


def _lookup(kb: KnowledgeBase, system: str, code: str) -> tuple[str, str, frozenset[str] | None]:
    """The value sets holding a coding: exact first, then in normalised form (aliases, ICD dots)."""
    hits = kb.code_index.get((system, code))
    if hits is None and (system not in CANONICAL_SYSTEMS or system == ICD10CM):
        system = normalize_system(system)
        code = normalize_code(system, code)
        hits = kb.code_index.get((system, code))
    return system, code, hits


def _codings(concept: object) -> list[dict[str, Any]]:
    """The codings of a raw CodeableConcept; a lone coding object (a wrong type) is read too."""
    if type(concept) is not dict:
        return []
    codings = concept.get("coding")
    if type(codings) is dict:
        codings = [codings]
    if type(codings) is not list:
        return []
    if len(codings) == 1 and type(codings[0]) is dict:
        return codings  # the common case: read, never changed, by the callers
    return [c for c in codings if type(c) is dict]


def _matching_valuesets(kb: KnowledgeBase, concept: object) -> tuple[frozenset[str], Coding | None]:
    """The value sets any coding of the concept belongs to, and the first such coding.

    It reads the raw JSON with plain type checks.
    """
    valuesets: frozenset[str] = frozenset()
    first: Coding | None = None
    for coding in _codings(concept):
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
    for coding in _codings(concept):
        code = coding.get("code")
        if type(code) is not str or code not in kb.measure_index:
            continue  # a code that is not text (a list, an object) is no measure's
        if normalize_system(coding.get("system")) != LOINC:
            continue
        display = coding.get("display")
        shown = display if type(display) is str and display else kb.measure_index_display(code)
        return kb.measure_index[code], Coding(LOINC, code, shown)
    return None


def _first_code(concept: object) -> str | None:
    """The first code of a raw status CodeableConcept (a bare code string is read too)."""
    if type(concept) is str:
        return concept.strip() or None
    for coding in _codings(concept):
        if type(coding.get("code")) is str and coding["code"].strip():
            return coding["code"].strip()
    return None


def _short(value: object, limit: int = 80) -> str:
    text = value if type(value) is str else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class _Context:
    """What every record of one call is read against."""

    kb: KnowledgeBase
    patient_id: str
    limits: Limits
    birth: dt.date | None
    #: "Patient/<id>" when `patient_id_of` reads it as the id unchanged (no "/", "?" or padding)
    plain_reference: str | None = None


def _reference(resource: Mapping[str, Any]) -> str:
    return resource_reference(resource)


def _condition_finding(
    ctx: _Context, res: Mapping[str, Any], valuesets: frozenset[str], coding: Coding
) -> Finding | str:
    """A Condition read from raw JSON: a Finding, or why it is not one."""
    policy = ctx.kb.policy
    notes: list[str] = []
    verification = _first_code(res.get("verificationStatus"))
    clinical = _first_code(res.get("clinicalStatus"))
    if "verificationStatus" in res and verification is None:
        notes.append("verification status unreadable")
    if "clinicalStatus" in res and clinical is None:
        notes.append("clinical status unreadable")
    if verification in policy.excluded_verification:
        return f"verification status {verification}"
    past = clinical in policy.excluded_clinical
    recurring = clinical in policy.recurring_clinical
    abated_by, abated_on = abatement_day(res, ctx.birth, ctx.limits)
    if abated_by and not recurring:
        if abated_on is not None and abated_on <= ctx.limits.today:
            return f"abated {abated_on.isoformat()}"
        if abated_on is None and clinical is None and policy.abatement_ends_condition:
            return "abated"
    onset_by, onset_from, onset_on = onset_span(res, ctx.birth, ctx.limits)
    recorded = parse_day(res.get("recordedDate"), ctx.limits)
    if "recordedDate" in res and recorded is None:
        notes.append(f"recorded date unreadable ({_short(res['recordedDate'])})")
    if onset_by == "onsetString":
        notes.append(f"onset as text: {_short(res[onset_by])}")
    elif onset_by and onset_on is None:
        notes.append(f"onset unreadable ({_short(res[onset_by])})")
    since = onset_from if onset_from != onset_on else None
    onset_kind = "onset" if since is None else f"onset between {since.isoformat()} and"
    dates = tuple(
        Dated(kind, day) for kind, day in ((onset_kind, onset_on), ("recorded", recorded)) if day
    )
    if onset_on is not None:
        when, timing, not_after = onset_on, ONSET, None
    elif onset_by is None and recorded is not None:
        when, timing, not_after = recorded, RECORDED, None
    else:
        when, timing, not_after = None, UNKNOWN, recorded
    shown = verification is not None and verification not in policy.unqualified_verification
    qualifier = verification if shown else None
    if recurring or past:
        qualifier = clinical
    return Finding(
        references=(_reference(res),),
        resource_type="Condition",
        valuesets=valuesets,
        coding=coding,
        dates=dates,
        clinical_status=clinical,
        active=clinical in policy.active_clinical,
        recurring=recurring,
        qualifier=qualifier,
        when=when,
        since=since,
        timing=timing,
        not_after=not_after,
        notes=tuple(notes),
        review="past" if past else None,
    )


def _observation_dates(ctx: _Context, res: Mapping[str, Any]) -> tuple[Dated, ...]:
    """When it was taken (the first readable of the effective[x] dates), then reported."""
    limits = ctx.limits
    taken = parse_day(res.get("effectiveDateTime"), limits)
    if taken is None:
        taken = parse_day(res.get("effectiveInstant"), limits)
    if taken is None:
        period = res.get("effectivePeriod")
        taken = parse_day(period.get("start"), limits) if type(period) is dict else None
    reported = parse_day(res.get("issued"), limits)
    if taken is None:
        return () if reported is None else (Dated("reported", reported),)
    if reported is None:
        return (Dated("taken", taken),)
    return (Dated("taken", taken), Dated("reported", reported))


def _interpretation_codes(res: Mapping[str, Any]) -> frozenset[str]:
    concepts = res.get("interpretation")
    if type(concepts) is not list:
        return frozenset()
    return frozenset(
        c["code"] for concept in concepts for c in _codings(concept) if type(c.get("code")) is str
    )


def _coded_value(kb: KnowledgeBase, concept: object) -> str | None:
    """How a coded value reads: "absent", "unknown", "present", or None when it has no code."""
    codes = [
        (normalize_system(c.get("system")), c.get("code"))
        for c in _codings(concept)
        if type(c.get("code")) is str
    ]
    if not codes:
        return None
    keyed = {(system, normalize_code(system, code)) for system, code in codes}
    if keyed & kb.policy.absent_values:
        return "absent"
    if keyed & kb.policy.unknown_values:
        return "unknown"
    return "present"


def _value_text(res: Mapping[str, Any]) -> str | None:
    """The free text of an Observation about a finding: valueString, an uncoded value, a note."""
    for name, value in res.items():
        if not name.startswith("value") or name in ("valueBoolean", "valueCodeableConcept"):
            continue
        return f"{name} {_short(value)}"
    concept = res.get("valueCodeableConcept")
    if type(concept) is dict and type(concept.get("text")) is str:
        return f"valueCodeableConcept text {_short(concept['text'])}"
    notes = res.get("note")
    if type(notes) is list:
        texts = [n["text"] for n in notes if type(n) is dict and type(n.get("text")) is str]
        if texts:
            return f"note {_short(' / '.join(texts))}"
    return None


def _observation_reading(
    kb: KnowledgeBase, res: Mapping[str, Any], value_matched: bool
) -> tuple[str, str | None]:
    """Whether an observation records its finding as "present", "absent", "unknown" or "text".

    Only a coded value or a boolean says present or absent; free text says neither.
    """
    if value_matched:
        return "present", None  # the value itself is the finding (e.g. an AVPU response)
    if "dataAbsentReason" in res:
        reason = _first_code(res.get("dataAbsentReason")) or "unreadable"
        return "unknown", f"data absent ({_short(reason)})"
    value = res.get("valueBoolean")
    if type(value) is bool:
        return ("present" if value else "absent"), None
    coded = _coded_value(kb, res.get("valueCodeableConcept"))
    if coded == "unknown":
        return "unknown", "value recorded as unknown"
    if coded is not None:
        return coded, None
    if _interpretation_codes(res) & kb.policy.negative_interpretations:
        return "absent", None
    text = _value_text(res)
    if text is not None:
        return "text", text
    return "present", None  # the observation of the finding itself, with no value


def _observation_finding(
    ctx: _Context,
    res: Mapping[str, Any],
    valuesets: frozenset[str],
    coding: Coding,
    value_matched: bool,
) -> Finding | str:
    status = res.get("status")
    if status in ctx.kb.policy.excluded_observation_status:
        return f"status {status}"
    reading, text = _observation_reading(ctx.kb, res, value_matched)
    if reading == "absent":
        return "recorded as absent"
    dates = _observation_dates(ctx, res)
    notes = (text,) if text else ()
    if type(status) is not str:
        notes += ("status unreadable",)
    return Finding(
        references=(_reference(res),),
        resource_type="Observation",
        valuesets=valuesets,
        coding=coding,
        dates=dates,
        qualifier=status if status in ctx.kb.policy.qualified_observation_status else None,
        when=dates[0].day if dates else None,
        timing=RECORDED if dates else UNKNOWN,
        notes=notes,
        review=None if reading == "present" else reading,
    )


MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement")


def _period_day(ctx: _Context, period: object, end: str) -> dt.date | None:
    return parse_day(period.get(end), ctx.limits) if type(period) is dict else None


def _medication_dates(ctx: _Context, res: Mapping[str, Any]) -> tuple[Dated, ...]:
    """When the medicine was started (or prescribed), then when it was recorded."""
    candidates = [
        (res.get("effectiveDateTime"), "started"),
        (_period_day(ctx, res.get("effectivePeriod"), "start"), "started"),
        (res.get("authoredOn"), "prescribed"),
        (res.get("dateAsserted"), "recorded"),
    ]
    out: list[Dated] = []
    for value, kind in candidates:
        day = value if isinstance(value, dt.date) else parse_day(value, ctx.limits)
        if day is not None and kind not in (d.kind for d in out):
            out.append(Dated(kind, day))
    return tuple(out)


def _medication_end(ctx: _Context, res: Mapping[str, Any]) -> dt.date | None:
    """The day a medicine's period (or its prescription's validity) ended, if given."""
    dispense = res.get("dispenseRequest")
    validity = dispense.get("validityPeriod") if type(dispense) is dict else None
    return _period_day(ctx, res.get("effectivePeriod"), "end") or _period_day(ctx, validity, "end")


def _route_keys(res: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (system, code) of every route the record gives for the medicine."""
    dosages = res.get("dosageInstruction", res.get("dosage"))
    if type(dosages) is not list:
        return set()
    return {
        (normalize_system(c.get("system")), c["code"])
        for d in dosages
        if type(d) is dict
        for c in _codings(d.get("route"))
        if type(c.get("code")) is str
    }


def _medication_finding(
    ctx: _Context, res: Mapping[str, Any], valuesets: frozenset[str], coding: Coding
) -> Finding | str:
    """A medicine the patient takes, read from raw JSON: a Finding, or why it does not count."""
    policy = ctx.kb.policy
    status = res.get("status")
    notes: list[str] = [] if type(status) is str else ["status unreadable"]
    if status in policy.excluded_medication_status:
        return f"status {status}"
    dates = _medication_dates(ctx, res)
    end = _medication_end(ctx, res)
    last = end or max((d.day for d in dates), default=None)
    recent = policy.medication_recent_days
    if status in policy.ended_medication_status and (
        last is None or (ctx.limits.today - last).days > recent
    ):
        return f"status {status}, ended {last.isoformat() if last else 'on an unknown day'}"
    if end is not None and (ctx.limits.today - end).days > recent:
        return f"ended {end.isoformat()}"
    routes = _route_keys(res)
    kept = frozenset(v for v in valuesets if not routes & ctx.kb.valuesets[v].excluded_routes)
    if not kept:
        return "given by a route its value sets leave out"
    started = next((d.day for d in dates if d.kind in ("started", "prescribed")), None)
    if end is not None:
        notes.append(f"until {end.isoformat()}")
    return Finding(
        references=(_reference(res),),
        resource_type=str(res.get("resourceType")),
        valuesets=kept,
        coding=coding,
        dates=dates,
        # an active prescription is current whenever it was written (like an active condition)
        clinical_status=status if status in policy.active_medication_status else None,
        active=status in policy.active_medication_status,
        qualifier=status if status in policy.ended_medication_status else None,
        when=started,
        timing=ONSET if started else UNKNOWN,
        notes=tuple(notes),
    )


def _unreadable(
    res: Mapping[str, Any], valuesets: frozenset[str], coding: Coding, why: str
) -> Finding:
    """A record holding a finding's code that cannot be read: to be verified by the clinician."""
    rtype = res.get("resourceType")
    return Finding(
        references=(_reference(res),),
        resource_type=rtype if type(rtype) is str else "Resource",
        valuesets=valuesets,
        coding=coding,
        dates=(),
        notes=(why,),
        review="unreadable",
    )


def _validate_measure(res: Mapping[str, Any]) -> tuple[Observation, list[str]]:
    """The Observation model of a result's elements; elements that do not validate are left out."""
    read = {k: res[k] for k in MEASURE_ELEMENTS if k in res}
    dropped: list[str] = []
    while True:
        try:
            return Observation.model_validate(read), dropped
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]} & (
                set(read) - {"resourceType", "code"}
            )
            if not bad:
                raise
            for name in bad:
                read.pop(name)
                dropped.append(name)


def _measurement(
    ctx: _Context, res: Mapping[str, Any], measure_id: str, coding: Coding
) -> Measurement | str:
    status = res.get("status")
    if status in ctx.kb.policy.excluded_observation_status:
        return f"status {status}"
    if "dataAbsentReason" in res:
        return "data absent"
    obs: Any = lean_observation(res, MEASURE_ELEMENTS)
    if obs is None:  # not certainly plain: the FHIR models validate it
        try:
            obs, _ = _validate_measure(res)
        except ValidationError as exc:
            return _first_error(exc)
    reading = read_measure(ctx.kb.measures[measure_id], obs, _interpretation_codes(res))
    if reading is None:
        return "no quantity value"
    return Measurement(
        reference=_reference(res),
        measure=measure_id,
        coding=coding,
        reading=reading,
        dates=_observation_dates(ctx, res),
    )


def _first_error(exc: ValidationError) -> str:
    """Where validation failed, without the offending value (it may hold patient data)."""
    errors = exc.errors(include_url=False, include_input=False)
    where = ".".join(str(p) for p in errors[0]["loc"]) if errors else "?"
    return f"invalid FHIR R4 {where}: {errors[0]['msg'] if errors else ''}".strip()


def _call_context(
    kb: KnowledgeBase, resources: list[Mapping[str, Any]], patient_id: str, today: dt.date
) -> _Context:
    birth = None
    for res in resources:
        if (
            type(res) is dict
            and res.get("resourceType") == "Patient"
            and res.get("id") == patient_id
        ):
            birth = birth_date(res.get("birthDate"), today)
    earliest = max(dt.date(kb.policy.earliest_clinical_year, 1, 1), birth or dt.date.min)
    latest = today + dt.timedelta(hours=kb.policy.future_tolerance_hours)
    return _Context(kb, patient_id, Limits(today, earliest, latest), birth, _plain(patient_id))


def _plain(patient_id: str) -> str | None:
    """The reference Patient/<id> when `patient_id_of` reads it back as the id, else None."""
    reference = f"Patient/{patient_id}"
    return reference if patient_id_of({"reference": reference}) == patient_id else None


def _subject_problem(ctx: _Context, res: Mapping[str, Any]) -> str | None:
    """None when the record is the patient's; else "other" or why its subject cannot be read."""
    subject = res.get("subject", res.get("patient"))
    plain = ctx.plain_reference
    if plain is not None and type(subject) is dict and subject.get("reference") == plain:
        return None  # the plain "Patient/<id>", which `patient_id_of` reads as the id
    named = patient_id_of(subject)
    if named == ctx.patient_id:
        return None
    if named is not None:
        return "other"
    return "subject unreadable or missing"


def _read_one(ctx: _Context, res: Mapping[str, Any], out: PatientFindings) -> None:
    rtype = res.get("resourceType")
    medication = rtype in MEDICATION_TYPES
    concept = res.get("medicationCodeableConcept" if medication else "code")
    valuesets, coding = _matching_valuesets(ctx.kb, concept)
    value_matched = False
    measure = None
    if rtype == "Observation":
        measure = _measure_coding(ctx.kb, concept)
        if coding is None:
            valuesets, coding = _matching_valuesets(ctx.kb, res.get("valueCodeableConcept"))
            value_matched = coding is not None
    if coding is None and measure is None:
        return
    reference = _reference(res)
    problem = _subject_problem(ctx, res)
    if problem == "other":
        out.skipped.append(Skipped(reference, "about another patient"))
        return
    if problem is not None:
        if coding is not None:
            out.to_review.append(_unreadable(res, valuesets, coding, problem))
        out.skipped.append(Skipped(reference, problem))
        return
    results: list[Finding | Measurement | str] = []
    if coding is not None:
        try:
            if rtype == "Condition":
                results.append(_condition_finding(ctx, res, valuesets, coding))
            elif medication:
                results.append(_medication_finding(ctx, res, valuesets, coding))
            else:
                results.append(_observation_finding(ctx, res, valuesets, coding, value_matched))
        except Exception as exc:  # a record that cannot be read is shown, not fatal
            results.append(
                _unreadable(res, valuesets, coding, f"cannot be read ({type(exc).__name__})")
            )
    if measure is not None:
        try:
            results.append(_measurement(ctx, res, measure[0], measure[1]))
        except Exception as exc:
            results.append(f"result cannot be read ({type(exc).__name__})")
    for result in results:
        if isinstance(result, str):
            out.skipped.append(Skipped(reference, result))
        elif isinstance(result, Measurement):
            out.measurements.append(result)
        elif result.review == "past":
            out.past.append(result)
            out.skipped.append(Skipped(reference, f"clinical status {result.clinical_status}"))
        elif result.review is not None:
            out.to_review.append(result)
        else:
            out.findings.append(result)


def extract_findings(
    kb: KnowledgeBase, resources: Iterable[Mapping[str, Any]], patient_id: str, today: dt.date
) -> PatientFindings:
    """The patient's findings and measurements; everything else is skipped or ignored.

    A resource none of whose codes the knowledge reads is passed over unread (`_may_match`):
    the full reader would find no value set and no measure in it and leave no trace either.
    """
    resources = list(resources)
    ctx = _call_context(kb, resources, patient_id, today)
    out = PatientFindings(birth_date=ctx.birth, patient_reference=f"Patient/{patient_id}")
    out.examined = len(resources)
    known = kb.known_codes
    for resource in resources:
        if type(resource) is dict and _may_match(known, resource):
            _read_one(ctx, resource, out)
    out.findings = merge_findings(out.findings)
    return out


#: Systems whose codes `_lookup` compares exactly (no alias, no ICD-10-CM reformatting).
_EXACT_SYSTEMS = CANONICAL_SYSTEMS - {ICD10CM}


def _may_match(known: KnownCodes, res: dict[str, Any]) -> bool:
    """Whether any coding `_read_one` looks at may hold a code of the knowledge.

    False only when it certainly holds none: every code is a string that is not one of the
    knowledge's, in no spelling `_lookup` would normalise to one (`code_key`). Anything odd
    reads fully. It allocates no container, so that passing over a large chart does not wake
    the collector; the common shapes are read inline, as this runs on every resource.
    """
    rtype = res.get("resourceType")
    if rtype == "Observation" or rtype == "Condition":
        concept = res.get("code")
    elif rtype in MEDICATION_TYPES:
        concept = res.get("medicationCodeableConcept")
    else:
        return False
    if type(concept) is dict:
        codings = concept.get("coding")
        if type(codings) is list:
            codes = known.codes
            for coding in codings:
                if type(coding) is not dict:
                    continue
                code = coding.get("code")
                if type(code) is str and code not in codes:
                    system = coding.get("system")
                    if type(system) is not str or system in _EXACT_SYSTEMS:
                        continue  # a plain miss: the common case
                if _coding_may_match(known, coding):
                    return True
        elif type(codings) is dict and _coding_may_match(known, codings):
            return True
    if rtype != "Observation":
        return False
    value = res.get("valueCodeableConcept")
    return value is not None and _concept_may_match(known, value)


def _concept_may_match(known: KnownCodes, concept: object) -> bool:
    if type(concept) is not dict:
        return False
    codings = concept.get("coding")
    if type(codings) is dict:
        return _coding_may_match(known, codings)
    if type(codings) is not list:
        return False
    for coding in codings:  # noqa: SIM110 (a generator for any() would allocate)
        if type(coding) is dict and _coding_may_match(known, coding):
            return True
    return False


def _coding_may_match(known: KnownCodes, coding: dict[str, Any]) -> bool:
    code = coding.get("code")
    if type(code) is not str:
        return code is not None
    if code in known.codes:
        return True
    system = coding.get("system")
    return (
        type(system) is str
        and system not in _EXACT_SYSTEMS
        and (not code.isascii() or _code_key(code) in known.keys)
    )


#: `code_key` of the short codes seen lately (the same codes recur from record to record).
_KEYS: dict[str, str] = {}
_KEYS_LIMIT = 4096
_KEYS_LENGTH = 64


def _code_key(code: str) -> str:
    key = _KEYS.get(code)
    if key is None:
        key = code_key(code)
        if len(code) <= _KEYS_LENGTH:
            remember(_KEYS, code, key, _KEYS_LIMIT)
    return key


def merge_findings(findings: list[Finding]) -> list[Finding]:
    """One finding per code, with the references of every record of it (in order of first sight).

    Newness of the merged finding: a record with a readable onset that is newer than every other
    such onset is a new episode, so the latest readable onset decides; without any readable
    onset, the earliest recording decides (the same finding recorded again is not new).
    """
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        groups.setdefault((finding.coding.system, finding.coding.code), []).append(finding)
    return [group[0] if len(group) == 1 else _merge(group) for group in groups.values()]


def _merge(group: list[Finding]) -> Finding:
    onsets = [f for f in group if f.timing == ONSET and f.when]
    recordings = [f.when for f in group if f.timing == RECORDED and f.when]
    not_afters = [f.not_after for f in group if f.not_after]
    since = None
    if onsets:
        latest = max(onsets, key=lambda f: (f.when, f.since or f.when))
        when, since, timing, not_after = latest.when, latest.since, ONSET, None
    elif recordings:
        when, timing, not_after = min(recordings), RECORDED, None
    else:
        when, timing, not_after = None, UNKNOWN, min(not_afters, default=None)
    with_status = [f for f in group if f.clinical_status]
    status = next((f for f in with_status if f.recurring), None) or next(iter(with_status), None)
    first = group[0]
    return Finding(
        references=tuple(dict.fromkeys(r for f in group for r in f.references)),
        resource_type=first.resource_type,
        valuesets=frozenset().union(*(f.valuesets for f in group)),
        coding=first.coding,
        dates=tuple(dict.fromkeys(d for f in group for d in f.dates)),
        clinical_status=status.clinical_status if status else None,
        active=status.active if status else False,
        recurring=status.recurring if status else False,
        qualifier=next((f.qualifier for f in group if f.qualifier), None),
        when=when,
        since=since,
        timing=timing,
        not_after=not_after,
        notes=tuple(dict.fromkeys(n for f in group for n in f.notes)),
    )
