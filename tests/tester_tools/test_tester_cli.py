"""The testers' tools, end to end: `samples load` into the Node FHIR server, then `try`.

`try` runs both ways: with the service in process, and against `cds-service serve` on granian.
The commands run in this process through Click's test runner (exit status, standard output and
standard error as a terminal gets them); the FHIR server and `serve` are real processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from support.fhir_servers import NodeFhirServer
from support.served import free_port, serve, upgrade_database

from cds_service.cli import main
from cds_service.tester_tools.samples import load_index
from cds_service.tester_tools.tester import TryCall, render_cards

CHARTS = {c.name: c for c in load_index()[1]}
CRITICAL = CHARTS["ces-new-urinary-retention"]
QUIET = CHARTS["ces-entered-in-error"]


def cds(*args: str) -> Result:
    """`cds-service ARGS`; an unexpected exception fails the test with its traceback."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def try_patient(loaded: NodeFhirServer, patient_id: str, *extra: str) -> Result:
    """`cds-service try` for one patient of the loaded FHIR server, with its token."""
    return cds(
        "try",
        "--fhir-server",
        loaded.base,
        "--patient",
        patient_id,
        "--token",
        loaded.token,
        *extra,
    )


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cds-service: ")
    return lines[0]


@pytest.fixture(scope="module")
def loaded(fhir_server: NodeFhirServer) -> NodeFhirServer:
    result = cds("samples", "load", "--fhir-server", fhir_server.base, "--token", fhir_server.token)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith(f"{len(CHARTS)} sample charts")
    return fhir_server


def test_samples_load_puts_every_chart_on_the_server(loaded):
    for chart in CHARTS.values():
        assert loaded.get(f"Patient/{chart.patient_id}").status_code == 200, chart.name
    conditions = loaded.get(f"Condition?patient={CRITICAL.patient_id}").json()
    assert {e["resource"]["code"]["coding"][0]["code"] for e in conditions["entry"]} == {
        "M62.830",
        "R33.9",
    }


def test_samples_load_with_a_wrong_token_is_one_line(fhir_server):
    result = cds("samples", "load", "--fhir-server", fhir_server.base, "--token", "wrong")
    assert "HTTP 401" in one_line_error(result)


def test_samples_load_of_an_unknown_chart_is_one_line(fhir_server):
    result = cds("samples", "load", "--fhir-server", fhir_server.base, "--chart", "no-such")
    assert "no-such" in one_line_error(result)


@pytest.mark.parametrize("prefetch", [[], ["--no-prefetch"]], ids=["prefetch", "no-prefetch"])
def test_try_in_process_shows_the_cards(loaded, prefetch):
    result = try_patient(loaded, CRITICAL.patient_id, *prefetch)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("back-spasm-patient-view: 1 card for patient bs-ces-retention")
    assert " CRITICAL  Possible cauda equina syndrome" in out
    assert "R33.9" in out and "Condition/bs-ces-retention-urinary-retention" in out
    assert "Source: Back Spasm (reviewed" in out
    assert "\x1b[" not in out, "no colour when the output is not a terminal"
    assert ("none (the service fetched its data)" in out) == bool(prefetch)
    assert loaded.token not in result.output


def test_try_a_quiet_patient_says_so(loaded):
    result = try_patient(loaded, QUIET.patient_id)
    assert result.exit_code == 0, result.output
    assert "0 cards" in result.stdout and "No cards" in result.stdout


def test_try_encounter_start(loaded):
    result = try_patient(loaded, CRITICAL.patient_id, "--hook", "encounter-start", "--no-prefetch")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("back-spasm-encounter-start: 1 card")


def test_try_with_a_wrong_token_is_one_line(loaded):
    result = cds(
        "try", "--fhir-server", loaded.base, "--patient", CRITICAL.patient_id, "--token", "nope"
    )
    assert "check --token" in one_line_error(result)


def test_try_an_unknown_patient_is_one_line(loaded):
    result = cds(
        "try", "--fhir-server", loaded.base, "--patient", "nobody-here", "--token", loaded.token
    )
    assert "no Patient/nobody-here" in one_line_error(result)


def test_try_a_fhir_server_that_is_down_is_one_line():
    base = f"http://127.0.0.1:{free_port()}/fhir"
    result = cds("try", "--fhir-server", base, "--patient", CRITICAL.patient_id)
    assert "could not reach the FHIR server" in one_line_error(result)


# ---- against `cds-service serve` ----------------------------------------------------------------


