"""The benchmark's layers of a served call (table 2b) each do the work they are named for."""

from __future__ import annotations

import datetime as dt

import pytest

from benchmarks.bench import LAYERS, SERVICE_PATH, Side, layer_table
from benchmarks.charts import hook_request
from benchmarks.layer_server import _without_audit_writes, layer_app
from cds_service import create_app
from cds_service.web.state import EXTENSION_KEY


@pytest.fixture(scope="module")
def chart() -> dict:
    return hook_request(100, dt.datetime.now(dt.UTC).date())


def _cards(response) -> list[tuple[str, str]]:
    assert response.status_code == 200
    return [(card["indicator"], card["summary"]) for card in response.json["cards"]]


def test_the_core_layer_answers_the_cards_the_service_answers(settings, chart):
    service = create_app(settings).test_client().post(SERVICE_PATH, json=chart)
    core = layer_app("core", settings).test_client().post(SERVICE_PATH, json=chart)
    assert _cards(service)  # the chart gives cards: the layer is measured doing real work
    assert _cards(core) == _cards(service)


@pytest.mark.parametrize("layer", ["stack", "parse"])
def test_the_stack_and_parse_layers_answer_no_cards(settings, chart, layer):
    response = layer_app(layer, settings).test_client().post(SERVICE_PATH, json=chart)
    assert _cards(response) == []


def test_only_the_parse_layer_parses_the_body(settings):
    def post(layer: str) -> int:
        client = layer_app(layer, settings).test_client()
        body = b'{"hook": "patient-view",'
        headers = {"Content-Type": "application/json"}
        return client.post(SERVICE_PATH, data=body, headers=headers).status_code

    assert post("stack") == 200
    assert post("parse") == 500  # the body reader's refusal, unanswered in this bare app


def test_without_audit_writes_the_service_answers_as_usual_with_no_writer(settings, chart):
    app = _without_audit_writes(settings)
    assert app.extensions[EXTENSION_KEY].audit is None
    service = create_app(settings).test_client().post(SERVICE_PATH, json=chart)
    assert _cards(app.test_client().post(SERVICE_PATH, json=chart)) == _cards(service)


def test_the_layer_table_adds_each_layer_over_the_one_before_and_names_the_database():
    cpu = {"stack": 200.0, "parse": 650.0, "core": 1700.0, "no-audit-writes": 1900.0}
    cpu |= {"ours": 2300.0, "floor": 1000.0}
    sides = {name: Side([100.0], [10.0], [us]) for name, us in cpu.items()}
    rows = layer_table(sides, "postgresql")
    assert [row[0] for row in rows] == [*LAYERS, "ours", "floor"]
    assert [row[4] for row in rows] == ["+200", "+450", "+1,050", "+200", "+400", ""]
    assert rows[0][1].endswith('{"cards": []}')
    assert "(postgresql)" in rows[-2][1]
