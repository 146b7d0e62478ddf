"""The audit record builder (pure): every card traced to its theme, rules and evidence."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

from support.builders import FIXED_NOW, TODAY

from cds_service.core.audit import CallFacts, audit_record, patient_key
from cds_service.core.caller import Caller
from cds_service.core.pipeline import Decision, decide
from cds_service.storage.models import EvidenceRef, FiredRule, IssuedCard, ServiceCall
from cds_service.tester_tools.samples import bundle_resources, load_chart, load_index

SECRET = b"k" * 32


def chart_decision(kb, name: str, max_cards: int = 4) -> Decision:
    _, charts = load_index()
    chart = next(c for c in charts if c.name == name)
    resources = bundle_resources(load_chart(chart, TODAY))
    counter = itertools.count(1)
    return decide(
        kb, resources, chart.patient_id, TODAY, max_cards, lambda: f"card-{next(counter)}"
    )


def facts(**overrides) -> CallFacts:
    values = {
        "call_id": "call-1",
        "recorded_at": FIXED_NOW,
        "service_id": "back-spasm-patient-view",
        "status": 200,
        "latency_ms": 12.3456,
        "knowledge_version": "abc123",
        "hook": "patient-view",
        "hook_instance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "patient_key": patient_key(SECRET, "pt-1"),
    }
    return CallFacts(**{**values, **overrides})


def columns(model) -> set[str]:
    return set(model.__table__.columns.keys())


def test_the_rows_have_exactly_the_tables_columns(kb):
    record = audit_record(facts(), chart_decision(kb, "known-stenosis-with-new-spasm"))
    assert set(record.call) == columns(ServiceCall)
    assert record.cards and all(set(row) == columns(IssuedCard) for row in record.cards)
    assert record.rules and all(set(row) == columns(FiredRule) for row in record.rules)
    assert record.evidence and all(set(row) == columns(EvidenceRef) for row in record.evidence)


def test_each_card_is_traced_to_its_theme_rules_and_evidence(kb):
    decision = chart_decision(kb, "disc-low-potassium-and-new-spasm")
    record = audit_record(facts(), decision)
    assert [c["uuid"] for c in record.cards] == [c.json["uuid"] for c in decision.cards]
    assert [c["indicator"] for c in record.cards] == ["warning", "info", "info"]
    assert [c["position"] for c in record.cards] == [0, 1, 2]
    for card in record.cards:
        rules = {r["rule_id"] for r in record.rules if r["card_uuid"] == card["uuid"]}
        expected = {m.rule.id for m in decision.evaluation.matches if m.rule.theme == card["theme"]}
        assert rules == expected and rules
        for match in decision.evaluation.matches:
            if match.rule.id not in rules:
                continue
            refs = {
                e["reference"]
                for e in record.evidence
                if e["rule_id"] == match.rule.id and e["role"] == "evidence"
            }
            assert refs == {item.reference for item in match.evidence}
            assert all(
                e["card_uuid"] == card["uuid"]
                for e in record.evidence
                if e["rule_id"] == match.rule.id
            )


def test_context_findings_are_recorded_as_context(kb):
    decision = chart_decision(kb, "known-stenosis-with-new-spasm")
    record = audit_record(facts(), decision)
    context = {(e["rule_id"], e["reference"]) for e in record.evidence if e["role"] == "context"}
    expected = {(m.rule.id, f.reference) for m in decision.evaluation.matches for f in m.context}
    assert context == expected and context


def test_a_theme_cut_by_the_card_limit_keeps_its_rules_without_a_card(kb):
    decision = chart_decision(kb, "disc-low-potassium-and-new-spasm", max_cards=1)
    record = audit_record(facts(), decision)
    assert len(record.cards) == 1
    shown = [r for r in record.rules if r["card_uuid"] == record.cards[0]["uuid"]]
    cut = [r for r in record.rules if r["card_uuid"] is None]
    assert shown and cut
    assert {r["rule_id"] for r in record.rules} == {m.rule.id for m in decision.evaluation.matches}


def test_older_red_flags_are_traced_to_the_first_card(kb):
    decision = chart_decision(kb, "old-hemiplegia-not-new")
    assert decision.evaluation.older, "the chart has an older red flag"
    record = audit_record(facts(), decision)
    older = [e for e in record.evidence if e["role"] == "older"]
    assert {e["reference"] for e in older} == {
        o.finding.reference for o in decision.evaluation.older
    }
    assert {e["card_uuid"] for e in older} == {decision.cards[0].json["uuid"]}


def test_a_call_without_a_decision_has_the_call_row_only():
    record = audit_record(facts(status=412, latency_ms=3.0))
    assert (record.cards, record.rules, record.evidence) == ((), (), ())
    assert record.call["status"] == 412
    assert record.call["latency_ms"] == 3.0


def test_the_call_row_names_the_client_but_holds_no_token():
    client = Caller("https://sandbox.cds-hooks.org", tenant="t-1", jti="jti-1")
    row = audit_record(facts(client=client)).call
    assert (row["client_issuer"], row["client_tenant"], row["client_jti"]) == (
        "https://sandbox.cds-hooks.org",
        "t-1",
        "jti-1",
    )
    assert not any("token" in name for name in row)


def test_the_call_row_is_in_utc_and_clips_long_values():
    local = dt.datetime(2026, 11, 25, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    row = audit_record(facts(recorded_at=local, hook_instance="h" * 2048)).call
    assert row["recorded_at"] == FIXED_NOW and row["recorded_at"].tzinfo == dt.UTC
    assert len(row["hook_instance"]) == 256
    assert row["latency_ms"] == 12.346


def test_the_patient_key_is_a_keyed_pseudonym():
    key = patient_key(SECRET, "pt-1", "https://ehr.example/fhir/")
    assert len(key) == 64 and int(key, 16) >= 0
    assert "pt-1" not in key
    assert key == patient_key(SECRET, "pt-1", "https://ehr.example/fhir")  # same server
    assert key != patient_key(b"x" * 32, "pt-1", "https://ehr.example/fhir")  # another key
    assert key != patient_key(SECRET, "pt-2", "https://ehr.example/fhir")  # another patient
    assert key != patient_key(SECRET, "pt-1", "https://other.example/fhir")  # another server


def test_each_card_row_is_what_its_card_carries(kb):
    """The theme, indicator and rules of a row travel with the card: nothing is re-derived."""
    decision = chart_decision(kb, "disc-low-potassium-and-new-spasm")
    record = audit_record(facts(), decision)
    assert [(c["uuid"], c["theme"], c["indicator"]) for c in record.cards] == [
        (c.json["uuid"], c.theme, c.json["indicator"]) for c in decision.cards
    ]
    for card in decision.cards:
        rules = [r["rule_id"] for r in record.rules if r["card_uuid"] == card.uuid]
        assert rules == list(card.rules)


def test_an_incomplete_answers_dropped_cards_leave_their_rules_without_a_card(kb):
    """Only the cards answered are recorded; the rules of the others fired without a card."""
    decision = chart_decision(kb, "disc-low-potassium-and-new-spasm")
    kept = dataclasses.replace(decision, cards=decision.cards[:1])
    record = audit_record(facts(), kept)
    assert [c["uuid"] for c in record.cards] == [kept.cards[0].uuid]
    assert {r["rule_id"] for r in record.rules} == {m.rule.id for m in decision.evaluation.matches}
    dropped = {rule for card in decision.cards[1:] for rule in card.rules}
    assert dropped and all(r["card_uuid"] is None for r in record.rules if r["rule_id"] in dropped)
    assert all(e["card_uuid"] is None for e in record.evidence if e["rule_id"] in dropped)
