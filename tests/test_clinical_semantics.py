"""Each rule and each exclusion, with coded FHIR input sent through the real service call."""

from __future__ import annotations

import pytest
from support.builders import (
    ENCOUNTER_START,
    SNOMED,
    cards_of,
    condition,
    hook_body,
    observation,
    quantity,
)

BACK_SPASM = "M62.830"


def indicators(response) -> list[str]:
    return [c["indicator"] for c in cards_of(response)]


def critical_card(response) -> dict:
    cards = [c for c in cards_of(response) if c["indicator"] == "critical"]
    assert len(cards) == 1, cards
    return cards[0]


# --- emergency red flags -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "system", "summary_words"),
    [
        ("R33.9", None, "cauda equina"),  # urinary retention
        ("R32", None, "cauda equina"),  # urinary incontinence
        ("R15.9", None, "cauda equina"),  # faecal incontinence
        ("72042002", SNOMED, "cauda equina"),  # incontinence of faeces
        ("713514005", SNOMED, "weakness"),  # muscle weakness of limb
        ("R27.0", None, "balance"),  # ataxia
        ("R26.0", None, "balance"),  # ataxic gait
        ("G81.91", None, "one-sided"),  # hemiplegia, right dominant side
        ("20022000", SNOMED, "one-sided"),  # hemiparesis
        ("G82.20", None, "paralysis"),  # paraplegia
        ("R40.1", None, "consciousness"),  # stupor
        ("M47.12", None, "spinal cord"),  # spondylosis with myelopathy, cervical
    ],
)
def test_new_red_flag_with_back_spasm_gives_one_critical_card(call, code, system, summary_words):
    flag = condition(code, system=system or "http://hl7.org/fhir/sid/icd-10-cm", onset_days_ago=3)
    response = call(hook_body([condition(BACK_SPASM, onset_days_ago=5), flag]))
    card = critical_card(response)
    assert summary_words in card["summary"].lower()
    assert flag["id"] in card["detail"]
    assert code in card["detail"]


def test_critical_card_gathers_every_red_flag_and_names_the_most_serious(call):
    flags = [
        condition("R33.9", onset_days_ago=2),
        condition("713514005", system=SNOMED, onset_days_ago=2),  # muscle weakness of limb
        condition("R40.1", onset_days_ago=1),  # stupor: the most serious here
    ]
    response = call(hook_body([condition(BACK_SPASM), *flags]))
    card = critical_card(response)
    assert card["summary"].startswith("New change in level of consciousness (+2 more)")
    for flag in flags:
        assert flag["id"] in card["detail"]


def test_cauda_equina_diagnosis_stands_alone_and_provisional_still_alarms(call):
    ces = condition("G83.4", onset_days_ago=None, recorded_days_ago=1, verification="provisional")
    card = critical_card(call(hook_body([ces])))
    assert "Possible cauda equina syndrome" in card["summary"]
    assert "provisional" in card["detail"]


def test_red_flag_without_back_problem_raises_no_alarm(call):
    response = call(hook_body([condition("R33.9", onset_days_ago=2)]))
    assert indicators(response) == []


def test_red_flag_with_active_chronic_back_pain_alarms(call):
    # The persistent-spasm prompt-care card is not shown beside the emergency card.
    chronic = condition("278860009", system=SNOMED, onset_days_ago=700)
    response = call(hook_body([chronic, condition("R33.9", onset_days_ago=2)]))
    assert indicators(response) == ["critical"]


def test_red_flag_with_an_old_undated_status_back_pain_diagnosis_raises_no_alarm(call):
    # An encounter diagnosis without clinical status counts only if recorded in the last 90 days.
    old_visit = condition("M54.50", onset_days_ago=400, clinical=None)
    response = call(hook_body([old_visit, condition("R33.9", onset_days_ago=2)]))
    assert "critical" not in indicators(response)


def test_diagnosis_recorded_now_with_an_older_onset_is_new(call):
    ces = condition("G83.4", onset_days_ago=30, recorded_days_ago=1)
    card = critical_card(call(hook_body([ces])))
    assert "onset 2026-10-26, recorded 2026-11-24" in card["detail"]


