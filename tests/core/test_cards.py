"""Cards follow the CDS Hooks card rules and carry evidence and source."""

from __future__ import annotations

import re
import uuid

from support.builders import cards_of, condition, hook_body, observation, quantity


def all_cards(call) -> list[dict]:
    conditions = [
        condition("M62.830", onset_days_ago=5),
        condition("R33.9"),
        condition("M62.81"),
        condition("M48.061", onset_days_ago=800),
        condition("E86.0"),
        condition("M41.26", onset_days_ago=3000),
    ]
    k = observation("2823-3", valueQuantity=quantity(3.0, "mmol/L"))
    return cards_of(call(hook_body(conditions, [k])))


def empties(node, path="card"):
    """Paths of null or empty values anywhere in a JSON tree."""
    if node is None or node in ("", [], {}):
        yield path
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from empties(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from empties(value, f"{path}[{i}]")


def test_every_card_meets_the_specification(call):
    cards = all_cards(call)
    assert [c["indicator"] for c in cards] == ["critical", "warning", "info", "info"]
    uuids = [c["uuid"] for c in cards]
    assert len(set(uuids)) == len(uuids)
    for card in cards:
        uuid.UUID(card["uuid"])
        assert list(empties(card)) == []
        assert len(card["summary"]) < 140
        assert "\n" not in card["summary"]
        assert card["indicator"] in {"info", "warning", "critical"}
        assert card["source"]["label"]
        for reason in card["overrideReasons"]:
            assert reason["system"] and reason["code"] and reason["display"]
        if card.get("suggestions"):
            assert card["selectionBehavior"] in {"at-most-one", "any"}
        else:
            assert "selectionBehavior" not in card


def test_detail_is_markdown_without_raw_html(call):
    for card in all_cards(call):
        assert not re.search(r"<[a-zA-Z/!]", card["detail"]), card["detail"]


def test_each_card_closes_with_its_source_attributes(call):
    for card in all_cards(call):
        tail = card["detail"].strip().splitlines()[-1]
        assert tail.startswith("Sources: *Back Spasm*")
        assert "William C. Lloyd III, MD, FACS" in tail
        assert "2018-11-19" in tail


def test_critical_card_shows_evidence_with_code_system_and_date(call):
    flag = condition("R33.9", onset_days_ago=3, rid="c-retention")
    card = cards_of(call(hook_body([condition("M62.830", rid="c-spasm"), flag])))[0]
    detail = card["detail"]
    assert "Urinary retention" in detail
    assert "ICD-10-CM R33.9" in detail
    assert "onset 2026-11-22" in detail
    assert "Condition/c-retention" in detail
    assert "Condition/c-spasm" in detail
    assert "Seek immediate medical care (call 911)" in detail
    assert "**Action:**" in detail


def test_no_guidance_is_an_empty_card_list(call):
    response = call(hook_body([condition("J45.909")]))
    assert response.get_json() == {"cards": []}


def test_card_uuids_differ_between_calls(call):
    body = hook_body([condition("M62.830"), condition("R33.9")])
    first = cards_of(call(body))[0]["uuid"]
    second = cards_of(call(body))[0]["uuid"]
    assert first != second
