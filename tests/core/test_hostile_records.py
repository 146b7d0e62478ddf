"""No record, however malformed, makes the core raise: any element of any resource replaced by a
value of another JSON type still gives an answer (a 500 would block the clinician's workflow).

The resources are those of the sample charts; each case replaces one element, at any depth, with
a list, an object, a number, a boolean, null or an odd string, and runs the whole core (findings,
rules, cards, the FHIR models' check) for the patient view, and for an order hook with the
chart's own orders and medicines read as drafts.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from support.builders import TODAY
from support.hostile import ODD_VALUES, element_paths, replace_element

from cds_service.core.order_advice import recognise
from cds_service.core.pipeline import decide, decide_orders
from cds_service.tester_tools.samples import bundle_resources, load_chart, load_index

_, CHARTS = load_index()
CASES = 1500
PATIENT_VIEW, ORDER_SIGN = "back-spasm-patient-view", "back-spasm-order-sign"


def _uuid() -> str:
    return "00000000-0000-4000-8000-000000000000"


def _cases() -> list[tuple[str, int]]:
    rng = random.Random(20261201)
    return [(rng.choice(CHARTS).name, rng.randrange(1 << 30)) for _ in range(CASES)]


@pytest.fixture(scope="module")
def charts() -> dict[str, tuple[list[dict[str, Any]], str]]:
    return {c.name: (bundle_resources(load_chart(c, TODAY)), c.patient_id) for c in CHARTS}


@pytest.mark.parametrize(("chart_name", "seed"), _cases())
def test_one_odd_element_never_makes_the_core_raise(kb, charts, chart_name: str, seed: int) -> None:
    rng = random.Random(seed)
    resources, patient_id = charts[chart_name]
    resources = copy.deepcopy(resources)
    resource = rng.choice(resources)
    path = rng.choice(element_paths(resource) or [("id",)])
    replace_element(resource, path, copy.deepcopy(rng.choice(ODD_VALUES)))

    view = decide(kb, resources, patient_id, TODAY, 10, _uuid, service=kb.services[PATIENT_VIEW])
    drafts = [order for r in resources if (order := recognise(kb, r))]
    sign = kb.services[ORDER_SIGN]
    orders = decide_orders(kb, resources, drafts, patient_id, TODAY, _uuid, service=sign)

    for card in (*view.cards, *orders.cards):
        assert card.json["summary"] and card.json["indicator"] in {"info", "warning", "critical"}