def test_low_glasgow_coma_scale_is_critical(call):
    gcs = observation("9269-2", days=0, valueQuantity={"value": 11, "unit": "{score}"})
    card = critical_card(call(hook_body([condition(BACK_SPASM)], [gcs])))
    assert "Glasgow" in card["summary"]
    assert "**11" in card["detail"]


def test_full_glasgow_coma_scale_is_quiet(call):
    gcs = observation("9269-2", days=0, valueQuantity={"value": 15})
    assert "critical" not in indicators(call(hook_body([condition(BACK_SPASM)], [gcs])))


def test_observation_of_red_flag_finding_alarms(call):
    finding = observation("165232002", system=SNOMED, days=1, valueBoolean=True)
    assert "critical" in indicators(call(hook_body([condition(BACK_SPASM)], [finding])))


def test_avpu_responds_to_pain_alarms(call):
    avpu = observation(
        "11454-6",
        days=0,
        valueCodeableConcept={"coding": [{"system": SNOMED, "code": "450847001"}]},
    )
    assert "critical" in indicators(call(hook_body([condition(BACK_SPASM)], [avpu])))


def test_encounter_start_gives_the_same_cards(call):
    conditions = [condition(BACK_SPASM), condition("R33.9")]
    pv = indicators(call(hook_body(conditions)))
    es = indicators(call(hook_body(conditions, hook="encounter-start"), ENCOUNTER_START))
    assert pv == es == ["critical"]


# --- exclusions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag",
    [
        condition("R33.9", verification="refuted"),
        condition("R33.9", verification="entered-in-error"),
        condition("R33.9", clinical="inactive"),
        condition("R33.9", clinical="resolved"),
        condition("R33.9", clinical="remission"),
        condition("R33.9", clinical=None, abatementDateTime="2026-11-24"),
        condition("R33.9", patient="someone-else"),
        condition("R33.9", onset_days_ago=30),  # not new
        condition("R33.9", onset_days_ago=None, recorded_days_ago=40),  # not new
        condition("R33.9", onset_days_ago=None),  # no date: cannot be shown to be new
        condition("R33.0"),  # drug-induced retention is not a red flag
        condition("N39.3"),  # stress incontinence is not a red flag
        condition("R40.2414"),  # GCS 13-15 code (includes a normal 15)
    ],
    ids=[
        "refuted",
        "entered-in-error",
        "inactive",
        "resolved",
        "remission",
        "abated",
        "other-patient",
        "onset-30-days",
        "recorded-40-days",
        "undated",
        "drug-induced-retention",
        "stress-incontinence",
        "gcs-13-15-code",
    ],
)
def test_excluded_red_flag_raises_no_alarm(call, flag):
    assert "critical" not in indicators(call(hook_body([condition(BACK_SPASM), flag])))


@pytest.mark.parametrize(
    "extra",
    [
        {"status": "entered-in-error"},
        {"status": "cancelled"},
        {"status": "registered"},
        {"valueBoolean": False},
        {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "2667000"}]}},
        {"interpretation": [{"coding": [{"code": "NEG"}]}]},
        {"dataAbsentReason": {"coding": [{"code": "not-performed"}]}},
    ],
)
def test_observation_recorded_as_absent_or_void_raises_no_alarm(call, extra):
    finding = observation("165232002", system=SNOMED, days=1, **extra)
    assert "critical" not in indicators(call(hook_body([condition(BACK_SPASM)], [finding])))


def test_entered_in_error_back_spasm_is_not_an_index_condition(call):
    back = condition(BACK_SPASM, verification="entered-in-error")
    assert indicators(call(hook_body([back, condition("R33.9")]))) == []


def test_old_still_active_red_flag_is_one_line_of_context_not_an_alarm(call):
    old = condition("R32", onset_days_ago=2000)
    cards = cards_of(call(hook_body([condition(BACK_SPASM, onset_days_ago=3), old])))
    assert [c["indicator"] for c in cards] == ["info"]
    assert "Also on record, not new" in cards[0]["detail"]
    assert old["id"] in cards[0]["detail"]


