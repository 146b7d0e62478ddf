"""Coverage, tiers and labs (issue: no red flag hidden, no false emergency), on both hooks.

Each test sends coded FHIR input through the real service call and checks the cards. The codes,
tiers and limits under test are knowledge (knowledge/valuesets, rules, labs.yaml); the sources
are named there.
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from support.builders import (
    ENCOUNTER_START,
    PATIENT_VIEW,
    SNOMED,
    cards_of,
    condition,
    hook_body,
    observation,
    quantity,
)

from cds_service.cli import main
from cds_service.core.knowledge import rules_that_cannot_fire
from cds_service.knowledge_files import load_knowledge

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
BACK_SPASM = "M62.830"
HOOKS = {"patient-view": PATIENT_VIEW, "encounter-start": ENCOUNTER_START}


@pytest.fixture(params=sorted(HOOKS))
def ask(request, call):
    """Send conditions and observations on one hook; answer with the cards."""
    hook = request.param

    def _ask(conditions: list[dict[str, Any]], observations: list[dict[str, Any]] | None = None):
        body = hook_body(conditions, observations, hook=hook)
        response = call(body, service=HOOKS[hook])
        assert response.status_code == 200, response.get_data(as_text=True)
        return cards_of(response)

    return _ask


def by_indicator(cards: list[dict], indicator: str) -> list[dict]:
    return [c for c in cards if c["indicator"] == indicator]


def one(cards: list[dict], indicator: str) -> dict:
    found = by_indicator(cards, indicator)
    assert len(found) == 1, cards
    return found[0]


def spasm() -> dict[str, Any]:
    return condition(BACK_SPASM, onset_days_ago=5)


# --- 7. coverage ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "202664003",  # Cervical myelopathy
        "1156963006",  # Myelopathy due to cervical spondylosis
        "67437007",  # Lumbar spondylosis with myelopathy
        "75467001",  # Intervertebral disc disorder of cervical region with myelopathy
        "34139004",  # Intervertebral disc disorder of lumbar region with myelopathy
    ],
)
def test_snomed_myelopathy_is_an_emergency_like_its_icd_sibling(ask, code):
    flag = condition(code, system=SNOMED, onset_days_ago=3)
    card = one(ask([spasm(), flag]), "critical")
    assert "spinal cord compression" in card["summary"].lower()
    assert code in card["detail"] and flag["id"] in card["detail"]


def test_snomed_herniation_of_nucleus_pulposus_is_a_known_disc(ask):
    disc = condition("84857004", system=SNOMED, onset_days_ago=200)
    card = one(ask([disc, condition("M54.50", onset_days_ago=3)]), "warning")
    assert "herniated disc" in card["summary"].lower()
    assert "84857004" in card["detail"]


def test_every_rule_that_can_never_fire_is_reported():
    kb = load_knowledge_dir()
    silent = rules_that_cannot_fire(kb)
    assert any("new-saddle-anaesthesia" in s and "saddle-anaesthesia" in s for s in silent)
    assert any("fitness-factors" in s for s in silent)
    assert not any("new-myelopathy" in s for s in silent)


def test_knowledge_check_prints_the_silent_rules_and_fails_with_strict():
    runner = CliRunner()
    relaxed = runner.invoke(main, ["knowledge", "check"])
    assert relaxed.exit_code == 0, relaxed.output
    assert "warning: rules/new-saddle-anaesthesia can never fire" in relaxed.output
    assert "can never fire (see the warnings)" in relaxed.output
    strict = runner.invoke(main, ["knowledge", "check", "--strict"])
    assert strict.exit_code != 0
    assert "error: rules/new-saddle-anaesthesia can never fire" in strict.output


def load_knowledge_dir():
    from pathlib import Path

    return load_knowledge(Path(__file__).resolve().parent.parent / "knowledge")


# --- 8. tiers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "system", "words"),
    [
        ("M62.81", ICD, "weakness"),  # muscle weakness (generalized): no limb named
        ("26544005", SNOMED, "weakness"),  # muscle weakness: no limb named
        ("R40.0", ICD, "drowsiness"),  # somnolence: expected with muscle relaxants
        ("271782001", SNOMED, "drowsiness"),  # drowsy
        ("R26.81", ICD, "unsteadiness"),  # unsteadiness on feet
        ("22631008", SNOMED, "unsteadiness"),  # unsteady when walking
        ("R20.1", ICD, "numbness"),  # hypoaesthesia, no site
        ("44077006", SNOMED, "numbness"),  # numbness, no site
        ("309537005", SNOMED, "numbness"),  # numbness of lower limb: same tier as no site
    ],
)
def test_nonspecific_finding_is_prompt_care_not_an_emergency(ask, code, system, words):
    flag = condition(code, system=system, onset_days_ago=2)
    cards = ask([spasm(), flag])
    assert by_indicator(cards, "critical") == []
    card = one(cards, "warning")
    assert words in card["summary"].lower()
    assert code in card["detail"] and flag["id"] in card["detail"]


@pytest.mark.parametrize(
    ("code", "system"),
    [
        ("713514005", SNOMED),  # muscle weakness of limb
        ("102568007", SNOMED),  # paresis of lower extremity
        ("R40.1", ICD),  # stupor
        ("419284004", SNOMED),  # altered mental status
        ("R26.0", ICD),  # ataxic gait
        ("R27.0", ICD),  # ataxia
        ("282299006", SNOMED),  # unable to balance
    ],
)
def test_specific_sibling_stays_an_emergency(ask, code, system):
    card = one(ask([spasm(), condition(code, system=system, onset_days_ago=2)]), "critical")
    assert code in card["detail"]


def test_emergency_and_prompt_care_findings_each_keep_their_card(ask):
    cards = ask(
        [
            spasm(),
            condition("R32", onset_days_ago=2),
            condition("M62.81", onset_days_ago=2),
            condition("R20.0", onset_days_ago=2),
        ]
    )
    critical, warning = one(cards, "critical"), one(cards, "warning")
    assert "R32" in critical["detail"] and "M62.81" not in critical["detail"]
    assert "M62.81" in warning["detail"] and "R20.0" in warning["detail"]


def gcs(total: float, days: int = 0) -> dict[str, Any]:
    return observation("9269-2", days=days, valueQuantity={"value": total})


@pytest.mark.parametrize(("total", "indicator"), [(12, "critical"), (8, "critical")])
def test_glasgow_coma_scale_of_12_or_less_is_an_emergency(ask, total, indicator):
    card = one(ask([spasm()], [gcs(total)]), indicator)
    assert "Glasgow" in card["summary"] and "critical-low" in card["detail"]


@pytest.mark.parametrize("total", [13, 14])
def test_glasgow_coma_scale_of_13_or_14_is_prompt_care(ask, total):
    cards = ask([spasm()], [gcs(total)])
    assert by_indicator(cards, "critical") == []
    card = one(cards, "warning")
    assert "13 or 14" in card["summary"] and f"**{total}" in card["detail"]


def test_glasgow_coma_scale_of_15_raises_nothing_about_consciousness(ask):
    cards = ask([spasm()], [gcs(15)])
    assert [c for c in cards if "Glasgow" in c["summary"]] == []


# --- 9. labs -------------------------------------------------------------------------------


def potassium(value: float, unit: str = "mmol/L", code: str = "2823-3", **extra: Any) -> dict:
    return observation(code, days=1, valueQuantity=quantity(value, unit), **extra)


def interpretation(code: str) -> dict[str, Any]:
    system = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    return {"interpretation": [{"coding": [{"system": system, "code": code}]}]}


def test_potassium_below_the_critical_limit_is_a_critical_warning(ask):
    cards = ask([spasm()], [potassium(2.5)])
    card = one(cards, "warning")
    assert "critical" in card["summary"].lower()
    assert "**2.5 mmol/L**" in card["detail"]
    assert "below the critical limit 2.8 mmol/L" in card["detail"]


def test_potassium_flagged_ll_is_critical_even_above_the_limit(ask):
    card = one(ask([spasm()], [potassium(3.0, **interpretation("LL"))]), "warning")
    assert "critical" in card["summary"].lower()
    assert "flagged critically low by the lab" in card["detail"]


def test_potassium_low_but_not_critical_stays_a_contributing_factor(ask):
    cards = ask([spasm()], [potassium(3.2, **interpretation("L"))])
    assert by_indicator(cards, "warning") == []
    assert any("Low potassium" in c["summary"] for c in by_indicator(cards, "info"))


def test_critical_calcium_in_mg_dl_is_compared_in_its_own_unit(ask):
    calcium = observation("17861-6", days=1, valueQuantity=quantity(6.0, "mg/dL"))
    card = one(ask([spasm()], [calcium]), "warning")
    assert "critical" in card["summary"].lower()
    assert "below the critical limit 6.61 mg/dL" in card["detail"]


def test_mass_unit_on_a_molar_code_is_never_converted_and_shown_unreadable(ask):
    cards = ask([spasm()], [potassium(9.0, unit="mg/dL")])  # 9 mg/dL would "convert" to 2.3
    assert by_indicator(cards, "warning") == [] and by_indicator(cards, "critical") == []
    shown = [c for c in cards if "cannot be read" in c["summary"]]
    assert len(shown) == 1, cards
    assert "unreadable" in shown[0]["detail"]
    assert "mass unit" in shown[0]["detail"] and "2823-3" in shown[0]["detail"]


def test_mass_unit_on_the_mass_code_is_converted(ask):
    cards = ask([spasm()], [potassium(9.0, unit="mg/dL", code="22760-3")])
    card = one(cards, "warning")  # 9 mg/dL = 2.3 mmol/L: critical
    assert "**9 mg/dL**" in card["detail"]
    assert "below the critical limit 10.9 mg/dL" in card["detail"]


def test_default_range_is_shown_in_the_values_own_unit(ask):
    calcium = observation("17861-6", days=1, valueQuantity=quantity(8.0, "mg/dL"))
    cards = ask([spasm()], [calcium])
    card = next(c for c in cards if "Low calcium" in c["summary"])
    assert "reference 8.62 to 10.2 mg/dL (default)" in card["detail"]
    assert "mmol/L" not in card["detail"]
