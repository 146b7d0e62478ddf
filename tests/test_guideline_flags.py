"""Guideline red flags beyond the article (issue: cancer, infection, fracture, weight loss,
bilateral sciatica), with coded FHIR input through the real service call, on both hooks."""

from __future__ import annotations

import pytest
from support.builders import (
    ENCOUNTER_START,
    PATIENT_VIEW,
    SNOMED,
    cards_of,
    condition,
    days_ago,
    hook_body,
    medication,
    observation,
    quantity,
)

BACK_PAIN = "M54.50"
PREDNISONE_5 = "312617"
TACROLIMUS_1 = "198377"
BUDESONIDE_NASAL = "1797929"  # not in the systemic value set
HOOKS = [("patient-view", PATIENT_VIEW), ("encounter-start", ENCOUNTER_START)]


def run(call, hook, service, conditions, observations=None, **kw):
    return cards_of(call(hook_body(conditions, observations, hook=hook, **kw), service))


def by_indicator(cards, indicator):
    return [c for c in cards if c["indicator"] == indicator]


def temperature(value, unit, days=1):
    return observation("8310-5", days=days, valueQuantity=quantity(value, unit))


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_history_of_cancer_with_new_back_pain_is_prompt_care(call, hook, service):
    cards = run(call, hook, service, [condition(BACK_PAIN), condition("Z85.3", onset_days_ago=900)])
    warning = by_indicator(cards, "warning")
    assert len(warning) == 1 and "History of cancer" in warning[0]["summary"]
    assert not by_indicator(cards, "critical")


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_cancer_in_remission_counts_benign_neoplasm_does_not(call, hook, service):
    remission = condition("C50.911", onset_days_ago=1500, clinical="remission")
    cards = run(call, hook, service, [condition(BACK_PAIN), remission])
    assert any("History of cancer" in c["summary"] for c in by_indicator(cards, "warning"))
    benign = run(
        call, hook, service, [condition(BACK_PAIN), condition("D16.6", onset_days_ago=900)]
    )
    assert not any("cancer" in c["summary"].lower() for c in benign)


def test_cancer_entered_in_error_or_old_back_pain_is_quiet(call):
    wrong = condition("Z85.3", onset_days_ago=900, verification="entered-in-error")
    assert not any(
        "cancer" in c["summary"].lower()
        for c in run(call, "patient-view", PATIENT_VIEW, [condition(BACK_PAIN), wrong])
    )
    old_pain = condition(BACK_PAIN, onset_days_ago=200)
    cards = run(
        call, "patient-view", PATIENT_VIEW, [old_pain, condition("Z85.3", onset_days_ago=900)]
    )
    assert not any("cancer" in c["summary"].lower() for c in cards)


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_cancer_with_new_foot_drop_is_an_emergency(call, hook, service):
    conditions = [
        condition(BACK_PAIN),
        condition("Z85.3", onset_days_ago=900),
        condition("M21.371"),
    ]
    critical = by_indicator(run(call, hook, service, conditions), "critical")
    assert len(critical) == 1 and "metastatic" in critical[0]["summary"]


@pytest.mark.parametrize(("hook", "service"), HOOKS)
@pytest.mark.parametrize("fever", ["obs-cel", "obs-degf", "diagnosis"])
def test_fever_back_pain_and_immunosuppressant_is_an_emergency(call, hook, service, fever):
    conditions = [condition(BACK_PAIN)]
    observations = []
    if fever == "diagnosis":
        conditions.append(condition("R50.9", onset_days_ago=1))
    else:
        observations.append(
            temperature(38.6, "Cel") if fever == "obs-cel" else temperature(101.5, "[degF]")
        )
    cards = run(
        call, hook, service, conditions, observations, medications=[medication(TACROLIMUS_1)]
    )
    critical = by_indicator(cards, "critical")
    assert len(critical) == 1 and "spinal infection" in critical[0]["summary"]


def test_fever_with_back_pain_alone_is_follow_up_at_most(call):
    cards = run(
        call, "patient-view", PATIENT_VIEW, [condition(BACK_PAIN)], [temperature(38.4, "Cel")]
    )
    assert not by_indicator(cards, "critical")
    assert any("Fever with new back pain" in c["summary"] for c in by_indicator(cards, "info"))


def test_normal_or_old_temperature_is_quiet(call):
    for obs in (temperature(100.2, "[degF]"), temperature(39.0, "Cel", days=30)):
        cards = run(
            call,
            "patient-view",
            PATIENT_VIEW,
            [condition(BACK_PAIN)],
            [obs],
            medications=[medication(TACROLIMUS_1)],
        )
        assert not any("ever" in c["summary"] for c in cards), cards


