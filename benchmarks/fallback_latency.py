"""How long the FHIR-server fallback takes for a 100-resource chart, on loopback.

    .venv/bin/python -m benchmarks.fallback_latency [--calls 50] [--page-size 20]

Starts the tests' Node FHIR server (tests/fhir-server; `scripts/test` installs it), loads one
synthetic chart of 100 resources that all answer the service's prefetch queries (1 Patient,
40 Conditions, 30 recent lab results, 29 recent exam findings), and times whole service calls
in process (Flask test client, real HTTP to the FHIR server): without prefetch (everything from
the FHIR server, in pages of --page-size) and with full prefetch, for comparison.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from cds_service import Settings, create_app
from cds_service.knowledge_files import load_knowledge
from cds_service.settings import PROJECT_ROOT
from cds_service.storage.database import upgrade
from cds_service.tester_tools.local_search import prefetch_for
from cds_service.web.state import EXTENSION_KEY

SERVER_DIR = PROJECT_ROOT / "tests" / "fhir-server"
SERVICE = "/cds-services/back-spasm-patient-view"
PID = "fallback-bench"
TOKEN = "bench-token"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
UNRELATED = ["I10", "E11.9", "E78.5", "J45.909", "K21.9", "F41.1", "M17.11", "E66.9"]
LABS = [("2823-3", 4.1, "mmol/L"), ("17861-6", 9.4, "mg/dL"), ("2000-8", 2.35, "mmol/L")]
EXAMS = ["8867-4", "8480-6", "8462-4", "8310-5", "29463-7"]


def _condition(n: int, code: str, days_ago: int, today: dt.date) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"{PID}-c{n}",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": ICD, "code": code}]},
        "subject": {"reference": f"Patient/{PID}"},
        "onsetDateTime": (today - dt.timedelta(days=days_ago)).isoformat(),
    }


def _observation(
    rid: str, code: str, category: str, value: float, unit: str, when: dt.date
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{PID}-{rid}",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{PID}"},
        "effectiveDateTime": when.isoformat(),
        "valueQuantity": {"value": value, "unit": unit},
    }


def chart(today: dt.date) -> list[dict[str, Any]]:
    """100 resources, every one of them an answer to one of the prefetch queries."""
    patient = {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1971-03-02"}
    conditions = [_condition(0, "M62.830", 3, today), _condition(1, "R33.9", 1, today)]
    conditions += [
        _condition(n, UNRELATED[n % len(UNRELATED)], 100 + n * 30, today) for n in range(2, 40)
    ]
    labs = []
    for n in range(30):
        code, value, unit = LABS[n % len(LABS)]
        when = today - dt.timedelta(days=n % 28)
        labs.append(_observation(f"l{n}", code, "laboratory", value, unit, when))
    exams = [
        _observation(
            f"e{n}", EXAMS[n % len(EXAMS)], "exam", 70.0, "/min", today - dt.timedelta(days=n * 3)
        )
        for n in range(29)
    ]
    return [patient, *conditions, *labs, *exams]


@contextmanager
def node_server(page_size: int) -> Iterator[str]:
    node = shutil.which("node")
    if node is None or not (SERVER_DIR / "node_modules").is_dir():
        raise SystemExit("needs node and tests/fhir-server/node_modules (run scripts/test once)")
    env = {**os.environ, "FHIR_SERVER_TOKEN": TOKEN, "FHIR_PAGE_SIZE": str(page_size)}
    process = subprocess.Popen(
        [node, "server.mjs"], cwd=SERVER_DIR, env=env, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if not line.startswith("listening "):
            raise SystemExit("the Node FHIR server did not start")
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=10)


def load(base: str, resources: list[dict[str, Any]]) -> None:
    """PUT the resources in transactions of at most 40 (Medplum allows 50 updates in one)."""
    for start in range(0, len(resources), 40):
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in resources[start : start + 40]
            ],
        }
        headers = {"Authorization": f"Bearer {TOKEN}"}
        loaded = requests.post(base, json=bundle, headers=headers, timeout=30)
        assert loaded.status_code == 200, loaded.text[:2000]


def _body(base: str | None, prefetch: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/bench", "patientId": PID},
    }
    if base:
        body["fhirServer"] = base
        body["fhirAuthorization"] = {
            "access_token": TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "bench",
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def _time_calls(client: Any, body: dict[str, Any], calls: int) -> list[float]:
    for _ in range(5):  # warm-up: connections opened, caches filled
        assert client.post(SERVICE, json=body).status_code == 200
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        response = client.post(SERVICE, json=body)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["cards"][0]["indicator"] == "critical"
    return times


def _row(name: str, times: list[float]) -> str:
    cuts = statistics.quantiles(times, n=20)
    return (
        f"{name:38} p50 {statistics.median(times):6.1f} ms   p95 {cuts[18]:6.1f} ms   "
        f"max {max(times):6.1f} ms   ({len(times)} calls)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--page-size", type=int, default=20)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    today = dt.datetime.now(dt.UTC).date()
    resources = chart(today)
    with node_server(args.page_size) as base, tempfile.TemporaryDirectory() as folder:
        load(base, resources)
        settings = Settings(instance_path=Path(folder), allow_unauthenticated=True)
        upgrade(settings.resolved_database_url())
        client = create_app(settings).test_client()
        kb = load_knowledge(settings.knowledge_dir)
        context = {"patientId": PID, "userId": "Practitioner/bench"}
        prefetch = prefetch_for(kb, resources, context, today)
        fetched = sum(len(v.get("entry", [])) if "entry" in v else 1 for v in prefetch.values())
        print(
            f"chart: {len(resources)} resources, {fetched} answer the prefetch queries; "
            f"FHIR page size {args.page_size}; budget {settings.fhir_budget_seconds} s"
        )
        print(
            _row(
                "no prefetch (FHIR server fallback)",
                _time_calls(client, _body(base, {}), args.calls),
            )
        )
        print(_row("full prefetch", _time_calls(client, _body(None, prefetch), args.calls)))
        # write the audit records before the temporary database folder goes away
        client.application.extensions[EXTENSION_KEY].audit.writer.close()


if __name__ == "__main__":
    main()
