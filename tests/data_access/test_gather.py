"""The prefetch contract with the FHIR-server fallback, against real FHIR servers on loopback.

The Node FHIR server (Medplum's FHIR router, in memory, bearer token required) holds the test
patients; a scripted Python stub plays the servers that misbehave; a silent socket proves that a
server the configuration does not allow is never contacted.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support.builders import (
    FIXED_NOW,
    PATIENT_VIEW,
    TODAY,
    cards_of,
    condition,
    observation,
    quantity,
    searchset,
)
from support.fhir_servers import NodeFhirServer, connections_waiting
from support.instances import migrated_instance

from cds_service import Settings, create_app
from cds_service.core.envelope import parse_envelope
from cds_service.data_access.fhir_client import FhirClient
from cds_service.data_access.fhir_policy import AccessPolicy
from cds_service.data_access.gather import DataMissing, FhirAccess, PatientData, gather_patient_data
from cds_service.web.caller import Caller, set_caller

LOINC_POTASSIUM = "2823-3"
REQUIRED = {"conditions", "labs", "findings"}
#: the optional keys of the guideline red flags: vital signs and medicines
EXTRAS = ("medication_requests", "medication_statements", "vitals")
NO_EXTRAS: dict[str, Any] = dict.fromkeys(EXTRAS)
EVERY_KEY = sorted(("patient", *REQUIRED, *EXTRAS))
BUDGET = 0.6  # seconds; the apps of these tests use it so that the failure tests stay quick
MARGIN = 0.4  # seconds of slack on top of the budget for a whole service call


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "male", "birthDate": "1970-01-01"}


def body_for(pid: str, base: str | None, token: str | None, prefetch: Any = None) -> dict:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": pid},
    }
    if base:
        body["fhirServer"] = base
    if token:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/Condition.read patient/Observation.read patient/Patient.read",
            "subject": "back-spasm-cds",
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def make_app(tmp_path, **overrides: Any):
    config = {"allow_unauthenticated": True, "fhir_budget_seconds": BUDGET, **overrides}
    settings = Settings(instance_path=migrated_instance(tmp_path), **config)
    return create_app(settings, clock=lambda: FIXED_NOW)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """Development mode (no JWT), on the tests' fixed clock, with a short FHIR budget."""
    return make_app(tmp_path_factory.mktemp("instance"))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def patient_app(tmp_path_factory):
    """The same with a long FHIR budget: a test of what an answer says, not of the budget, must
    get the answer even on a loaded machine."""
    return make_app(tmp_path_factory.mktemp("patient-instance"), fhir_budget_seconds=10)


def post(client, body: dict) -> Any:
    return client.post(f"/cds-services/{PATIENT_VIEW}", json=body)


def missing_reasons(response) -> dict[str, str]:
    assert response.status_code == 412, response.get_data(as_text=True)
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    return {
        i["expression"][0].removeprefix("prefetch."): i["diagnostics"] for i in outcome["issue"]
    }


def fetched_keys(server: NodeFhirServer) -> list[str]:
    """Which prefetch queries reached the server, by resource and parameter."""
    out = []
    for seen in server.requests_seen():
        path = seen["path"].removeprefix("/fhir/")
        if path.startswith("Patient/"):
            out.append("patient")
        elif path == "Condition":
            out.append("conditions")
        elif path == "Observation" and "vital-signs" in seen["query"]:
            out.append("vitals")
        elif path == "Observation":
            out.append("labs" if "code=" in seen["query"] else "findings")
        elif path == "MedicationRequest":
            out.append("medication_requests")
        elif path == "MedicationStatement":
            out.append("medication_statements")
    return sorted(out)


# ---- A patient with a red flag, for the contract rows ----------------------------------------

RED = "bs-fb-red"


def red_flag_resources(pid: str = RED) -> list[dict[str, Any]]:
    return [
        patient(pid),
        condition("M62.830", patient=pid, rid=f"{pid}-spasm", onset_days_ago=3),
        condition("R33.9", patient=pid, rid=f"{pid}-retention", onset_days_ago=1),
        observation(
            LOINC_POTASSIUM,
            patient=pid,
            rid=f"{pid}-k",
            days=2,
            valueQuantity=quantity(3.0, "mmol/L"),
            category=[
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory",
                        }
                    ]
                }
            ],
        ),
    ]


