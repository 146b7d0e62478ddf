"""Service calls for the storage tests: a red-flag request, and a timed call."""

from __future__ import annotations

import time
from typing import Any

from support.builders import PATIENT_VIEW, condition, hook_body

URL = f"/cds-services/{PATIENT_VIEW}"
#: What "no delay" means on this machine for an in-process call that issues a card (it takes
#: a few milliseconds); a database wait would cost seconds (the timeouts are 2 s).
CALL_BOUND_S = 0.5


def red_flag_body(**overrides: Any) -> dict[str, Any]:
    conditions = [
        condition("M62.830", onset_days_ago=6, rid="spasm"),
        condition("R33.9", onset_days_ago=3, rid="retention"),
    ]
    return hook_body(conditions, **overrides)


def call(client, body: dict[str, Any] | None = None) -> tuple[Any, float]:
    started = time.perf_counter()
    response = client.post(URL, json=body or red_flag_body())
    return response, time.perf_counter() - started
