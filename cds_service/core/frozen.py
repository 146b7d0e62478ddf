"""Frozen dataclasses that are quick to build.

The `__init__` that `dataclasses` writes for a frozen class sets every field through
`object.__setattr__`, one call per field. The records read from a chart (findings, results, their
dates) are built by the hundred on every request, so `quick_init` gives them an `__init__` that
writes the same fields, with the same signature and defaults, straight into the instance's
`__dict__`. Nothing else changes: the class stays frozen (assignment raises), compares, hashes
and prints as before, and `dataclasses.replace` works as before.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Replace the `__init__` of a plain frozen dataclass by one that fills `__dict__` directly."""
    params = dataclasses.fields(cls)
    plain = (
        cls.__dataclass_params__.frozen
        and not hasattr(cls, "__post_init__")
        and not hasattr(cls, "__slots__")
        and len(params) == len(cls.__dataclass_fields__)
        and all(
            p.init and not p.kw_only and p.default_factory is dataclasses.MISSING for p in params
        )
    )
    if not plain:
        raise TypeError(f"{cls.__name__}: quick_init takes a frozen dataclass of plain fields")
    defaults = {
        f"_default_{p.name}": p.default for p in params if p.default is not dataclasses.MISSING
    }
    signature = ", ".join(
        p.name if p.default is dataclasses.MISSING else f"{p.name}=_default_{p.name}"
        for p in params
    )
    body = "".join(f"    fields[{p.name!r}] = {p.name}\n" for p in params)
    namespace: dict[str, object] = {}
    exec(
        f"def __init__(self, {signature}):\n    fields = self.__dict__\n{body}", defaults, namespace
    )
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {**cls.__init__.__annotations__}
    cls.__init__ = init
    return cls