@pytest.fixture(scope="module")
def red(fhir_server) -> str:
    fhir_server.load(transaction(red_flag_resources()))
    return RED


@pytest.fixture
def seen(fhir_server) -> Iterator[NodeFhirServer]:
    fhir_server.forget_requests()
    yield fhir_server


def full_prefetch(kb, pid: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    from cds_service.tester_tools.local_search import prefetch_for

    return prefetch_for(kb, resources, {"patientId": pid, "userId": "Practitioner/dr-1"}, TODAY)


def test_no_prefetch_at_all_fetches_every_key_with_the_token(client, red, seen):
    cards = cards_of(post(client, body_for(red, seen.base, seen.token)))
    assert [c["indicator"] for c in cards] == ["critical", "info"]
    assert fetched_keys(seen) == EVERY_KEY
    assert {r["auth"] for r in seen.requests_seen()} == {"valid"}
    assert {r["accept"] for r in seen.requests_seen()} == {"application/fhir+json"}


def test_full_prefetch_fetches_nothing(client, kb, red, seen):
    prefetch = full_prefetch(kb, red, red_flag_resources())
    cards = cards_of(post(client, body_for(red, seen.base, seen.token, prefetch)))
    assert [c["indicator"] for c in cards] == ["critical", "info"]
    assert seen.requests_seen() == []


@pytest.mark.parametrize("absent", [["labs"], ["conditions", "findings"], ["patient"]])
def test_only_absent_keys_are_fetched(client, kb, red, seen, absent):
    prefetch = full_prefetch(kb, red, red_flag_resources())
    for key in absent:
        del prefetch[key]
    cards = cards_of(post(client, body_for(red, seen.base, seen.token, prefetch)))
    assert [c["indicator"] for c in cards] == ["critical", "info"]
    assert fetched_keys(seen) == sorted(absent)


def test_a_mix_gives_the_same_cards_as_prefetch(client, kb, red, seen):
    full = full_prefetch(kb, red, red_flag_resources())
    mixed = {"conditions": full["conditions"]}  # labs, findings and patient from the server
    expected = cards_of(post(client, body_for(red, None, None, full)))
    got = cards_of(post(client, body_for(red, seen.base, seen.token, mixed)))
    assert [strip(c) for c in got] == [strip(c) for c in expected]
    assert fetched_keys(seen) == sorted(set(EVERY_KEY) - {"conditions"})


OUTCOME_ERROR = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "timeout", "diagnostics": "backend timed out"}],
}


def test_an_operation_outcome_is_fetched_again(client, kb, red, seen):
    prefetch = full_prefetch(kb, red, red_flag_resources())
    prefetch["conditions"] = OUTCOME_ERROR
    cards = cards_of(post(client, body_for(red, seen.base, seen.token, prefetch)))
    assert cards[0]["indicator"] == "critical"
    assert fetched_keys(seen) == ["conditions"]


def test_a_bundle_with_an_outcome_entry_is_fetched_again(client, kb, red, seen):
    prefetch = full_prefetch(kb, red, red_flag_resources())
    prefetch["conditions"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": OUTCOME_ERROR, "search": {"mode": "outcome"}}],
    }
    cards = cards_of(post(client, body_for(red, seen.base, seen.token, prefetch)))
    assert cards[0]["indicator"] == "critical"
    assert fetched_keys(seen) == ["conditions"]


@pytest.mark.parametrize(
    "nothing", [None, {"resourceType": "Bundle", "type": "searchset", "total": 0}]
)
def test_null_and_empty_mean_no_data_and_are_not_fetched(client, kb, red, seen, nothing):
    prefetch = full_prefetch(kb, red, red_flag_resources())
    prefetch["conditions"] = nothing
    cards = cards_of(post(client, body_for(red, seen.base, seen.token, prefetch)))
    assert "critical" not in [c["indicator"] for c in cards], "no conditions: no red flag"
    assert seen.requests_seen() == []


def test_without_fhir_server_a_missing_key_is_412_naming_why(client, red):
    reasons = missing_reasons(post(client, body_for(red, None, None, {})))
    assert set(reasons) == REQUIRED
    assert all("no fhirServer" in r for r in reasons.values())


