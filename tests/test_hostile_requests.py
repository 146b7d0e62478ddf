"""No request, however malformed, gets a 5xx: one to three elements anywhere in a service call
(envelope, context, draft orders, selections, prefetch) replaced by a value of another JSON type
get cards or a 4xx with an OperationOutcome, for the patient view and both order hooks."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from support.builders import hook_body
from support.hostile import ODD_VALUES, element_paths, replace_element
from test_order_hooks import RED_FLAGS, medicine, mri, order_body

CASES = 600


def _order_call(hook: str) -> dict[str, Any]:
    return order_body(hook, RED_FLAGS, [mri(), medicine()])


CALLS = {
    "back-spasm-patient-view": hook_body(RED_FLAGS),
    "back-spasm-order-select": _order_call("order-select"),
    "back-spasm-order-sign": _order_call("order-sign"),
}


def _cases() -> list[tuple[str, int]]:
    rng = random.Random(20261201)
    return [(rng.choice(sorted(CALLS)), rng.randrange(1 << 30)) for _ in range(CASES)]


@pytest.mark.parametrize(("service", "seed"), _cases())
def test_odd_elements_in_a_call_never_get_a_server_error(call, service: str, seed: int) -> None:
    rng = random.Random(seed)
    body = copy.deepcopy(CALLS[service])
    for _ in range(rng.choice([1, 1, 2, 3])):
        paths = element_paths(body)
        if not paths:
            break
        replace_element(body, rng.choice(paths), copy.deepcopy(rng.choice(ODD_VALUES)))

    response = call(body, service)

    answer = response.get_json()
    assert response.status_code in {200, 400, 412, 413, 422}, answer
    if response.status_code == 200:
        assert all(c["indicator"] in {"info", "warning", "critical"} for c in answer["cards"])
    else:
        assert answer["resourceType"] == "OperationOutcome"
        assert answer["issue"][0]["diagnostics"]