def test_invalid_resource_is_skipped_not_fatal(call):
    broken = condition("R33.9", onsetDateTime="not-a-date")
    response = call(hook_body([condition(BACK_SPASM), broken]))
    assert "critical" not in indicators(response)


def test_malformed_element_no_rule_reads_does_not_hide_a_red_flag(call):
    flag = condition("R33.9", note="not a list of annotations", encounter={"reference": 7})
    assert "critical" in indicators(call(hook_body([condition(BACK_SPASM), flag])))


def test_future_onset_is_not_read_as_new(call):
    future = condition("R33.9", onset_days_ago=-30)
    assert "critical" not in indicators(call(hook_body([condition(BACK_SPASM), future])))


def test_month_precision_onset_this_month_is_never_silent(call):
    """November 2026 on 25 November may be 24 days old or 1: a warning to confirm the onset."""
    flag = condition("R33.9", onset_days_ago=None, onsetDateTime="2026-11")
    assert indicators(call(hook_body([condition(BACK_SPASM), flag])))[0] == "warning"


def test_icd_code_without_dot_and_snomed_oid_are_recognised(call):
    undotted = condition("R339", onset_days_ago=1)
    oid = condition("203095000", system="urn:oid:2.16.840.1.113883.6.96")
    assert "critical" in indicators(call(hook_body([oid, undotted])))


# --- prompt care -------------------------------------------------------------------------


def test_known_stenosis_with_recent_back_spasm_is_a_warning(call):
    stenosis = condition("M48.061", onset_days_ago=700)
    cards = cards_of(call(hook_body([stenosis, condition(BACK_SPASM, onset_days_ago=10)])))
    assert cards[0]["indicator"] == "warning"
    assert stenosis["id"] in cards[0]["detail"]


def test_newly_diagnosed_disc_herniation_alone_is_not_prompt_care(call):
    # Same day as the back pain: the disc is being diagnosed, not "being treated" with recurrence.
    disc = condition("M51.16", onset_days_ago=3)
    response = call(hook_body([disc, condition("M54.50", onset_days_ago=3)]))
    assert "warning" not in indicators(response)


def test_symptoms_persisting_since_before_the_diagnosis_are_prompt_care(call):
    disc = condition("M51.26", onset_days_ago=30)
    back = condition("M54.50", onset_days_ago=60)
    assert indicators(call(hook_body([disc, back]))) == ["warning"]


def test_old_back_symptoms_without_a_status_and_a_known_disc_are_not_prompt_care(call):
    # An old encounter diagnosis with no clinical status: neither recent nor known to be active.
    disc = condition("M51.26", onset_days_ago=400)
    back = condition("M54.50", onset_days_ago=200, clinical=None)
    assert "warning" not in indicators(call(hook_body([disc, back])))


def test_new_foot_drop_is_a_warning(call):
    cards = cards_of(call(hook_body([condition("M54.50"), condition("M21.371", onset_days_ago=1)])))
    assert cards[0]["indicator"] == "warning"
    assert "foot drop" in cards[0]["summary"].lower()


# --- info: contributing factors, causes, questions -------------------------------------


def test_low_potassium_flagged_by_the_lab(call):
    k = observation(
        "2823-3",
        valueQuantity=quantity(3.3, "mmol/L"),
        interpretation=[{"coding": [{"code": "L"}]}],
    )
    cards = cards_of(call(hook_body([condition(BACK_SPASM)], [k])))
    contributing = [c for c in cards if "contributing" in c["summary"]]
    assert len(contributing) == 1
    assert "3.3 mmol/L" in contributing[0]["detail"]
    assert "flagged low by the lab" in contributing[0]["detail"]


def test_lab_interpretation_normal_wins_over_default_range(call):
    k = observation(
        "2823-3",
        valueQuantity=quantity(3.4, "mmol/L"),
        interpretation=[{"coding": [{"code": "N"}]}],
    )
    cards = cards_of(call(hook_body([condition(BACK_SPASM)], [k])))
    assert not [c for c in cards if "contributing" in c["summary"]]


