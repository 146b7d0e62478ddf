"""A runaway call is stopped by the service's own timeout and answered 503 with an
OperationOutcome; the worker goes on answering."""

from __future__ import annotations

import time

from support.builders import FIXED_NOW, PATIENT_VIEW
from support.instances import migrated_instance
from test_server import sample_request

from cds_service import Settings, create_app
from cds_service.web import services
from cds_service.web.timeout import enforce_call_timeout

TIMEOUT_S = 1.0


def runaway_app(tmp_path, monkeypatch):
    settings = Settings(
        instance_path=migrated_instance(tmp_path),
        allow_unauthenticated=True,
        call_timeout_seconds=TIMEOUT_S,
    )
    app = create_app(settings, clock=lambda: FIXED_NOW)
    real_decide = services.decide

    def decide(*args, **kwargs):
        if app.config.get("RUNAWAY"):
            while True:  # a call busy far past any sane time
                pass
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(services, "decide", decide)
    return enforce_call_timeout(app, TIMEOUT_S)


def test_a_runaway_call_is_stopped_with_a_503_outcome(tmp_path, monkeypatch):
    app = runaway_app(tmp_path, monkeypatch)
    client = app.test_client()
    body = sample_request("ces-new-urinary-retention")
    app.config["RUNAWAY"] = True
    started = time.monotonic()
    response = client.post(f"/cds-services/{PATIENT_VIEW}", json=body)
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "timeout"
    assert "stopped" in outcome["issue"][0]["diagnostics"]
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 4
    # the same worker answers the next call as usual
    app.config["RUNAWAY"] = False
    response = client.post(f"/cds-services/{PATIENT_VIEW}", json=body)
    assert response.status_code == 200 and response.get_json()["cards"]
    time.sleep(2 * TIMEOUT_S)  # no stop left over for a later call of this thread
    assert client.get("/healthz").status_code == 200
