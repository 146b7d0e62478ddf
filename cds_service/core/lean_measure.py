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
from typing import Any, NamedTuple

from .memo import remember


class _Form:
    """A FHIR primitive held to a strict ASCII pattern, with the strings already found to match."""

    __slots__ = ("matched", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)
        #: codes, systems and units recur from call to call
        self.matched: dict[str, bool] = {}


#: FHIR primitives, held to a strict ASCII subset of their R4 patterns (no doubt about whitespace).
_ID = _Form(r"[A-Za-z0-9\-.]{1,64}")
_STRING = _Form(r"[\x20-\x7e]+")
_CODE = _Form(r"[\x21-\x7e]+( [\x21-\x7e]+)*")
_URI = _Form(r"[\x21-\x7e]+")
_MATCHED_LIMIT = 4096
_MATCHED_LENGTH = 256  # longer strings are matched each time, not remembered
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
_CODING_ALLOWED = frozenset({"system", "code", "display"})
_QUANTITY_ALLOWED = frozenset({"value", "unit", "system", "code"})
_RANGE_KEYS = frozenset({"low", "high", "text"})
_CONCEPT_KEYS = frozenset({"coding", "text"})


class Unsure(Exception):
    """The lean reader cannot be certain; the models decide."""


class LeanCoding(NamedTuple):
    code: str | None


class LeanConcept(NamedTuple):
    coding: list[LeanCoding] | None


class LeanQuantity(NamedTuple):
    value: float | int | None
    unit: str | None
    code: str | None


class LeanRange(NamedTuple):
    low: LeanQuantity | None
    high: LeanQuantity | None
    text: str | None


class LeanObservation(NamedTuple):
    """The elements of an Observation that `labs.read_measure` reads."""

    code: LeanConcept
    valueQuantity: LeanQuantity | None  # FHIR element names
    referenceRange: list[LeanRange] | None


def _text(value: object, form: _Form) -> str:
    if type(value) is not str:
        raise Unsure
    matched = form.matched
    if value in matched:
        return value
    if not value.isascii() or not form.pattern.fullmatch(value):
        raise Unsure
    if len(value) <= _MATCHED_LENGTH:
        remember(matched, value, True, _MATCHED_LIMIT)
    return value


def _object(value: object, allowed: frozenset[str]) -> dict[str, Any]:
    if type(value) is not dict or not value or not allowed.issuperset(value):
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
        if 1e-4 <= value < 1e15 or -1e15 < value <= -1e-4:
            return value  # repr() writes these without an exponent
        written = repr(value)
        if "e" not in written and "n" not in written:
            return value  # finite, written without an exponent
    raise Unsure


def _coding(value: object) -> LeanCoding:
    coding = _object(value, _CODING_ALLOWED)
    if "system" in coding:
        _text(coding["system"], _URI)
    code = coding.get("code")
    if "code" in coding:
        _text(code, _CODE)
    if "display" in coding:
        _text(coding["display"], _STRING)
    return LeanCoding(code)


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
    number = _number(quantity["value"])
    unit = quantity.get("unit")
    if "unit" in quantity:
        _text(unit, _STRING)
    if "system" in quantity:
        _text(quantity["system"], _URI)
    code = quantity.get("code")
    if "code" in quantity:
        _text(code, _CODE)
    return LeanQuantity(number, unit, code)


def _range(value: object) -> LeanRange:
    item = _object(value, _RANGE_KEYS)
    low = _quantity(item["low"]) if "low" in item else None
    high = _quantity(item["high"]) if "high" in item else None
    text = _text(item["text"], _STRING) if "text" in item else None
    return LeanRange(low, high, text)


def _read(res: Mapping[str, Any]) -> LeanObservation:
    if (
        type(res) is not dict
        or not _TOP_KEYS.issuperset(res)
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