# ---- Paging ------------------------------------------------------------------------------------

PAGED = "bs-fb-paged"
NOISE = 44  # unrelated conditions before the red flag: three pages of 20


def paged_resources(pid: str = PAGED) -> list[dict[str, Any]]:
    noise = [
        condition("I10", patient=pid, rid=f"{pid}-htn-{i:02d}", onset_days_ago=400)
        for i in range(NOISE)
    ]
    return [
        patient(pid),
        *noise,
        condition("M62.830", patient=pid, rid=f"{pid}-spasm", onset_days_ago=3),
        condition("R33.9", patient=pid, rid=f"{pid}-retention", onset_days_ago=1),
    ]


@pytest.fixture(scope="module")
def paged(fhir_server, open_fhir_server) -> str:
    fhir_server.load(transaction(paged_resources()))
    open_fhir_server.load(transaction(paged_resources()))
    return PAGED


def first_page(server: NodeFhirServer, pid: str) -> dict[str, Any]:
    response = server.get(f"Condition?patient={pid}")
    assert response.status_code == 200
    bundle = response.json()
    assert any(link["relation"] == "next" for link in bundle["link"]), "the server pages"
    assert len(bundle["entry"]) == 20
    return bundle


def test_a_search_of_several_pages_is_read_to_the_end(client, paged, seen):
    cards = cards_of(post(client, body_for(paged, seen.base, seen.token)))
    assert cards[0]["indicator"] == "critical", "the red flags are on the third page"
    assert fetched_keys(seen).count("conditions") == 3


def test_a_prefetched_first_page_is_followed_with_the_token(client, paged, seen):
    prefetch = {"conditions": first_page(seen, paged), "labs": None, "findings": None, **NO_EXTRAS}
    seen.forget_requests()
    cards = cards_of(post(client, body_for(paged, seen.base, seen.token, prefetch)))
    assert cards[0]["indicator"] == "critical"
    assert fetched_keys(seen) == ["conditions", "conditions", "patient"]
    assert {r["auth"] for r in seen.requests_seen()} == {"valid"}


def test_a_prefetched_first_page_is_followed_on_an_open_server_in_development(
    client, paged, open_fhir_server
):
    prefetch = {"conditions": first_page(open_fhir_server, paged), "labs": None, "findings": None}
    body = body_for(paged, open_fhir_server.base, None, prefetch)
    assert cards_of(post(client, body))[0]["indicator"] == "critical"


def test_more_pages_than_the_bound_is_missing(tmp_path, paged, seen):
    client = make_app(tmp_path, fhir_max_pages=2).test_client()
    reasons = missing_reasons(post(client, body_for(paged, seen.base, seen.token)))
    assert set(reasons) == {"conditions"}
    assert "more than 2 pages" in reasons["conditions"]
    assert fetched_keys(seen).count("conditions") == 2


def test_a_next_link_to_another_origin_is_never_followed(client, paged, seen, stub_server):
    page = first_page(seen, paged)
    for link in page["link"]:
        if link["relation"] == "next":
            link["url"] = f"{stub_server.base}/Condition?patient={paged}&_offset=20"
    prefetch = {"conditions": page, "labs": None, "findings": None, "patient": None, **NO_EXTRAS}
    seen.forget_requests()
    reasons = missing_reasons(post(client, body_for(paged, seen.base, seen.token, prefetch)))
    assert "outside the fhirServer base" in reasons["conditions"]
    assert stub_server.seen == []
    assert seen.requests_seen() == []


# ---- The token is transient ----------------------------------------------------------------


def test_the_token_is_in_no_log_line_and_no_answer(client, red, seen, caplog):
    caplog.set_level(logging.DEBUG)
    cards = cards_of(post(client, body_for(red, seen.base, seen.token)))
    refused = post(client, body_for(red, seen.base, f"{seen.token}-wrong"))
    assert refused.status_code == 412
    assert caplog.records, "the calls were logged"
    assert seen.token not in caplog.text
    assert seen.token not in refused.get_data(as_text=True)
    assert seen.token not in str(cards)
    assert red not in refused.get_data(as_text=True), "no patient id in the 412"


