"""Passing over resources whose codes the knowledge never reads changes nothing.

`extract_findings` skips a resource when `_may_match` says none of its codes can be one of the
knowledge's, and `evaluate` skips a rule when `_may_fire` says nothing could trigger it. Here the
same charts are read twice, once so and once reading every resource of a type that can hold a
finding and evaluating every rule (as before these shortcuts), and the findings, the evaluation
and the cards must be identical: on the sample charts, on the benchmark's generated charts, and
on random mixes of relevant records, unrelated ones and oddly spelled or malformed codings.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import random
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from support.builders import TODAY

from benchmarks.charts import chart_resources
from cds_service.core import findings as findings_module
from cds_service.core import rules as rules_module
from cds_service.core.cards import CardContext, render_cards
from cds_service.core.codes import ICD10CM, LOINC, SNOMED
from cds_service.core.findings import MEDICATION_TYPES, extract_findings
from cds_service.core.knowledge import KnowledgeBase
from cds_service.core.rules import evaluate
from cds_service.tester_tools.samples import bundle_resources, load_chart, load_index

_, CHARTS = load_index()
READ_TYPES = ("Condition", "Observation", *MEDICATION_TYPES)


def _read_every(_known: object, res: Mapping[str, Any]) -> bool:
    """The reference: every resource of a type that can hold a finding is read in full."""
    return res.get("resourceType") in READ_TYPES


def _latest_by_scan(
    req: Any, measures: tuple[str, ...], direction: str | None, within_days: int | None
) -> list[Any]:
    """The reference: every result scanned for each measure."""
    return latest_measurements(measures, direction, within_days, req._data.measurements, req._today)


def latest_measurements(
    measures: tuple[str, ...],
    direction: str | None,
    within_days: int | None,
    measurements: list[Any],
    today: dt.date,
) -> list[Any]:
    """The latest result of each measure in the window, when it reads in `direction`."""
    hits = []
    for measure_id in measures:
        recent = [
            m
            for m in measurements
            if m.measure == measure_id
            and m.date is not None
            and rules_module.is_recent(m, within_days, today)
        ]
        if not recent:
            continue
        latest = max(recent, key=lambda m: (m.date, m.reference))
        if latest.reading.flag == direction:
            hits.append(latest)
    return hits


def _outcome(
    kb: KnowledgeBase, resources: list[Any], patient_id: str, today: dt.date
) -> tuple[Any, ...]:
    """Findings, evaluation and cards (uuids numbered), or the exception raised."""
    try:
        found = extract_findings(kb, copy.deepcopy(resources), patient_id, today)
    except Exception as exc:  # the same failure is the same outcome
        return ("raised", type(exc))
    evaluation = evaluate(kb, found, today)
    counter = itertools.count()
    cards = render_cards(
        kb, evaluation, 10, lambda: f"uuid-{next(counter)}", CardContext(patient_id, None, None)
    )
    return found, evaluation, cards


def _both(
    kb: KnowledgeBase,
    monkeypatch: pytest.MonkeyPatch,
    resources: list[Any],
    patient_id: str,
    today: dt.date = TODAY,
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    fast = _outcome(kb, resources, patient_id, today)
    with monkeypatch.context() as patch:
        patch.setattr(findings_module, "_may_match", _read_every)
        patch.setattr(rules_module, "_may_fire", lambda _rule, _present: True)
        patch.setattr(rules_module._Requirements, "latest", _latest_by_scan)
        full = _outcome(kb, resources, patient_id, today)
    return fast, full


@pytest.mark.parametrize("chart", CHARTS, ids=lambda c: c.name)
def test_sample_charts_read_alike(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch, chart):
    resources = bundle_resources(load_chart(chart, TODAY))
    fast, full = _both(kb, monkeypatch, resources, chart.patient_id)
    assert fast == full
    assert fast[0].examined == len(resources)


@pytest.mark.parametrize("size", [0, 1, 4, 5, 100, 1000])
def test_generated_charts_read_alike(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch, size):
    resources = chart_resources(size, TODAY)
    fast, full = _both(kb, monkeypatch, resources, "bench-1")
    assert fast == full
    assert bool(fast[2]) == (size >= 1), "the relevant few give cards"


def _spellings(kb: KnowledgeBase) -> list[tuple[str, str]]:
    """Knowledge codes as records write them: aliases, case, spaces, dots dropped or misplaced."""
    icd = sorted(code for system, code in kb.code_index if system == ICD10CM)[::50]
    snomed = sorted(code for system, code in kb.code_index if system == SNOMED)[::10]
    out: list[tuple[str, str]] = []
    for code in icd:
        out += [
            (ICD10CM, code),
            (ICD10CM, code.lower()),
            (ICD10CM, code.replace(".", "")),
            (ICD10CM, f" {code.replace('.', ' ')} "),
            ("urn:oid:2.16.840.1.113883.6.90", code.replace(".", "").lower()),
            ("http://hl7.org/fhir/sid/icd-10-cm/", code),
            (SNOMED, code),  # the right code in the wrong system
            ("http://example.org/local", code.replace(".", "")),
        ]
    for code in snomed:
        out += [(SNOMED, code), ("https://snomed.info/sct", f" {code}"), (SNOMED, f"{code} ")]
    for code in kb.measure_index:
        out += [(LOINC, code), ("urn:oid:2.16.840.1.113883.6.1", code), ("", code)]
    return out


ODD_CODES: list[Any] = [None, 7, 3.5, True, [], {}, ["M62.830"], "", " ", "\uff2d\uff33", "m62.83O"]


def _odd_coding(rng: random.Random, spellings: list[tuple[str, str]]) -> Any:
    system, code = rng.choice(spellings)
    pick = rng.random()
    if pick < 0.6:
        return {"system": system, "code": code}
    if pick < 0.75:
        return {"system": rng.choice([system, None, 5, ["x"]]), "code": rng.choice(ODD_CODES)}
    if pick < 0.85:
        return {"code": code}
    return rng.choice(["M62.830", None, 3, [], {"system": system}])


def _concept(rng: random.Random, spellings: list[tuple[str, str]]) -> Any:
    pick = rng.random()
    if pick < 0.7:
        return {"coding": [_odd_coding(rng, spellings) for _ in range(rng.randint(1, 3))]}
    if pick < 0.8:
        return {"coding": _odd_coding(rng, spellings)}  # a lone coding object
    if pick < 0.9:
        return {"text": "back spasm"}
    return rng.choice([None, "M62.830", [], {"coding": None}])


def _mutated(rng: random.Random, res: dict[str, Any], spellings: list[tuple[str, str]]) -> Any:
    res = copy.deepcopy(res)
    key = rng.choice(["code", "valueCodeableConcept", "medicationCodeableConcept"])
    res[key] = _concept(rng, spellings)
    if rng.random() < 0.2:
        res["resourceType"] = rng.choice(
            ["Procedure", "MedicationRequest", "MedicationStatement", "Observation", None, 3]
        )
    if rng.random() < 0.1:
        res["subject"] = rng.choice([{"reference": "Patient/someone-else"}, None, "x"])
    return res


def _pool() -> list[dict[str, Any]]:
    """Every resource of every sample chart, re-addressed to one patient."""
    pool = []
    for chart in CHARTS:
        for res in bundle_resources(load_chart(chart, TODAY)):
            res = copy.deepcopy(res)
            for key in ("subject", "patient"):
                if isinstance(res.get(key), dict) and res[key].get("reference") == (
                    f"Patient/{chart.patient_id}"
                ):
                    res[key] = {"reference": "Patient/mix-1"}
            pool.append(res)
    return pool


POOL = _pool()


@pytest.mark.parametrize("seed", range(40))
def test_random_mixes_read_alike(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch, seed):
    rng = random.Random(seed)
    spellings = _spellings(kb)
    unrelated = chart_resources(60, TODAY, pid="mix-1", seed=seed)[4:]
    relevant = rng.sample(POOL, k=min(len(POOL), rng.randint(5, 40)))
    mutated = [_mutated(rng, rng.choice(POOL + unrelated), spellings) for _ in range(40)]
    patient = {"resourceType": "Patient", "id": "mix-1", "birthDate": "1950-06-01"}
    junk: list[Any] = [None, 3, "Condition", [], {"resourceType": "Condition"}]
    resources = [patient, *relevant, *unrelated, *mutated, *junk]
    rng.shuffle(resources)
    fast, full = _both(kb, monkeypatch, resources, "mix-1")
    assert fast == full
    if fast[0] != "raised":
        assert fast[0].findings or fast[0].to_review or fast[0].skipped


def _potassium(rid: str, value: float, taken: int, reported: int | None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "subject": {"reference": "Patient/mix-1"},
        "code": {"coding": [{"system": LOINC, "code": "2823-3"}]},
        "effectiveDateTime": (TODAY - dt.timedelta(days=taken)).isoformat(),
        "valueQuantity": {"value": value, "unit": "mmol/L", "code": "mmol/L"},
    }
    if reported is not None:
        res["issued"] = (TODAY - dt.timedelta(days=reported)).isoformat()
    return res


@pytest.mark.parametrize("seed", range(20))
def test_latest_results_with_ties_and_late_reports(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    results = [
        _potassium(
            rng.choice(["k1", "k2", "k3"]),
            rng.choice([2.4, 3.1, 4.2, 5.9]),
            rng.choice([0, 1, 1, 30, 400]),
            rng.choice([None, 0, 1, 2]),
        )
        for _ in range(rng.randint(1, 12))
    ]
    spasm = {
        "resourceType": "Condition",
        "id": "spasm",
        "subject": {"reference": "Patient/mix-1"},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": ICD10CM, "code": "M62.830"}]},
        "onsetDateTime": (TODAY - dt.timedelta(days=2)).isoformat(),
    }
    fast, full = _both(kb, monkeypatch, [spasm, *results], "mix-1")
    assert fast == full


def test_a_list_code_on_an_observation_fails_as_before(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = {"resourceType": "Observation", "code": {"coding": [{"code": ["2823-3"]}]}}
    fast, full = _both(kb, monkeypatch, [res], "mix-1")
    assert fast == full


def test_only_unrelated_codes_are_passed_over(kb: KnowledgeBase) -> None:
    known = kb.known_codes
    may_match: Callable[[Any, dict[str, Any]], bool] = findings_module._may_match

    def coded(rtype: str, system: Any, code: Any, key: str = "code") -> dict[str, Any]:
        return {"resourceType": rtype, key: {"coding": [{"system": system, "code": code}]}}

    assert not may_match(known, coded("Condition", ICD10CM, "I10"))
    assert not may_match(known, coded("Observation", LOINC, "8867-4"))
    assert not may_match(known, coded("Procedure", ICD10CM, "M62.830"))
    assert may_match(known, coded("Condition", ICD10CM, "M62.830"))
    assert may_match(known, coded("Condition", ICD10CM, "m62830"))
    assert may_match(known, coded("Condition", "urn:oid:2.16.840.1.113883.6.90", "M62830"))
    assert may_match(known, coded("Observation", LOINC, "2823-3"))
    assert may_match(known, coded("Observation", SNOMED, "2823-3"))
    assert may_match(known, coded("Observation", LOINC, ["2823-3"]))
    medication = "medicationCodeableConcept"
    assert may_match(known, coded("MedicationRequest", None, "M62.830", medication))
    assert not may_match(known, coded("MedicationRequest", None, "M62.830"))
