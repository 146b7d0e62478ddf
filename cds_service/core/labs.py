"""Reading a quantitative result: unit conversion and whether it is low, normal or high.

The lab's own interpretation code wins; then the lab's own reference range; then the default
range the knowledge gives with its source. A unit the knowledge does not list is never guessed
at, and a unit that does not fit the code's property (a mass unit on a Moles/volume code) is
never converted: the result is reported as unreadable and raises nothing. A result the lab
flags critically low (labs.yaml `interpretations`), or below the measure's critical limit, reads
"critical-low".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .knowledge import Measure
from .memo import remember


@dataclass(frozen=True)
class Reading:
    flag: str  # critical-low | low | normal | high | unreadable
    basis: str  # how the flag was decided, in words for the card
    value: float
    unit: str
    canonical_value: float | None
    range_text: str | None


def unit_factor(measure: Measure, unit: str | None) -> float | None:
    """The factor from `unit` to the measure's canonical unit, or None when unknown."""
    if not unit:
        return 1.0 if measure.unitless else None
    return measure.units.get(unit.strip().lower())


def unit_offset(measure: Measure, unit: str | None) -> float:
    """The offset added before the factor (0 but for an affine unit such as [degF])."""
    if not unit or not measure.unit_offsets:
        return 0.0
    return measure.unit_offsets.get(unit.strip().lower(), 0.0)


def to_canonical(measure: Measure, value: float, unit: str | None) -> float | None:
    """A value in the measure's canonical unit, or None when the unit is unknown."""
    factor = unit_factor(measure, unit)
    return None if factor is None else (value + unit_offset(measure, unit)) * factor


def _quantity_unit(quantity: Any) -> str | None:
    if quantity is None:
        return None
    return quantity.code or quantity.unit


def _format_number(value: float) -> str:
    return f"{value:g}"


def _range_from_record(
    measure: Measure, obs: Any, value_unit: str | None
) -> tuple[float | None, float | None, str | None]:
    """The lab's own reference range, in canonical units, and how it reads."""
    for ref in obs.referenceRange or []:
        low = _range_bound(measure, ref.low, value_unit)
        high = _range_bound(measure, ref.high, value_unit)
        if low is not None or high is not None:
            shown = ref.text or _range_text(ref.low, ref.high, value_unit)
            return low, high, shown
    return None, None, None


def _range_bound(measure: Measure, quantity: Any, value_unit: str | None) -> float | None:
    if quantity is None or quantity.value is None:
        return None
    return to_canonical(measure, float(quantity.value), _quantity_unit(quantity) or value_unit)


def _range_text(low: Any, high: Any, unit: str | None) -> str:
    lo = _format_number(float(low.value)) if low is not None and low.value is not None else ""
    hi = _format_number(float(high.value)) if high is not None and high.value is not None else ""
    text = f"{lo} to {hi}" if lo and hi else (f"≥ {lo}" if lo else f"≤ {hi}")
    return f"{text} {unit}".strip() if unit else text


def _in_unit(canonical: float, factor: float, offset: float = 0.0) -> str:
    """A canonical value written in the result's own unit, to three significant figures."""
    return f"{canonical / factor - offset:.3g}"


#: Default ranges already written, by (low, high, factor, unit, offset, the offset's sign). A
#: key holds no zero low, high or factor and gives the sign of a zero offset, so that equal keys
#: write alike (0.0 and -0.0 are equal keys).
_RANGE_TEXTS: dict[tuple[float, float, float, str, float, float], str] = {}
_RANGE_TEXTS_LIMIT = 1024


def _default_range_text(measure: Measure, factor: float, unit: str, offset: float = 0.0) -> str:
    """The default range, written in the unit the result itself was reported in."""
    low, high = measure.default_low, measure.default_high
    if not (low and high and factor) or len(unit) > 64:
        return _range_in_unit(low, high, factor, unit, offset)
    key = (low, high, factor, unit, offset, math.copysign(1.0, offset))
    text = _RANGE_TEXTS.get(key)
    if text is None:
        text = _range_in_unit(low, high, factor, unit, offset)
        remember(_RANGE_TEXTS, key, text, _RANGE_TEXTS_LIMIT)
    return text


