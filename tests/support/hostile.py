"""Hostile JSON for the fuzz tests: odd values of every JSON type, and where to put them."""

from __future__ import annotations

from typing import Any

#: Values put in place of an element: each of another JSON type, or an odd string.
ODD_VALUES: list[Any] = [
    [],
    ["2823-3"],
    [{"code": "R33.9"}],
    {},
    {"coding": "R33.9"},
    0,
    -1.5,
    10**30,
    True,
    None,
    "",
    " ",
    "R33.9",
    "x" * 300,
    "2026-13-45",
]


def element_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every element's path in a JSON value (object keys and list indexes)."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return []
    paths = []
    for key, child in items:
        paths.append((*prefix, key))
        paths += element_paths(child, (*prefix, key))
    return paths


def replace_element(resource: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = resource
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
