"""A quickly built frozen dataclass behaves as the one `dataclasses` builds."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect

import pytest

from cds_service.core.findings import Dated, Finding, Measurement, Skipped
from cds_service.core.frozen import quick_init
from cds_service.core.knowledge import Coding
from cds_service.core.labs import Reading


@dataclasses.dataclass(frozen=True)
class Plain:
    kind: str
    day: dt.date
    notes: tuple[str, ...] = ()
    review: str | None = None


@quick_init
@dataclasses.dataclass(frozen=True)
class Quick:
    kind: str
    day: dt.date
    notes: tuple[str, ...] = ()
    review: str | None = None


def _fields(record: object) -> dict[str, object]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def test_same_signature_fields_equality_hash_and_repr() -> None:
    assert str(inspect.signature(Quick)) == str(inspect.signature(Plain))
    day = dt.date(2026, 12, 1)
    for args, kwargs in [
        (("a", day), {}),
        (("a",), {"day": day, "review": "x"}),
        ((), {"kind": "b", "day": day, "notes": ("n",)}),
    ]:
        plain, quick = Plain(*args, **kwargs), Quick(*args, **kwargs)
        assert _fields(plain) == _fields(quick)
        assert repr(quick) == repr(plain).replace("Plain", "Quick")
        assert quick == Quick(*args, **kwargs) and hash(quick) == hash(Quick(*args, **kwargs))
    assert Quick("a", day) != Quick("a", day, review="x")


def test_still_frozen_and_replace_works() -> None:
    quick = Quick("a", dt.date(2026, 12, 1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.kind = "b"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del quick.kind  # type: ignore[misc]
    assert dataclasses.replace(quick, review="r") == Quick("a", dt.date(2026, 12, 1), (), "r")


def test_wrong_arguments_fail_as_before() -> None:
    for bad in [(), ("a", dt.date(2026, 12, 1), (), None, "extra")]:
        with pytest.raises(TypeError):
            Quick(*bad)
    with pytest.raises(TypeError):
        Quick("a", dt.date(2026, 12, 1), colour="red")  # type: ignore[call-arg]


def test_only_plain_frozen_dataclasses_are_taken() -> None:
    @dataclasses.dataclass
    class Mutable:
        x: int

    @dataclasses.dataclass(frozen=True)
    class Factory:
        x: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True)
    class Later:
        x: int

        def __post_init__(self) -> None:
            pass

    for cls in (Mutable, Factory, Later):
        with pytest.raises(TypeError):
            quick_init(cls)


def test_the_records_of_a_chart_are_quick() -> None:
    for cls in (Dated, Finding, Measurement, Skipped, Reading):
        parameters = list(inspect.signature(cls).parameters.values())
        assert [(p.name, p.default) for p in parameters] == [
            (f.name, inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
            for f in dataclasses.fields(cls)
        ]
    coding = Coding("s", "c", "d")
    finding = Finding(("Condition/1",), "Condition", frozenset({"v"}), coding, ())
    assert finding.timing == "unknown" and finding.notes == () and finding.review is None
