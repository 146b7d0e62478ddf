"""The JSON depth scan that guards the parser counts only structure outside strings."""

from __future__ import annotations

import json

import pytest

from cds_service.web.body import json_depth


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("{}", 1),
        ('{"a": [1, {"b": [[]]}]}', 5),
        ('{"a": "]]]]]]", "b": [[[1]]]}', 4),  # brackets inside strings do not count
        ('{"a": "[[[[[[", "b": 1}', 1),
        ('{"a": "x\\"]]]\\"[[", "b": [[1]]}', 3),  # escaped quotes stay inside the string
        ('{"a": "\\\\", "b": [[[1]]]}', 4),  # an escaped backslash ends before the quote
        ('{"a": "\\n]]", "b": [1]}', 2),
        ('{"a": "\\u005d\\u005d", "b": [1]}', 2),
    ],
)
def test_depth(text, depth):
    json.loads(text)  # every case is valid JSON
    assert json_depth(text.encode()) == depth


def test_depth_of_deep_nesting():
    assert json_depth(b"[" * 3000 + b"]" * 3000) == 3000