def test_connections_are_pooled_across_calls(client, red, seen):
    for _ in range(3):
        cards_of(post(client, body_for(red, seen.base, seen.token)))
    ports = {r["port"] for r in seen.requests_seen()}
    assert len(seen.requests_seen()) == 3 * len(EVERY_KEY)
    assert len(ports) <= len(EVERY_KEY), "the parallel queries reuse their connections"


# ---- Failures: 412 within the budget -------------------------------------------------------


def timed(client, body) -> tuple[Any, float]:
    started = time.monotonic()
    response = post(client, body)
    return response, time.monotonic() - started


def test_a_wrong_token_is_412_within_the_budget(client, red, seen):
    response, elapsed = timed(client, body_for(red, seen.base, "not-the-token"))
    reasons = missing_reasons(response)
    assert set(reasons) == REQUIRED
    assert all("HTTP 401" in r for r in reasons.values())
    assert elapsed < BUDGET + MARGIN


def test_a_server_that_is_down_is_412_within_the_budget(client, red):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    response, elapsed = timed(client, body_for(red, f"http://127.0.0.1:{port}/fhir", "t"))
    reasons = missing_reasons(response)
    assert all("could not connect" in r for r in reasons.values())
    assert elapsed < BUDGET + MARGIN


def test_a_slow_server_is_412_within_the_default_budget(tmp_path, red, stub_server):
    settings_default = Settings()
    client = make_app(tmp_path, fhir_budget_seconds=settings_default.fhir_budget_seconds)
    stub_server.delay = settings_default.fhir_budget_seconds + 3
    response, elapsed = timed(client.test_client(), body_for(red, stub_server.base, "t"))
    reasons = missing_reasons(response)
    assert set(reasons) == REQUIRED
    assert all("in time" in r or "budget" in r for r in reasons.values()), reasons
    assert elapsed < settings_default.fhir_budget_seconds + MARGIN
    assert len(stub_server.seen) == len(EVERY_KEY), "every missing key was asked, in parallel"


def test_the_queries_run_in_parallel(client, red, stub_server):
    stub_server.delay = 0.2
    stub_server.reply = lambda path: (200, {}, searchset([]))
    response, elapsed = timed(client, body_for(red, stub_server.base, "t"))
    assert response.status_code == 200
    assert len(stub_server.seen) == len(EVERY_KEY)
    assert elapsed < 0.2 * 2, f"{len(EVERY_KEY)} 0.2 s queries took {elapsed:.2f} s"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ((500, {}, OUTCOME_ERROR), "HTTP 500"),
        ((503, {}, b"unavailable"), "HTTP 503"),
        ((403, {}, OUTCOME_ERROR), "HTTP 403"),
        ((200, {"Content-Type": "text/html"}, b"<html>login</html>"), "not FHIR JSON"),
        ((200, {}, b'{"resourceType": "Bundle", "entry": ['), "not valid JSON"),
        ((200, {}, [1, 2]), "not a FHIR resource"),
        ((200, {}, OUTCOME_ERROR), "OperationOutcome"),
        ((200, {}, {"resourceType": "Patient", "id": "x"}), "not a searchset"),
        ((302, {"Location": "http://127.0.0.1:1/fhir/Condition"}, b""), "redirect"),
    ],
)
def test_a_bad_answer_counts_as_missing(patient_app, red, stub_server, reply, reason):
    stub_server.reply = lambda path: reply
    client = patient_app.test_client()
    reasons = missing_reasons(post(client, body_for(red, stub_server.base, "t")))
    assert set(reasons) == REQUIRED
    assert all(reason in r for r in reasons.values()), reasons


def test_another_patient_s_entry_is_dropped_and_logged_the_patient_s_own_data_count(
    client, red, stub_server, caplog
):
    other = condition("R33.9", patient="someone-else", rid="other-retention")

    def reply(path: str):
        if path.startswith("/fhir/Patient/"):
            return 404, {}, OUTCOME_ERROR
        own = [condition("M62.830", patient=red), condition("G83.4", patient=red, rid="own-ces")]
        return 200, {}, searchset([other, *own])

    stub_server.reply = reply
    with caplog.at_level(logging.WARNING, logger="cds_service.data_access.gather"):
        cards = cards_of(post(client, body_for(red, stub_server.base, "t")))
    assert [c["indicator"] for c in cards] == ["critical"]
    assert "own-ces" in cards[0]["detail"]
    assert "other-retention" not in str(cards) and "someone-else" not in str(cards)
    assert any("another patient" in r.getMessage() for r in caplog.records)
    assert not any("someone-else" in r.getMessage() for r in caplog.records)