@pytest.mark.parametrize(
    "med",
    [
        medication(PREDNISONE_5, status="stopped"),
        medication(PREDNISONE_5, status="entered-in-error"),
        medication(PREDNISONE_5, status="completed", started_days_ago=700),
        medication(PREDNISONE_5, started_days_ago=20),  # not long-term
        medication(PREDNISONE_5, route="447694001"),  # given by inhalation
        medication(BUDESONIDE_NASAL),
        medication(PREDNISONE_5, patient="someone-else"),
    ],
)
def test_steroids_that_do_not_count_give_no_fracture_or_infection_flag(call, med):
    cards = run(
        call,
        "patient-view",
        PATIENT_VIEW,
        [condition(BACK_PAIN)],
        [temperature(38.5, "Cel")],
        medications=[med],
    )
    assert not by_indicator(cards, "critical")
    assert not any("racture" in c["summary"] for c in cards)


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_long_term_steroid_with_new_back_pain_is_fracture_follow_up(call, hook, service):
    cards = run(
        call,
        hook,
        service,
        [condition(BACK_PAIN)],
        medications=[medication(PREDNISONE_5, kind="MedicationStatement")],
    )
    info = by_indicator(cards, "info")
    assert any("Fracture risk" in c["summary"] for c in info)
    assert not by_indicator(cards, "critical")


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_fracture_risk_over_70_is_raised_to_prompt_care(call, hook, service):
    conditions = [condition(BACK_PAIN), condition("M81.0", onset_days_ago=1000)]
    cards = run(call, hook, service, conditions, birth_date="1948-03-02")
    assert any("vertebral fracture" in c["summary"] for c in by_indicator(cards, "warning"))
    assert not any("Fracture risk with new" in c["summary"] for c in cards)
    assert "Age 78" in by_indicator(cards, "warning")[0]["detail"]


def test_age_alone_never_fires(call):
    cards = run(call, "patient-view", PATIENT_VIEW, [condition(BACK_PAIN)], birth_date="1940-01-01")
    assert all(c["indicator"] == "info" for c in cards)
    assert not any("racture" in c["summary"] or "cancer" in c["summary"] for c in cards)


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_weight_loss_with_back_pain_is_follow_up_never_emergency(call, hook, service):
    cards = run(
        call, hook, service, [condition(BACK_PAIN), condition("R63.4")], birth_date="1960-01-01"
    )
    assert not by_indicator(cards, "critical") and not by_indicator(cards, "warning")
    follow = [c for c in cards if "weight loss" in c["summary"]]
    assert len(follow) == 1 and follow[0]["indicator"] == "info"
    assert "Age 66" in follow[0]["detail"]  # age explains, it does not raise


@pytest.mark.parametrize(("hook", "service"), HOOKS)
def test_bilateral_sciatica_is_prompt_care(call, hook, service):
    cards = run(call, hook, service, [condition("M54.41"), condition("M54.42", onset_days_ago=40)])
    assert any("both legs" in c["summary"] for c in by_indicator(cards, "warning"))
    one_side = run(call, hook, service, [condition("M54.41"), condition(BACK_PAIN)])
    assert not any("both legs" in c["summary"] for c in one_side)


def test_bilateral_sciatica_with_retention_joins_the_one_emergency_card(call):
    conditions = [condition("M54.41"), condition("M54.42"), condition("R33.9")]
    critical = by_indicator(run(call, "patient-view", PATIENT_VIEW, conditions), "critical")
    assert len(critical) == 1
    assert "bilateral sciatica" in critical[0]["detail"].lower() or "(+" in critical[0]["summary"]


def test_every_flag_gives_one_emergency_card_and_at_most_four(call):
    conditions = [
        condition(BACK_PAIN),
        condition("M54.41"),
        condition("M54.42"),
        condition("R33.9"),
        condition("Z85.3", onset_days_ago=900),
        condition("M81.0", onset_days_ago=900),
        condition("R63.4"),
        condition("F11.20", onset_days_ago=400),
        condition("R50.9"),
        condition("N39.0", onset_days_ago=20),
        condition("W19.XXXA", onset_days_ago=10),
        condition("386661006", system=SNOMED),
    ]
    cards = run(
        call,
        "patient-view",
        PATIENT_VIEW,
        conditions,
        [temperature(39.2, "Cel")],
        medications=[medication(PREDNISONE_5), medication(TACROLIMUS_1)],
        birth_date="1950-05-05",
    )
    assert len(by_indicator(cards, "critical")) == 1
    assert len(cards) <= 4
    assert len([c for c in cards if c["indicator"] == "info" and "follow up" in c["summary"]]) <= 1
    assert days_ago(0)  # the fixed clock is used throughout