@pytest.fixture(scope="module")
def running(loaded, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The service on granian, allowed to call the Node FHIR server; its URL and its log."""
    instance = tmp_path_factory.mktemp("instance")
    env = {
        **os.environ,
        "CDS_INSTANCE_PATH": str(instance),
        "CDS_ALLOWED_FHIR_SERVERS": loaded.base,
        "CDS_LOG_LEVEL": "DEBUG",
    }
    upgrade_database(env)
    served = serve(env, instance / "server.log", "--allow-unauthenticated")
    try:
        yield served.url, served.log
    finally:
        served.stop()


@pytest.mark.parametrize("prefetch", [[], ["--no-prefetch"]], ids=["prefetch", "no-prefetch"])
def test_try_against_a_running_service(loaded, running, prefetch):
    url, log = running
    given = url if prefetch else f"{url}/cds-services"  # the base URL, or the discovery URL
    result = try_patient(loaded, CRITICAL.patient_id, "--service", given, *prefetch)
    assert result.exit_code == 0, result.output
    assert " CRITICAL  Possible cauda equina syndrome" in result.stdout
    text = log.read_text()
    assert "POST /cds-services/back-spasm-patient-view" in text, "the service was called"
    assert loaded.token not in text, "the token is in no line of the server's log"
    if prefetch:  # no prefetch: the service fetched everything from the FHIR server
        assert (
            "FHIR server fallback for conditions, findings, labs, medication_requests, "
            "medication_statements, patient, vitals" in text
        )
        assert CRITICAL.patient_id not in text, "no patient id in the log (DEBUG level included)"


def test_try_against_a_service_that_is_down_is_one_line(loaded):
    url = f"http://127.0.0.1:{free_port()}"
    result = try_patient(loaded, CRITICAL.patient_id, "--service", url)
    assert "could not reach the service" in one_line_error(result)


# ---- how a card looks -------------------------------------------------------------------------


def test_cards_are_coloured_by_indicator_and_bold_is_bold():
    card = {
        "indicator": "critical",
        "summary": "Possible cauda equina syndrome",
        "detail": "**Red flags**\n\n- **Urinary retention**: R33.9\n\n---\n\nSources: article.\n",
        "source": {"label": "Back Spasm (reviewed 2018-11-19)"},
    }
    lines = render_cards(TryCall("svc", ("conditions",), [card]), "p-1", width=80)
    text = "\n".join(lines)
    assert click.style(" CRITICAL ", fg="white", bg="red") in text
    assert click.style("Red flags", bold=True) in text
    plain = click.unstyle(text)
    assert "**" not in plain and "---" not in plain
    assert "Source: Back Spasm (reviewed 2018-11-19)" in plain
    assert plain.startswith("svc: 1 card for patient p-1 (prefetch sent: conditions)")


# ---- order hooks: draft orders from a file ------------------------------------------------------

RELAXANT = {
    "resourceType": "MedicationRequest",
    "id": "draft-cyclobenzaprine",
    "status": "draft",
    "intent": "order",
    "medicationCodeableConcept": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "828348"}],
        "text": "Cyclobenzaprine 10 mg tablet",
    },
    "subject": {"reference": f"Patient/{CRITICAL.patient_id}"},
}


@pytest.mark.parametrize(
    ("hook", "document"),
    [
        ("order-sign", RELAXANT),  # a single resource
        ("order-select", {"resourceType": "Bundle", "entry": [{"resource": RELAXANT}]}),
    ],
)
def test_try_an_order_hook_with_draft_orders_from_a_file(loaded, tmp_path, hook, document):
    drafts = tmp_path / "drafts.json"
    drafts.write_text(json.dumps(document))
    result = try_patient(loaded, CRITICAL.patient_id, "--hook", hook, "--draft-orders", str(drafts))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"back-spasm-{hook}: 1 card for patient {CRITICAL.patient_id}"), out
    assert " CRITICAL  Emergency red flags: evaluate now before" in out
    assert "Cyclobenzaprine 10 mg tablet" in out


def test_try_an_order_hook_without_draft_orders_is_quiet(loaded):
    result = try_patient(loaded, CRITICAL.patient_id, "--hook", "order-sign")
    assert result.exit_code == 0, result.output
    assert "back-spasm-order-sign: 0 cards" in result.stdout


def test_draft_orders_that_are_not_fhir_are_one_line(tmp_path):
    drafts = tmp_path / "drafts.json"
    drafts.write_text("[1, 2]")
    result = cds(
        "try",
        "--fhir-server",
        "http://127.0.0.1:1/fhir",
        "--patient",
        "p",
        "--hook",
        "order-sign",
        "--draft-orders",
        str(drafts),
    )
    assert "neither a Bundle nor a FHIR resource" in one_line_error(result)


def test_draft_orders_on_a_hook_without_them_are_one_line(tmp_path):
    drafts = tmp_path / "drafts.json"
    drafts.write_text(json.dumps(RELAXANT))
    result = cds(
        "try",
        "--fhir-server",
        "http://127.0.0.1:1/fhir",
        "--patient",
        "p",
        "--draft-orders",
        str(drafts),
    )
    assert "the patient-view hook carries no draft orders" in one_line_error(result)


def test_the_hook_choices_are_the_registrys():
    result = CliRunner().invoke(main, ["try", "--help"])
    assert result.exit_code == 0
    assert "[patient-view|encounter-start|order-select|order-sign]" in result.output
    refused = CliRunner().invoke(main, ["samples", "request", "x", "--hook", "order-nothing"])
    assert refused.exit_code == 2 and "order-nothing" in refused.output
