"""Bounded tables of remembered results, for readings that recur from call to call."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: dict[K, V], key: K, value: V, limit: int) -> V:
    """Keep `value` under `key` in a table of at most `limit` entries (when full, it is emptied
    first: a worker's memory stays bounded whatever its callers send); return the value."""
    if len(table) >= limit:
        table.clear()
    table[key] = value
    return value
