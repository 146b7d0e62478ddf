"""Two string rules the request checks share with the OpenAPI contract, so that both agree.

- blank: nothing but white space and control characters. The contract's pattern for a
  non-blank string is `[^\\s\\x00-\\x1f\\x7f-\\x9f\\ufeff]`: the same set in JSON Schema's
  (ECMA-262) regular expressions as in Python's, although their `\\s` differ.
- URI: an absolute URI as RFC 3986 spells it (a scheme, then only URI characters), which is
  what the contract's `format: uri` means.
"""

from __future__ import annotations

import re

_BLANK = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ufeff]*")
_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
)


def is_blank(value: str) -> bool:
    return _BLANK.fullmatch(value) is not None


def is_uri(value: str) -> bool:
    return _URI.fullmatch(value) is not None