def test_lab_reference_range_wins_over_default_range(call):
    # 3.4 is below the default 3.5 but inside this lab's own range 3.3-5.1.
    k = observation(
        "2823-3",
        valueQuantity=quantity(3.4, "mmol/L"),
        referenceRange=[{"low": quantity(3.3, "mmol/L"), "high": quantity(5.1, "mmol/L")}],
    )
    cards = cards_of(call(hook_body([condition(BACK_SPASM)], [k])))
    assert not [c for c in cards if "contributing" in c["summary"]]


@pytest.mark.parametrize(
    ("code", "value", "unit", "low"),
    [
        ("17861-6", 7.9, "mg/dL", True),  # total calcium, mass units
        ("17861-6", 9.1, "mg/dL", False),
        ("2000-8", 1.95, "mmol/L", True),  # total calcium, molar
        ("2000-8", 2.3, "mmol/L", False),
        ("1995-0", 1.0, "mmol/L", True),  # ionized
        ("2823-3", 3.2, "meq/L", True),  # potassium in mEq/L
        ("2823-3", 3.2, "mg%", False),  # unknown unit: never guessed
    ],
)
def test_calcium_and_potassium_units(call, code, value, unit, low):
    lab = observation(code, valueQuantity=quantity(value, unit))
    cards = cards_of(call(hook_body([condition(BACK_SPASM)], [lab])))
    assert bool([c for c in cards if "contributing" in c["summary"]]) is low


def test_later_normal_result_supersedes_earlier_low(call):
    low = observation("2823-3", days=10, valueQuantity=quantity(3.0, "mmol/L"))
    normal = observation("2823-3", days=2, valueQuantity=quantity(4.1, "mmol/L"))
    cards = cards_of(call(hook_body([condition(BACK_SPASM)], [low, normal])))
    assert not [c for c in cards if "contributing" in c["summary"]]


def test_stale_low_result_is_ignored(call):
    old = observation("2823-3", days=45, valueQuantity=quantity(3.0, "mmol/L"))
    cards = cards_of(call(hook_body([condition(BACK_SPASM)], [old])))
    assert not [c for c in cards if "contributing" in c["summary"]]


def test_dehydration_diagnosis_is_a_contributing_factor(call):
    cards = cards_of(call(hook_body([condition(BACK_SPASM), condition("E86.0")])))
    assert any("contributing" in c["summary"] for c in cards)


def test_pathologic_cause_gives_a_work_up_card(call):
    cards = cards_of(
        call(
            hook_body(
                [condition(BACK_SPASM, onset_days_ago=40), condition("M43.16", onset_days_ago=900)]
            )
        )
    )
    assert [c["indicator"] for c in cards] == ["info"]
    assert "cause" in cards[0]["summary"]


def test_new_episode_without_red_flag_gets_the_article_questions(call):
    cards = cards_of(call(hook_body([condition(BACK_SPASM, onset_days_ago=2)])))
    assert [c["indicator"] for c in cards] == ["info"]
    assert "How long have you had these spasms?" in cards[0]["detail"]


def test_questions_card_is_dropped_when_a_red_flag_is_present(call):
    cards = cards_of(call(hook_body([condition(BACK_SPASM), condition("R33.9")])))
    assert [c["indicator"] for c in cards] == ["critical"]


def test_cards_are_ordered_critical_warning_info(call):
    conditions = [
        condition(BACK_SPASM, onset_days_ago=5),
        condition("R33.9"),
        condition("M48.061", onset_days_ago=800),
        condition("E86.0"),
        condition("M41.26", onset_days_ago=3000),
    ]
    assert indicators(call(hook_body(conditions))) == ["critical", "warning", "info", "info"]


def test_max_cards_setting_keeps_the_most_urgent(client, settings, tmp_path):
    from support.builders import FIXED_NOW, PATIENT_VIEW

    from cds_service import create_app

    app = create_app(settings.model_copy(update={"max_cards": 1}), clock=lambda: FIXED_NOW)
    conditions = [condition(BACK_SPASM), condition("R33.9"), condition("E86.0")]
    response = app.test_client().post(f"/cds-services/{PATIENT_VIEW}", json=hook_body(conditions))
    assert indicators(response) == ["critical"]
