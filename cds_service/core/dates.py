"""Reading clinical dates from raw FHIR JSON, defensively.

Every reader here returns None for what it cannot read and never raises: a malformed or extreme
date (`9999-12`, `0001-01-01T00:00:00+14:00`, `27/11/2026`, a number) is unknown, and the caller
falls back to the record's other dates.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .memo import remember

_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?"
)
#: UCUM age units and their length in days (FHIR Age uses a, mo, wk, d, h, min).
AGE_UNIT_DAYS = {
    "a": 365.25,
    "mo": 30.4375,
    "wk": 7.0,
    "d": 1.0,
    "h": 1 / 24,
    "min": 1 / 1440,
}


@dataclass(frozen=True)
class Limits:
    """The days a clinical date may plausibly fall on, for this patient and this call."""

    today: dt.date
    earliest: dt.date
    latest: dt.date


def _utc_day(day: dt.date, time: str | None, zone: str | None) -> dt.date:
    """The UTC calendar day of a dateTime; the written day when it has no zone or overflows."""
    if not time or not zone or zone == "Z":
        return day
    try:
        sign = 1 if zone[0] == "+" else -1
        offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        hour, minute = int(time[:2]), int(time[3:5])
        moment = dt.datetime.combine(day, dt.time(hour, minute)) - sign * offset
        return moment.date()
    except (ValueError, OverflowError):
        return day


def parse_day(value: object, limits: Limits) -> dt.date | None:
    """The day a FHIR date/dateTime/instant string stands for, or None when unreadable.

    A month ("2026-11") or a year ("2026") reads as its last day, today at most, so that a finding
    from this month is never taken for an old one. A day before `limits.earliest` or after
    `limits.latest` is implausible and reads as unknown.
    """
    return _span(value, limits)[1]


def first_day(value: object, limits: Limits) -> dt.date | None:
    """The first day a FHIR date/dateTime could stand for: a year's 1 January, a month's 1st.

    With `parse_day` (the last day) it spans an imprecise date; for a full date both are the day.
    """
    return _span(value, limits)[0]


_NO_SPAN: tuple[None, None] = (None, None)
#: How a string reads before the limits: (its last day, precision), or None when unreadable.
#: The precision is "day", "month" or "year". Dates recur from call to call (the same chart is
#: sent again on every hook), so readings of short strings are remembered.
_READINGS: dict[str, tuple[dt.date, str] | None] = {}
_READINGS_LIMIT = 8192
_READINGS_LENGTH = 64


def _span(value: object, limits: Limits) -> tuple[dt.date | None, dt.date | None]:
    """The first and last day a date/dateTime string may stand for (see `first_day`)."""
    if type(value) is not str:
        return _NO_SPAN
    try:
        reading = _READINGS[value]
    except KeyError:
        reading = _reading(value)
        if len(value) <= _READINGS_LENGTH:
            remember(_READINGS, value, reading, _READINGS_LIMIT)
    if reading is None:
        return _NO_SPAN
    day, precision = reading
    if precision == "day":
        return _NO_SPAN if day < limits.earliest or day > limits.latest else (day, day)
    day = min(day, limits.today)
    if day < limits.earliest or day > limits.latest:
        return _NO_SPAN
    return dt.date(day.year, 1 if precision == "year" else day.month, 1), day


def _reading(value: str) -> tuple[dt.date, str] | None:
    """The last day a date/dateTime string stands for, and its precision; None if unreadable."""
    match = _DATE.fullmatch(value.strip())
    if match is None:
        return None
    year, month, mday, time, zone = match.groups()
    try:
        if month is None:
            return dt.date(int(year), 12, 31), "year"
        if mday is None:
            number = int(month)
            return dt.date(int(year), number, calendar.monthrange(int(year), number)[1]), "month"
        return _utc_day(dt.date(int(year), int(month), int(mday)), time, zone), "day"
    except ValueError:
        return None


def _age_days(age: object) -> tuple[float, float] | None:
    """A FHIR Age as (its value, the length of its unit) in days, or None when unreadable."""
    if type(age) is not dict:
        return None
    value = age.get("value")
    unit = age.get("code") if type(age.get("code")) is str else age.get("unit")
    if type(value) not in (int, float) or type(unit) is not str or value < 0:
        return None
    days = AGE_UNIT_DAYS.get(unit.strip())
    return None if days is None else (value, days)


def _plausible(day: dt.date, limits: Limits) -> dt.date | None:
    day = min(day, limits.today)
    return day if limits.earliest <= day <= limits.latest else None


def age_to_day(age: object, birth: dt.date | None, limits: Limits) -> dt.date | None:
    """The last day of the age interval (a FHIR Age) after birth, or None when unreadable."""
    parsed = _age_days(age)
    if birth is None or parsed is None:
        return None
    value, days = parsed
    try:
        day = birth + dt.timedelta(days=(value + 1) * days - 1 if days >= 1 else value * days)
    except OverflowError:
        return None
    return _plausible(day, limits)


def age_to_first_day(age: object, birth: dt.date | None, limits: Limits) -> dt.date | None:
    """The first day of the age interval (a FHIR Age) after birth, or None when unreadable."""
    parsed = _age_days(age)
    if birth is None or parsed is None:
        return None
    value, days = parsed
    try:
        day = birth + dt.timedelta(days=value * days)
    except OverflowError:
        return None
    return _plausible(day, limits)


def onset_day(
    resource: Mapping[str, object], birth: dt.date | None, limits: Limits
) -> tuple[str | None, dt.date | None]:
    """Which onset[x] a Condition gives (its element name), and the day it reads as."""
    name, _, last = onset_span(resource, birth, limits)
    return name, last


def onset_span(
    resource: Mapping[str, object], birth: dt.date | None, limits: Limits
) -> tuple[str | None, dt.date | None, dt.date | None]:
    """Which onset[x] a Condition gives, and the first and last day it may stand for.

    A full date is one day. A year, a month, an age in years or an age range spans many days:
    the onset may be new or old, and only the whole span inside a window makes it new.
    """
    for name in ("onsetDateTime", "onsetPeriod", "onsetAge", "onsetRange", "onsetString"):
        if name in resource:
            value = resource[name]
            if name == "onsetDateTime":
                return name, *_span(value, limits)
            if name == "onsetPeriod":
                return name, *_span(value.get("start") if type(value) is dict else None, limits)
            last = _onset_bound(name, value, birth, limits, first=False)
            first = _onset_bound(name, value, birth, limits, first=True) if last else None
            return name, first or last, last
    return None, None, None


def _onset_bound(
    name: str, value: object, birth: dt.date | None, limits: Limits, *, first: bool
) -> dt.date | None:
    """The first (`first`) or last day an onsetAge or onsetRange stands for, or None."""
    read_age = age_to_first_day if first else age_to_day
    if name == "onsetAge":
        return read_age(value, birth, limits)
    if name == "onsetRange" and type(value) is dict:
        near, far = ("low", "high") if first else ("high", "low")
        return read_age(value.get(near), birth, limits) or read_age(value.get(far), birth, limits)
    return None


def abatement_day(
    resource: Mapping[str, object], birth: dt.date | None, limits: Limits
) -> tuple[str | None, dt.date | None]:
    """Which abatement[x] a Condition gives, and the day it reads as (None: undated)."""
    for name in (
        "abatementDateTime",
        "abatementPeriod",
        "abatementAge",
        "abatementRange",
        "abatementString",
        "abatementBoolean",
    ):
        if name not in resource:
            continue
        value = resource[name]
        if name == "abatementDateTime":
            return name, parse_day(value, limits)
        if name == "abatementPeriod" and type(value) is dict:
            return name, parse_day(value.get("end"), limits) or parse_day(
                value.get("start"), limits
            )
        if name == "abatementAge":
            return name, age_to_day(value, birth, limits)
        if name == "abatementRange" and type(value) is dict:
            return name, age_to_day(value.get("low"), birth, limits)
        return name, None
    return None, None


def birth_date(value: object, today: dt.date) -> dt.date | None:
    """Patient.birthDate as a day (its first possible day), or None."""
    if type(value) is not str:
        return None
    match = _DATE.fullmatch(value.strip())
    if match is None:
        return None
    try:
        day = dt.date(int(match["y"]), int(match["m"] or 1), int(match["d"] or 1))
    except ValueError:
        return None
    return day if day <= today else None
