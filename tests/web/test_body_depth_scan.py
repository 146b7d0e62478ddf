"""The depth scan answers as the plain bracket-by-bracket count does, on any bytes at all."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from itertools import accumulate

import pytest

from benchmarks.charts import hook_request
from cds_service.web.body import json_depth

_ESCAPES = re.compile(rb"\\.", re.DOTALL)
_STEP = {ord("{"): 1, ord("["): 1, ord("}"): -1, ord("]"): -1}


def reference_depth(raw: bytes) -> int:
    """Escapes out, then every bracket outside quotes counted one by one."""
    raw = _ESCAPES.sub(b"", raw)
    outside = b"".join(raw.split(b'"')[0::2])
    brackets = [_STEP[b] for b in outside if b in _STEP]
    return max(accumulate(brackets)) if brackets else 0


ALPHABET = b'{}[]"\\:,a 1'


@pytest.mark.parametrize("seed", range(300))
def test_random_bytes(seed: int) -> None:
    rng = random.Random(seed)
    raw = bytes(rng.choice(ALPHABET) for _ in range(rng.randint(0, 80)))
    assert json_depth(raw) == reference_depth(raw)


@pytest.mark.parametrize("seed", range(100))
def test_random_json(seed: int) -> None:
    rng = random.Random(seed)

    def value(depth: int) -> object:
        pick = rng.random()
        if depth > 40 or pick < 0.3:
            return rng.choice(["a", "{[", '"}"', "\\", "", 1, None, "]]]]"])
        if pick < 0.65:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        keys = ["k", "{", "[]", ""]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(0, 3))}

    raw = json.dumps(value(0)).encode()
    assert json_depth(raw) == reference_depth(raw)
    truncated = raw[: rng.randint(0, len(raw))]
    assert json_depth(truncated) == reference_depth(truncated)


@pytest.mark.parametrize("depth", [1, 31, 32, 33, 64, 65, 200])
def test_deep_nesting_on_both_sides_of_the_peeling_limit(depth: int) -> None:
    for raw in (
        b"[" * depth + b"]" * depth,
        b"{" + b'"a":[' * (depth - 1) + b"]" * (depth - 1) + b"}",
        b"[" * depth + b"]" * (depth - 1),
        b"[" * depth + b"}" * depth,
        b"[]" * depth + b"[" * depth + b"]" * depth,
    ):
        assert json_depth(raw) == reference_depth(raw)


def test_generated_charts() -> None:
    for size in (0, 1, 100):
        raw = json.dumps(hook_request(size, dt.date(2026, 11, 30))).encode()
        assert json_depth(raw) == reference_depth(raw)