def _range_in_unit(low: float, high: float, factor: float, unit: str, offset: float) -> str:
    if low == high:
        return f"normal {_in_unit(low, factor, offset)} (default)"
    low_text, high_text = _in_unit(low, factor, offset), _in_unit(high, factor, offset)
    return f"{low_text} to {high_text} {unit} (default)".replace("  ", " ")


def _measured_code(measure: Measure, obs: Any) -> str | None:
    """The measure's LOINC code that the Observation carries."""
    for coding in getattr(obs.code, "coding", None) or []:
        if coding.code in measure.codes:
            return coding.code
    return None


def _property_mismatch(measure: Measure, obs: Any, unit: str | None) -> str | None:
    """Why the unit cannot be read for this code (a mass unit on a molar code), or None."""
    given = measure.unit_properties.get(unit.strip().lower()) if unit else None
    if given is None:
        return None
    code = _measured_code(measure, obs)
    wanted = measure.code_properties.get(code) if code else None
    if wanted is None or wanted == given:
        return None
    return f"unit {unit!r} is a {given} unit but {code} is measured as {wanted}; not converted"


def _critical(
    measure: Measure, canonical: float, interpretations: frozenset[str], factor: float, unit: str
) -> str | None:
    """Why the result is critically low, or None."""
    if not interpretations.isdisjoint(measure.interpretations.critical_low):
        return "flagged critically low by the lab"
    limit = measure.critical_below
    if limit is not None and canonical < limit:
        return f"below the critical limit {_in_unit(limit, factor)} {unit}".rstrip()
    return None


def read_measure(measure: Measure, obs: Any, interpretations: frozenset[str]) -> Reading | None:
    """Classify an Observation's valueQuantity against the measure; None when it has no value."""
    quantity = obs.valueQuantity
    if quantity is None or quantity.value is None:
        return None
    value = float(quantity.value)
    unit = _quantity_unit(quantity)
    shown_unit = quantity.unit or quantity.code or ""
    factor = unit_factor(measure, unit)
    if factor is None:
        return Reading("unreadable", f"unit {unit!r} not recognised", value, shown_unit, None, None)
    mismatch = _property_mismatch(measure, obs, unit)
    if mismatch is not None:
        return Reading("unreadable", mismatch, value, shown_unit, None, None)
    offset = unit_offset(measure, unit)
    canonical = (value + offset) * factor
    low, high, range_text = _range_from_record(measure, obs, unit)
    critical = _critical(measure, canonical, interpretations, factor, shown_unit)
    if critical is not None:
        if range_text is None:
            range_text = _default_range_text(measure, factor, shown_unit)
        return Reading("critical-low", critical, value, shown_unit, canonical, range_text)
    if not interpretations.isdisjoint(measure.interpretations.low):
        return Reading("low", "flagged low by the lab", value, shown_unit, canonical, range_text)
    if not interpretations.isdisjoint(measure.interpretations.high):
        return Reading("high", "flagged high by the lab", value, shown_unit, canonical, range_text)
    if not interpretations.isdisjoint(measure.interpretations.normal):
        return Reading(
            "normal", "flagged normal by the lab", value, shown_unit, canonical, range_text
        )
    if low is not None or high is not None:
        basis = "below the lab's reference range"
    else:
        low, high = measure.default_low, measure.default_high
        range_text = _default_range_text(measure, factor, shown_unit, offset)
        basis = "below the default reference range"
    if low is not None and canonical < low:
        return Reading("low", basis, value, shown_unit, canonical, range_text)
    if high is not None and canonical > high:
        return Reading(
            "high", basis.replace("below", "above"), value, shown_unit, canonical, range_text
        )
    return Reading("normal", "within the reference range", value, shown_unit, canonical, range_text)
