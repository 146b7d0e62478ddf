"""`/metrics`: the Prometheus text format, from prometheus_client, counted across workers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from support.builders import PATIENT_VIEW, condition, hook_body
from support.jwt_clients import generate_key, make_auth_app
from support.served import refusal, serve, upgrade_database
from test_server import sample_request

from cds_service import Settings, create_app
from cds_service.metrics import jwt_reason_class, missing_reason_class
from cds_service.metrics_dir import MULTIPROC_ENV, prepare_multiprocess_dir
from cds_service.storage.database import upgrade
from cds_service.web.state import EXTENSION_KEY

AUDIT_KEY = "test-audit-key-0123456789abcdef-0123456789"
METRICS_TOKEN = "scrape-token-0123456789"
URL = f"/cds-services/{PATIENT_VIEW}"
RED_FLAG = "new-bladder-or-bowel-loss"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition: (name, labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def red_flag_body(**overrides) -> dict:
    conditions = [
        condition("M62.830", onset_days_ago=6, rid="spasm"),
        condition("R33.9", onset_days_ago=3, rid="retention"),
    ]
    return hook_body(conditions, **overrides)


@pytest.fixture
def app(tmp_path) -> Iterator[Flask]:
    assert MULTIPROC_ENV not in os.environ  # in process: the default registry
    settings = Settings(instance_path=tmp_path, allow_unauthenticated=True, audit_key=AUDIT_KEY)
    upgrade(settings.resolved_database_url())
    application = create_app(settings)
    yield application
    application.extensions[EXTENSION_KEY].audit.writer.close(timeout=5)


def scrape(client, **headers: str) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    return response.get_data(as_text=True)


def test_calls_cards_412s_feedback_and_the_audit_queue_are_counted(app):
    client = app.test_client()
    before = scrape(client)
    answer = client.post(URL, json=red_flag_body())
    card = answer.get_json()["cards"][0]
    assert client.post(URL, json=red_flag_body(prefetch={})).status_code == 412
    assert client.post("/cds-services/no-such-service", json={}).status_code == 404
    feedback = {
        "card": card["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-25T12:00:00Z",
    }
    assert client.post(f"{URL}/feedback", json={"feedback": [feedback]}).status_code == 200
    assert app.extensions[EXTENSION_KEY].audit.writer.flush(10)
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("cds_service_calls_total", service=PATIENT_VIEW, status="200") == 1
    assert delta("cds_service_calls_total", service=PATIENT_VIEW, status="412") == 1
    assert delta("cds_service_calls_total", service="unknown", status="404") == 1
    assert delta("cds_service_call_duration_seconds_count", service=PATIENT_VIEW) == 2
    assert delta("cds_cards_total", indicator="critical", theme=card_theme(app, RED_FLAG)) == 1
    assert delta("cds_card_rules_total", indicator="critical", rule=RED_FLAG) == 1
    for key in ("conditions", "labs", "findings"):
        labels = {"service": PATIENT_VIEW, "key": key, "reason": "fhir_server_not_contacted"}
        assert delta("cds_precondition_failed_total", **labels) == 1
    assert delta("cds_fhir_fallback_failures_total", key="conditions", kind="refused") == 1
    assert delta("cds_feedback_items_total", service=PATIENT_VIEW, outcome="overridden") == 1
    # the 200 and the 412 are audit records; a POST to an id that is no service is not
    assert delta("cds_audit_records_total", outcome="written") == 2
    assert value(after, "cds_audit_queue_waiting") == 0
    assert "no-such-service" not in after  # a caller's words never become a label


def test_a_preflight_is_not_counted_as_a_call(app):
    client = app.test_client()
    before = value(scrape(client), "cds_service_calls_total", service=PATIENT_VIEW, status="200")
    assert client.options(URL).status_code == 200
    after = value(scrape(client), "cds_service_calls_total", service=PATIENT_VIEW, status="200")
    assert after == before


def card_theme(app: Flask, rule_id: str) -> str:
    kb = app.extensions[EXTENSION_KEY].knowledge
    return next(r.theme for r in kb.rules if r.id == rule_id)


def test_a_failing_fhir_server_is_counted_as_fetched_and_failed(app, httpserver):
    httpserver.expect_request("/fhir/Condition").respond_with_data("down", status=500)
    httpserver.expect_request("/fhir/Observation").respond_with_data("down", status=500)
    body = red_flag_body(
        prefetch={},
        fhirServer=httpserver.url_for("/fhir"),
        fhirAuthorization={
            "access_token": "t",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "cds",
        },
    )
    client = app.test_client()
    before = scrape(client)
    assert client.post(URL, json=body).status_code == 412
    after = scrape(client)
    fetched = value(after, "cds_fhir_fallback_fetches_total", key="conditions")
    assert fetched - value(before, "cds_fhir_fallback_fetches_total", key="conditions") == 1
    failed = {"key": "conditions", "kind": "failed"}
    assert (
        value(after, "cds_fhir_fallback_failures_total", **failed)
        - value(before, "cds_fhir_fallback_failures_total", **failed)
        == 1
    )
    reason = {"service": PATIENT_VIEW, "key": "conditions", "reason": "fhir_server_failed"}
    assert value(after, "cds_precondition_failed_total", **reason) >= 1


def test_metrics_behind_a_token_when_one_is_configured(tmp_path):
    settings = Settings(
        instance_path=tmp_path,
        allow_unauthenticated=True,
        audit_key=AUDIT_KEY,
        metrics_token=METRICS_TOKEN,
    )
    upgrade(settings.resolved_database_url())
    client = create_app(settings).test_client()
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer wrong-token-é"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    assert "cds_service_calls" in scrape(client, Authorization=f"Bearer {METRICS_TOKEN}")


def test_jwt_rejections_are_counted_by_class(tmp_path):
    key = generate_key("P-256")
    app = make_auth_app(
        tmp_path, [{"issuer": "https://ehr.example.org", "jwks": key.jwks()}], audit_key=AUDIT_KEY
    )
    client = app.test_client()
    before = scrape(client)
    assert client.post(URL, json={}).status_code == 401
    assert client.post(URL, json={}, headers={"Authorization": "Bearer x.y.z"}).status_code == 401
    after = scrape(client)
    for reason in ("missing", "malformed"):
        got = value(after, "cds_jwt_rejections_total", reason=reason)
        assert got - value(before, "cds_jwt_rejections_total", reason=reason) == 1, reason


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("no Authorization header", "missing"),
        ("Authorization is not a Bearer token", "malformed"),
        ("not a JWT: Invalid header padding", "malformed"),
        ("algorithm HS256 not accepted", "algorithm"),
        ("algorithm RS256 does not fit key k1", "algorithm"),
        ("issuer not trusted", "untrusted_issuer"),
        ("ExpiredSignatureError: Signature has expired", "expired"),
        ("InvalidAudienceError: Audience doesn't match", "audience"),
        ("InvalidSignatureError: Signature verification failed", "signature"),
        ('MissingRequiredClaimError: Token is missing the "jti" claim', "claims"),
        ("lifetime 7200 s over 3600 s", "claims"),
        ("jti already used (replay)", "replay"),
        ("no key k9 for https://ehr.example.org", "key"),
    ],
)
def test_jwt_reason_classes(reason, kind):
    assert jwt_reason_class(reason) == kind


def test_412_reason_classes():
    assert missing_reason_class("not in the request") == "not_prefetched"
    assert missing_reason_class("x, and the FHIR server was not contacted: y") == (
        "fhir_server_not_contacted"
    )
    assert missing_reason_class("x, and the FHIR server could not provide it: HTTP 500") == (
        "fhir_server_failed"
    )


def test_the_metrics_folder_is_emptied_at_start_or_made_for_the_run(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_12345.db").write_bytes(b"stale")
    env = {MULTIPROC_ENV: str(folder)}
    assert prepare_multiprocess_dir(env) == folder
    assert list(folder.iterdir()) == []
    made: dict[str, str] = {}
    path = prepare_multiprocess_dir(made)
    assert made[MULTIPROC_ENV] == str(path) and path.is_dir()


# ---- across the workers of `cds-service serve` ---------------------------------------------


def test_metrics_add_up_every_worker_and_survive_a_worker_restart(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"not a metrics file")  # a previous run's leftovers
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env |= {"CDS_INSTANCE_PATH": str(tmp_path / "instance"), MULTIPROC_ENV: str(folder)}
    upgrade_database(env)
    served = serve(env, tmp_path / "server.log", "--allow-unauthenticated", workers=2)
    calls = 24
    try:
        body = sample_request("ces-new-urinary-retention")
        for _ in range(calls):  # a new connection each time: the workers share them
            answer = requests.post(served.url + URL, json=body, timeout=10)
            assert answer.status_code == 200
        pids = {int(p.stem.rsplit("_", 1)[1]) for p in folder.glob("counter_*.db")}
        for _ in range(6):  # whichever worker answers the scrape, it counts them all
            assert total_calls(served.url) == calls
        victim = sorted(pids)[0]
        os.kill(victim, signal.SIGTERM)  # the arbiter replaces the worker
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and victim_alive(victim):
            time.sleep(0.1)
        for _ in range(4):
            assert total_calls(served.url) == calls  # the gone worker's counts remain
    finally:
        served.stop()


def victim_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def total_calls(base: str) -> float:
    text = requests.get(base + "/metrics", timeout=10).text
    return sum(v for (name, _), v in samples(text).items() if name == "cds_service_calls_total")


def test_serve_uses_a_temporary_metrics_folder_when_none_is_set(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_") and k != MULTIPROC_ENV}
    env["CDS_INSTANCE_PATH"] = str(tmp_path / "instance")
    env["TMPDIR"] = str(tmp_path)  # where the run's folder is made
    upgrade_database(env)
    served = serve(env, tmp_path / "server.log", "--allow-unauthenticated", workers=2)
    try:
        body = sample_request("ces-new-urinary-retention")
        for _ in range(6):
            assert requests.post(served.url + URL, json=body, timeout=10).status_code == 200
        assert total_calls(served.url) == 6
    finally:
        served.stop()
    assert not list(tmp_path.glob("cds-service-metrics-*")), "the run's folder is removed at exit"


def test_serve_refuses_an_unusable_metrics_folder_in_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env |= {"CDS_INSTANCE_PATH": str(tmp_path / "instance"), MULTIPROC_ENV: str(blocker / "m")}
    assert "PROMETHEUS_MULTIPROC_DIR" in refusal(env, "--allow-unauthenticated")
