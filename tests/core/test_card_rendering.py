"""Card rendering: escaping, suggestion uuids, and the card parts kept per knowledge base."""

from __future__ import annotations

import copy
import gc
import itertools
import random
import re
import uuid

import pytest
from support.builders import PATIENT_ID, TODAY, condition, observation, quantity

from cds_service.core import cards
from cds_service.core.cards import escape_text
from cds_service.core.orders import SUGGESTION_NAMESPACE, suggestion_uuid
from cds_service.core.pipeline import decide

_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
#: Markdown and HTML specials, every kind of whitespace str.split() knows, non-ASCII letters
_ALPHABET = (
    "ab Z09.-/:()#!>"
    "\\`*_[]|~&<"
    "  \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2003\u200a\u2028\u2029\u202f\u205f\u3000"
    "éßø中文🙂\u200b"
)


def reference_escape(text: object, limit: int = 160) -> str:
    """escape_text as first written: collapse, cut, entities, then a backslash per special."""
    text = " ".join(str(text).split())[:limit]
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return _SPECIAL.sub(r"\\\1", text)


def random_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice(_ALPHABET) for _ in range(rng.choice([0, 1, 2, 5, 20, 100, 170, 400])))
        for _ in range(count)
    ]


def test_escape_text_is_the_reference_escaping_on_random_text():
    for text in random_texts(20261201, 4000):
        for limit in (80, 160, 3):
            assert escape_text(text, limit) == reference_escape(text, limit), repr(text)
        assert escape_text(text) == reference_escape(text), repr(text)


def test_escape_text_of_plain_and_non_text_values():
    for value in ("Urinary retention", "", " ", "a" * 200, 3, None, 2.5, "é" * 170):
        assert escape_text(value) == reference_escape(value)
    assert escape_text("[x](javascript:1) <b>&") == "\\[x\\](javascript:1) &lt;b>&amp;"


def test_suggestion_uuid_is_the_standard_uuid5():
    rng = random.Random(5)
    cards_ = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(300)] + ["u", "", "é/中"]
    ids = ["mri-now", "", "a/b", "rule:stat:ServiceRequest/x", "ü🙂", *random_texts(7, 40)]
    for card, sid in itertools.product(cards_, ids[:12]):
        expected = str(uuid.uuid5(SUGGESTION_NAMESPACE, f"{card}/{sid}"))
        assert suggestion_uuid(card, sid) == expected
    for sid in ids:
        assert suggestion_uuid("c", sid) == str(uuid.uuid5(SUGGESTION_NAMESPACE, f"c/{sid}"))


def test_suggestion_uuid_of_a_name_utf8_cannot_encode_fails_as_uuid5_does():
    with pytest.raises(UnicodeEncodeError):
        uuid.uuid5(SUGGESTION_NAMESPACE, "c/\ud800")
    with pytest.raises(UnicodeEncodeError):
        suggestion_uuid("c", "\ud800")


def _resources(patient: str, reference: str, potassium: float) -> list[dict]:
    retention = condition("R33.9", onset_days_ago=3, rid=reference, patient=patient)
    stenosis = condition(
        "M48.061", onset_days_ago=800, rid=f"{reference}-stenosis", patient=patient
    )
    k = observation("2823-3", valueQuantity=quantity(potassium, "mmol/L"))
    k["subject"] = {"reference": f"Patient/{patient}"}
    return [
        condition("M62.830", rid=f"{reference}-spasm", patient=patient),
        retention,
        stenosis,
        k,
    ]


def _answer(kb, resources, patient=PATIENT_ID, base_url=None):
    n = itertools.count()
    decision = decide(
        kb, resources, patient, TODAY, 10, lambda: f"card-{next(n)}", base_url=base_url
    )
    return [(c.json, c.rules, c.evidence, c.suggestions) for c in decision.cards]


def test_cards_for_different_patients_are_their_own(kb):
    first = _resources(PATIENT_ID, "c-first", 3.0)
    second = _resources("p-2", "c-second", 2.5)
    a = _answer(kb, first)
    b = _answer(kb, second, patient="p-2", base_url="https://one.example")
    assert a and b and a != b
    # each answer is the one a knowledge base that never rendered a card gives
    assert b == _answer(copy.copy(kb), second, patient="p-2", base_url="https://one.example")
    assert a == _answer(copy.copy(kb), first)
    detail = b[0][0]["detail"]
    assert "Condition/c-second" in detail and "c-first" not in detail
    assert b[0][0]["source"]["icon"] == "https://one.example/about/icon.png"
    assert all("icon" not in card["source"] for card, *_ in a)
    other = _answer(kb, second, patient="p-2", base_url="https://two.example")
    assert other[0][0]["source"]["icon"] == "https://two.example/about/icon.png"
    assert all(link["url"].startswith("https://two.example") for link in other[0][0]["links"][-1:])


def test_changing_an_answer_changes_not_the_next(kb):
    resources = _resources(PATIENT_ID, "c-first", 3.0)
    answer = _answer(kb, resources, base_url="https://one.example")
    kept = copy.deepcopy(answer)
    for card, *_ in answer:
        card["summary"] = card["detail"] = "changed"
        card["source"]["label"] = "changed"
        card["source"]["topic"]["code"] = "changed"
        card["overrideReasons"][0]["code"] = "changed"
        card["overrideReasons"].append({})
        card["links"][0]["url"] = "changed"
        card["links"].append({})
        for suggestion in card.get("suggestions", ()):
            resource = suggestion["actions"][0]["resource"]
            resource["code"]["coding"][0]["code"] = "changed"
            resource["category"][0]["coding"].append({})
    assert _answer(kb, resources, base_url="https://one.example") == kept


def test_card_parts_go_with_their_knowledge_base(kb):
    own = copy.copy(kb)
    _answer(own, _resources(PATIENT_ID, "c-first", 3.0))
    key = id(own)
    assert key in cards._FRAMES
    del own
    gc.collect()
    assert key not in cards._FRAMES
