"""A lean reader for the elements of a result (lab, score) that the rules read.

Validating a result with the FHIR R4 models (`fhir.resources`) costs about 300 µs; most results
are plain: a coded Observation with a number, a unit and perhaps a reference range. This reader
accepts only what it is certain `fhir.resources` accepts too, element by element, and builds the
few values `labs.read_measure` reads. Whenever it is unsure (an unknown key, an extension, a
non-ASCII string, a number it cannot hold exactly, a status outside the value set, an empty
object or list) it answers None and the caller validates with `fhir.resources` as before.

`tests/core/test_lean_measure.py` checks this against `fhir.resources` on every sample chart and
on a generated corpus: whatever this reader accepts, the models accept with the same reading.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: FHIR primitives, held to a strict ASCII subset of their R4 patterns (no doubt about whitespace).
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_STRING = re.compile(r"[\x20-\x7e]+")
_CODE = re.compile(r"[\x21-\x7e]+( [\x21-\x7e]+)*")
_URI = re.compile(r"[\x21-\x7e]+")
#: Observation.status (required binding, FHIR R4 ObservationStatus).
STATUSES = frozenset(
    {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
#: Integers a float holds exactly; larger ones go to the models.
_EXACT_INT = 2**53
_TOP_KEYS = frozenset(
    {"resourceType", "id", "status", "code", "valueQuantity", "interpretation", "referenceRange"}
)
_CODING_KEYS = {"system": _URI, "code": _CODE, "display": _STRING}
_QUANTITY_KEYS = {"unit": _STRING, "system": _URI, "code": _CODE}
_CODING_ALLOWED = frozenset(_CODING_KEYS)
_QUANTITY_ALLOWED = frozenset({"value", *_QUANTITY_KEYS})
_RANGE_KEYS = frozenset({"low", "high", "text"})
_CONCEPT_KEYS = frozenset({"coding", "text"})


class Unsure(Exception):
    """The lean reader cannot be certain; the models decide."""


@dataclass(frozen=True, slots=True)
class LeanCoding:
    code: str | None


@dataclass(frozen=True, slots=True)
class LeanConcept:
    coding: list[LeanCoding] | None


@dataclass(frozen=True, slots=True)
class LeanQuantity:
    value: float | int | None
    unit: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class LeanRange:
    low: LeanQuantity | None
    high: LeanQuantity | None
    text: str | None


@dataclass(frozen=True, slots=True)
class LeanObservation:
    """The elements of an Observation that `labs.read_measure` reads."""

    code: LeanConcept
    valueQuantity: LeanQuantity | None  # FHIR element names
    referenceRange: list[LeanRange] | None


#: Strings already found to match each pattern (codes, systems, units recur from call to call).
_MATCHED: dict[re.Pattern[str], set[str]] = {}
_MATCHED_LIMIT = 4096


def _text(value: object, pattern: re.Pattern[str]) -> str:
    if type(value) is not str:
        raise Unsure
    matched = _MATCHED.get(pattern)
    if matched is not None and value in matched:
        return value
    if not value.isascii() or not pattern.fullmatch(value):
        raise Unsure
    if matched is None or len(matched) >= _MATCHED_LIMIT:
        _MATCHED[pattern] = matched = set()
    matched.add(value)
    return value


def _object(value: object, allowed: frozenset[str]) -> dict[str, Any]:
    if type(value) is not dict or not value or not value.keys() <= allowed:
        raise Unsure
    return value


def _list(value: object) -> list[Any]:
    if type(value) is not list or not value:
        raise Unsure
    return value


def _number(value: object) -> float | int:
    if type(value) is int and -_EXACT_INT < value < _EXACT_INT:
        return value
    if type(value) is float:
        written = repr(value)
        if "e" not in written and "n" not in written:
            return value  # finite, written without an exponent
    raise Unsure


def _coding(value: object) -> LeanCoding:
    coding = _object(value, _CODING_ALLOWED)
    for key, pattern in _CODING_KEYS.items():
        if key in coding:
            _text(coding[key], pattern)
    return LeanCoding(coding.get("code"))


def _concept(value: object) -> LeanConcept:
    concept = _object(value, _CONCEPT_KEYS)
    if "text" in concept:
        _text(concept["text"], _STRING)
    codings = [_coding(c) for c in _list(concept["coding"])] if "coding" in concept else None
    return LeanConcept(codings)


def _quantity(value: object) -> LeanQuantity:
    quantity = _object(value, _QUANTITY_ALLOWED)
    if "value" not in quantity:
        raise Unsure
    for key, pattern in _QUANTITY_KEYS.items():
        if key in quantity:
            _text(quantity[key], pattern)
    return LeanQuantity(_number(quantity["value"]), quantity.get("unit"), quantity.get("code"))


def _range(value: object) -> LeanRange:
    item = _object(value, _RANGE_KEYS)
    low = _quantity(item["low"]) if "low" in item else None
    high = _quantity(item["high"]) if "high" in item else None
    text = _text(item["text"], _STRING) if "text" in item else None
    return LeanRange(low, high, text)


def _read(res: Mapping[str, Any]) -> LeanObservation:
    if (
        type(res) is not dict
        or not res.keys() <= _TOP_KEYS
        or res.get("resourceType") != ("Observation")
    ):
        raise Unsure
    if "id" in res:
        _text(res["id"], _ID)
    status = res.get("status")
    if type(status) is not str or status not in STATUSES or "code" not in res:
        raise Unsure
    code = _concept(res["code"])
    if "interpretation" in res:
        for concept in _list(res["interpretation"]):
            _concept(concept)
    quantity = _quantity(res["valueQuantity"]) if "valueQuantity" in res else None
    ranges = [_range(r) for r in _list(res["referenceRange"])] if "referenceRange" in res else None
    return LeanObservation(code, quantity, ranges)


def lean_observation(res: Mapping[str, Any], elements: tuple[str, ...]) -> LeanObservation | None:
    """The read elements of a plain result, or None when the FHIR models must decide."""
    read = {k: res[k] for k in elements if k in res}
    try:
        return _read(read)
    except Unsure:
        return None
