"""End to end in the real CDS Hooks Sandbox: a clinician clicks a suggested order, the Sandbox
sends `accepted` feedback, and the report counts it: on the patient-view card, and on the critical
card for a routine lumbar MRI picked in the Sandbox's PAMA Imaging view (order-select).

Runs the Sandbox build in `../shared/tools/cds-hooks-sandbox/build` in headless Chromium
(npm `playwright-core`, installed from `tests/sandbox/package-lock.json`; Debian `chromium`,
installed with apt-get when missing and possible) against `cds-service serve` (granian) with JWTs
required (the Sandbox's own ES384 key, trusted as the README shows) and the Node FHIR server.
Select it with `-m sandbox`; it skips, saying why, when something it needs cannot be had.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from support.served import free_port, serve, upgrade_database

from cds_service.settings import PROJECT_ROOT
from cds_service.tester_tools.samples import load_chart, load_index

pytestmark = pytest.mark.sandbox

SHARED = PROJECT_ROOT.parent / "shared"
SANDBOX_BUILD = SHARED / "tools" / "cds-hooks-sandbox" / "build"
SANDBOX_JWKS = SHARED / "reference" / "cds-hooks-sandbox-jwks.json"
DRIVER_DIR = Path(__file__).resolve().parent / "sandbox"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHART = "ces-new-urinary-retention"
MRI_LABEL = "Order emergency MRI of the lumbosacral spine (stat)"
MRI_ID = "emergency-mri-lumbosacral-spine"


def _run(command: list[str], cwd: Path | None = None, timeout: int = 600) -> str | None:
    """None when the command succeeds, else why it failed (its last output line)."""
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(command)}: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return f"{' '.join(command)} exited {done.returncode}: {tail[0]}"
    return None


def _playwright() -> str | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "Node and npm are not installed"
    if (DRIVER_DIR / "node_modules" / "playwright-core").is_dir():
        return None
    return _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], DRIVER_DIR)


def _chromium() -> str | None:
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return f"{CHROMIUM} is missing and apt-get cannot install Debian chromium here"
    failed = _run(["apt-get", "update"]) or _run(["apt-get", "install", "-y", "chromium"])
    return failed if not CHROMIUM.exists() else None


@pytest.fixture(scope="module")
def prerequisites() -> None:
    if not SANDBOX_BUILD.is_dir():
        pytest.skip(f"the CDS Hooks Sandbox build is not at {SANDBOX_BUILD}")
    for why in (_playwright(), _chromium()):
        if why:
            pytest.skip(f"the Sandbox end-to-end test cannot run: {why}")


@pytest.fixture(scope="module")
def sandbox_site(prerequisites) -> Iterator[str]:
    """The Sandbox build, served from loopback."""
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--directory", str(SANDBOX_BUILD)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def service(sandbox_site, tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """`cds-service serve`, trusting the Sandbox's published key, allowing its origin."""
    folder = tmp_path_factory.mktemp("sandbox-e2e")
    trusted = folder / "trusted-clients.yaml"
    client = {
        "issuer": "https://sandbox.cds-hooks.org",
        "jwks": json.loads(SANDBOX_JWKS.read_text("utf-8")),
        "allowed_jku": ["https://sandbox.cds-hooks.org/.well-known/jwks.json"],
    }
    trusted.write_text(yaml.safe_dump({"clients": [client]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env |= {
        "CDS_INSTANCE_PATH": str(folder / "instance"),
        "CDS_TRUSTED_CLIENTS": str(trusted),
        "CDS_CORS_ORIGINS": sandbox_site.rstrip("/"),
        "CDS_AUDIT_KEY": "test-audit-key-0123456789abcdef-0123456789",
    }
    upgrade_database(env)
    served = serve(env, folder / "server.log")
    try:
        yield served.url, env
    finally:
        served.stop()


def _acceptances(env: dict[str, str]) -> dict:
    cli = [str(Path(sys.executable).with_name("cds-service")), "report", "--format", "json"]
    out = subprocess.run(cli, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out).get("acceptances", {})


def _drive(
    script: str, choice: str, service, sandbox_site: str, fhir_server, tmp_path: Path
) -> tuple[dict[str, str], dict[str, Any]]:
    """Load the chart into the FHIR server, run a Sandbox driver script; its result."""
    service_url, env = service
    _, charts = load_index()
    chart = next(c for c in charts if c.name == CHART)
    fhir_server.load(load_chart(chart, dt.date.today()))
    driver = [
        "node",
        str(DRIVER_DIR / script),
        sandbox_site,
        service_url,
        fhir_server.base,
        chart.patient_id,
        choice,
        str(tmp_path),
    ]
    done = subprocess.run(driver, capture_output=True, text=True, timeout=180, cwd=DRIVER_DIR)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in result, result.get("error")
    return env, result


def _counted_once_written(env: dict[str, str], read: Any, ready: Any) -> dict:
    """The report's acceptances, read by `read`, once `ready` (the audit is written after)."""
    deadline = time.monotonic() + 15
    counted: dict = {}
    while time.monotonic() < deadline:
        counted = read(_acceptances(env))
        if ready(counted):
            break
        time.sleep(0.5)
    return counted


def test_a_suggestion_clicked_in_the_sandbox_is_accepted_feedback_and_counted(
    service, sandbox_site, open_fhir_server, tmp_path
):
    env, result = _drive("accept.mjs", MRI_LABEL, service, sandbox_site, open_fhir_server, tmp_path)

    calls = [x for x in result["exchanges"] if x["method"] == "POST" and "feedback" not in x["url"]]
    assert calls and calls[0]["status"] == 200, "the Sandbox's JWT was accepted"
    card = calls[0]["response"]["cards"][0]
    mri = next(s for s in card["suggestions"] if s["label"] == MRI_LABEL)
    assert any(MRI_LABEL in shown for shown in result["cardsShown"])

    assert result["feedbackStatus"] == 200
    item = result["feedbackSent"]["feedback"][0]
    assert item["card"] == card["uuid"]
    assert item["outcome"] == "accepted"
    assert item["acceptedSuggestions"] == [{"id": mri["uuid"]}]

    counted = _counted_once_written(
        env,
        lambda a: {s["suggestion"]: s for s in a.get("suggestions", [])},
        lambda c: c.get(MRI_ID, {}).get("accepted"),
    )
    assert counted[MRI_ID]["accepted"] == 1, counted
    assert Path(result["screenshot"]).stat().st_size > 10_000


LUMBAR_MRI_CPT = "72148"
ROUTINE_ORDER_RULE = "routine-order-despite-red-flags"


def test_a_suggestion_on_an_order_card_in_the_sandbox_is_accepted_feedback_and_counted(
    service, sandbox_site, open_fhir_server, tmp_path
):
    """PAMA Imaging, a routine lumbar MRI for a patient with emergency red flags: critical card."""
    env, result = _drive(
        "accept_order.mjs", LUMBAR_MRI_CPT, service, sandbox_site, open_fhir_server, tmp_path
    )

    (call,) = result["orderCalls"]
    assert call["status"] == 200, "the Sandbox's JWT was accepted"
    assert call["request"]["hook"] == "order-select"
    drafts = call["request"]["context"]["draftOrders"]["entry"]
    assert drafts[0]["resource"]["code"]["coding"][0]["code"] == LUMBAR_MRI_CPT
    card = result["card"]
    assert card["indicator"] == "critical" and "Emergency" in card["summary"]
    assert any(card["summary"] in shown for shown in result["cardsShown"])
    (action,) = result["clicked"]["actions"]
    assert action["type"] == "update" and action["resource"]["priority"] == "stat"

    assert result["feedbackStatus"] == 200
    assert result["feedbackUrl"] == f"{call['url']}/feedback"
    item = result["feedbackSent"]["feedback"][0]
    assert item["card"] == card["uuid"]
    assert item["outcome"] == "accepted"
    assert item["acceptedSuggestions"] == [{"id": result["clicked"]["uuid"]}]

    rules = _counted_once_written(
        env,
        lambda a: {r["rule"]: r["accepted"] for r in a.get("rules", [])},
        lambda r: r.get(ROUTINE_ORDER_RULE),
    )
    assert rules.get(ROUTINE_ORDER_RULE) == 1, rules
    assert Path(result["screenshot"]).stat().st_size > 10_000