def test_a_404_on_the_patient_read_leaves_the_optional_key_missing(client, red, stub_server):
    def reply(path: str):
        if path.startswith("/fhir/Patient/"):
            return 404, {}, OUTCOME_ERROR
        return 200, {}, searchset([condition("M62.830", patient=red)])

    stub_server.reply = reply
    cards = cards_of(post(client, body_for(red, stub_server.base, "t")))
    assert [c["indicator"] for c in cards] == ["info"]


# ---- Which servers are contacted -----------------------------------------------------------


def test_an_https_server_not_allowed_is_never_contacted(client, red, silent_port):
    port = silent_port.getsockname()[1]
    response = post(client, body_for(red, f"https://127.0.0.1:{port}/fhir", "t"))
    reasons = missing_reasons(response)
    assert all("not an allowed FHIR server" in r for r in reasons.values())
    assert connections_waiting(silent_port) == 0


@pytest.fixture
def fhir_client() -> Iterator[FhirClient]:
    client = FhirClient(connect_timeout=0.5, read_timeout=1.0, max_body_bytes=10_000_000)
    try:
        yield client
    finally:
        client.close()


def gather(kb, fhir_client, body: dict, policy: AccessPolicy, **options: Any) -> PatientData:
    access = FhirAccess(
        client=fhir_client,
        policy=policy,
        budget_seconds=options.get("budget", 2.0),
        max_pages=options.get("max_pages", 10),
        today=TODAY,
    )
    request = parse_envelope(body, kb.hooks["patient-view"])
    return gather_patient_data(
        kb.services[PATIENT_VIEW], request, max_resources=20_000, fhir=access
    )


def test_production_contacts_no_unlisted_server(kb, fhir_client, red, silent_port):
    port = silent_port.getsockname()[1]
    body = body_for(red, f"http://127.0.0.1:{port}/fhir", "t")
    with pytest.raises(DataMissing) as info:
        gather(kb, fhir_client, body, AccessPolicy.of(["https://ehr.example.org/fhir"]))
    assert set(info.value.missing) == REQUIRED
    assert connections_waiting(silent_port) == 0


def test_production_uses_a_listed_server_with_the_token(kb, fhir_client, red, seen):
    body = body_for(red, seen.base, seen.token)
    data = gather(kb, fhir_client, body, AccessPolicy.of([seen.base]))
    assert data.origin == dict.fromkeys(EVERY_KEY, "fhir server")
    assert fetched_keys(seen) == EVERY_KEY


def test_production_never_uses_an_open_server(kb, fhir_client, red, open_fhir_server):
    open_fhir_server.forget_requests()
    body = body_for(red, open_fhir_server.base, None)
    with pytest.raises(DataMissing) as info:
        gather(kb, fhir_client, body, AccessPolicy.of([open_fhir_server.base]))
    assert all("fhirAuthorization" in r for r in info.value.missing.values())
    assert open_fhir_server.requests_seen() == []


def test_production_does_not_follow_a_next_link_without_a_token(kb, fhir_client, paged, seen):
    prefetch = {"conditions": first_page(seen, paged), "labs": None, "findings": None, **NO_EXTRAS}
    seen.forget_requests()
    body = body_for(paged, seen.base, None, prefetch)
    with pytest.raises(DataMissing) as info:
        gather(kb, fhir_client, body, AccessPolicy.of([seen.base]))
    assert set(info.value.missing) == {"conditions"}
    assert "more pages" in info.value.missing["conditions"]
    assert seen.requests_seen() == []


def test_a_patient_read_with_another_id_is_missing(kb, fhir_client, red, stub_server):
    def reply(path: str):
        if path.startswith("/fhir/Patient/"):
            return 200, {}, patient("someone-else")
        return 200, {}, searchset([])

    stub_server.reply = reply
    body = body_for(red, stub_server.base, "t")
    data = gather(kb, fhir_client, body, AccessPolicy.of([stub_server.base]))
    assert data.origin["patient"] == "missing"
    assert data.origin["conditions"] == "fhir server"


