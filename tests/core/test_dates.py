"""The date readers read every string as the plain regular-expression reading below does.

`parse_day`, `first_day` and `onset_span` read a date once for both ends of its span; here they
are compared with a straightforward reading (one match per question) over well-formed, odd and
random strings, under several limits.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
from collections.abc import Iterator

import pytest

from cds_service.core import dates
from cds_service.core.dates import (
    _DATE,
    Limits,
    _utc_day,
    first_day,
    onset_span,
    parse_day,
)

TODAY = dt.date(2026, 12, 1)
LIMITS = [
    Limits(TODAY, dt.date(1900, 1, 1), TODAY + dt.timedelta(days=1)),
    Limits(TODAY, dt.date(1950, 6, 1), TODAY),
    Limits(dt.date(2026, 11, 5), dt.date(1, 1, 1), dt.date(9999, 12, 31)),
]


def reference_parse_day(value: object, limits: Limits) -> dt.date | None:
    """The last day, read with one match and named groups."""
    if type(value) is not str:
        return None
    match = _DATE.fullmatch(value.strip())
    if match is None:
        return None
    try:
        year = int(match["y"])
        if match["m"] is None:
            day = dt.date(year, 12, 31)
        elif match["d"] is None:
            month = int(match["m"])
            day = dt.date(year, month, calendar.monthrange(year, month)[1])
        else:
            day = _utc_day(
                dt.date(year, int(match["m"]), int(match["d"])), match["time"], match["zone"]
            )
    except ValueError:
        return None
    if match["d"] is None:
        day = min(day, limits.today)
    if day < limits.earliest or day > limits.latest:
        return None
    return day


def reference_first_day(value: object, limits: Limits) -> dt.date | None:
    """The first day: the last day, then the date matched again."""
    day = reference_parse_day(value, limits)
    if day is None:
        return None
    match = _DATE.fullmatch(str(value).strip())
    if match is None or match["d"] is not None:
        return day
    return dt.date(day.year, 1 if match["m"] is None else day.month, 1)


def _random_date(rng: random.Random) -> object:
    year = rng.choice(
        ["2026", "2025", "1999", "0001", "0000", "9999", "1899", "2027", "\u0662\u0660\u0662\u0666"]
    )
    month = rng.choice(["01", "02", "11", "12", "13", "00", "1", "\u0661\u0661"])
    day = rng.choice(["01", "28", "29", "30", "31", "00", "32", "1"])
    time = rng.choice(["", "T00:00", "T10:00:00", "T23:59:59.123", "T24:00:00", "T1:00"])
    zone = rng.choice(["", "Z", "+14:00", "-12:00", "+05:30", "+99:99", "-00:00", "z", "+0530"])
    pick = rng.random()
    if pick < 0.35:
        text = f"{year}-{month}-{day}{time}{zone}"
    elif pick < 0.5:
        text = f"{year}-{month}"
    elif pick < 0.6:
        text = year
    elif pick < 0.75:
        text = (TODAY - dt.timedelta(days=rng.randint(-40, 40000))).isoformat() + rng.choice(
            ["", "T09:30:00Z", "T23:30:00-05:00", "T00:30:00+02:00", "T12:00:00.5+00:00"]
        )
    elif pick < 0.95:
        text = "".join(rng.choice("0123456789-T:Z+. x") for _ in range(rng.randint(0, 26)))
    else:
        return rng.choice([None, 3, 2026, [], {}, 1.5, True])
    if rng.random() < 0.1:
        text = rng.choice([" ", "\t", "\u00a0", "\n"]) + text + rng.choice(["", " ", "\u3000"])
    return text


def _values(seed: int, count: int) -> Iterator[object]:
    rng = random.Random(seed)
    return (_random_date(rng) for _ in range(count))


@pytest.mark.parametrize("seed", range(4))
def test_parse_day_and_first_day_read_as_the_reference(seed: int) -> None:
    for value in _values(seed, 5000):
        for limits in LIMITS:
            assert parse_day(value, limits) == reference_parse_day(value, limits), value
            assert first_day(value, limits) == reference_first_day(value, limits), value


@pytest.mark.parametrize("seed", range(2))
def test_onset_span_reads_a_date_or_a_period_as_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    for value in _values(seed, 3000):
        name = rng.choice(["onsetDateTime", "onsetPeriod"])
        element = value if name == "onsetDateTime" else rng.choice([{"start": value}, {}, value])
        start = element.get("start") if isinstance(element, dict) else None
        read = value if name == "onsetDateTime" else start
        for limits in LIMITS:
            last = reference_parse_day(read, limits)
            first = reference_first_day(read, limits) if last else None
            expected = (name, first or last, last)
            assert onset_span({name: element}, None, limits) == expected, element


def test_remembered_readings_are_bounded_and_read_alike() -> None:
    long_text = "2026-11-30" + " " * 100
    assert parse_day(long_text, LIMITS[0]) == dt.date(2026, 11, 30)
    assert long_text not in dates._READINGS
    for value in _values(9, 3 * dates._READINGS_LIMIT):
        for limits in LIMITS:
            assert parse_day(value, limits) == reference_parse_day(value, limits), value
    assert len(dates._READINGS) <= dates._READINGS_LIMIT
