"""Default ranges remembered by `labs` read as freshly written ones."""

from __future__ import annotations

import dataclasses

from cds_service.core import labs


def test_remembered_default_ranges_read_as_written(kb) -> None:
    for measure in kb.measures.values():
        for unit, factor in measure.units.items():
            offset = measure.unit_offsets.get(unit, 0.0)
            for shown in (unit, unit.upper(), "", " x ", "u" * 80):
                fresh = labs._range_in_unit(
                    measure.default_low, measure.default_high, factor, shown, offset
                )
                for _ in range(2):
                    assert labs._default_range_text(measure, factor, shown, offset) == fresh


def test_a_zero_of_either_sign_is_never_taken_for_the_other(kb) -> None:
    measure = next(iter(kb.measures.values()))
    for low, high in ((0.0, 1.0), (-0.0, 1.0), (1.0, -0.0), (-1e-300, 2.0)):
        changed = dataclasses.replace(measure, default_low=low, default_high=high)
        for factor, offset in ((1.0, 0.0), (1.0, -0.0), (1e300, 0.0), (1e300, -0.0)):
            fresh = labs._range_in_unit(low, high, factor, "mmol/L", offset)
            assert labs._default_range_text(changed, factor, "mmol/L", offset) == fresh