def test_the_caller_s_fhir_servers_are_allowed(app):
    from cds_service.web.services import _fhir_access
    from cds_service.web.state import state

    with app.test_request_context():
        set_caller(Caller(issuer="https://ehr", jti="1", fhir_servers=("https://EHR/fhir/",)))
        access = _fhir_access(state())
    assert access is not None
    assert "https://ehr/fhir" in access.policy.allowed
    assert access.policy.development is True
    assert access.budget_seconds == BUDGET
    assert access.today == FIXED_NOW.date()


# ---- Every sample chart: prefetch, fallback and a mix give the same cards -------------------


def strip(card: dict[str, Any]) -> dict[str, Any]:
    """A card without its uuid, which is new on every call, nor its suggestions' (derived)."""
    out = {k: v for k, v in card.items() if k != "uuid"}
    if "suggestions" in out:
        out["suggestions"] = [
            {k: v for k, v in s.items() if k != "uuid"} for s in out["suggestions"]
        ]
    return out


@pytest.fixture(scope="module")
def loaded_charts(fhir_server):
    from cds_service.tester_tools.samples import load_chart, load_index

    _, charts = load_index()
    for chart in charts:
        fhir_server.load(load_chart(chart, TODAY))
    return charts


def chart_ids() -> list[str]:
    """The charts played on patient-view (the order charts' cards are the order hook's)."""
    from cds_service.tester_tools.samples import load_index

    return [c.name for c in load_index()[1] if c.hook == "patient-view"]


@pytest.mark.parametrize("name", chart_ids())
def test_every_chart_gives_the_same_cards_from_prefetch_fallback_and_a_mix(
    client, kb, loaded_charts, fhir_server, name
):
    from cds_service.tester_tools.samples import sample_request

    chart = next(c for c in loaded_charts if c.name == name)
    prefetched = sample_request(kb, chart, TODAY)
    pid = chart.patient_id
    base, token = fhir_server.base, fhir_server.token
    by_prefetch = cards_of(post(client, prefetched))
    by_fallback = cards_of(post(client, body_for(pid, base, token, {})))
    mix = {k: v for k, v in prefetched["prefetch"].items() if k in ("conditions", "patient")}
    mix["labs"] = OUTCOME_ERROR
    by_mix = cards_of(post(client, body_for(pid, base, token, mix)))
    assert [c["indicator"] for c in by_prefetch] == list(chart.indicators)
    assert [strip(c) for c in by_fallback] == [strip(c) for c in by_prefetch]
    assert [strip(c) for c in by_mix] == [strip(c) for c in by_prefetch]


def test_the_charts_are_not_all_quiet(loaded_charts):
    """The comparison above means something only if charts give cards of every kind."""
    played = [c for c in loaded_charts if c.name in chart_ids()]
    kinds = {i for c in played for i in c.indicators}
    assert kinds == {"critical", "warning", "info"}
    assert any(not c.indicators for c in played)


def test_dates_roll_with_the_clock(tmp_path, kb, fhir_server):
    """A chart loaded as of another day still answers the same through the fallback."""
    from cds_service.tester_tools.samples import load_chart, load_index

    later = FIXED_NOW + dt.timedelta(days=30)
    chart = next(c for c in load_index()[1] if c.name == "ces-new-urinary-retention")
    bundle = load_chart(chart, later.date())
    pid = f"{chart.patient_id}-later"
    resources = [
        _repoint(e["resource"], chart.patient_id, pid) for e in bundle["entry"] if "resource" in e
    ]
    fhir_server.load(transaction(resources))
    settings = Settings(instance_path=migrated_instance(tmp_path), allow_unauthenticated=True)
    app = create_app(settings, clock=lambda: later)
    body = body_for(pid, fhir_server.base, fhir_server.token)
    cards = cards_of(app.test_client().post(f"/cds-services/{PATIENT_VIEW}", json=body))
    assert [c["indicator"] for c in cards] == list(chart.indicators)


def _repoint(resource: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    out = dict(resource)
    out["id"] = resource["id"].replace(old, new, 1)
    if "subject" in out:
        out["subject"] = {"reference": f"Patient/{new}"}
    return out
