"""schemathesis against openapi.yaml, in process, with a fresh valid JWT on every request.

The application requires JWTs exactly as in production; every generated request carries a new
token for the URL it calls (each `jti` is used once). Every operation of the contract is fuzzed,
with schema-valid and schema-invalid data, for at most `MAX_EXAMPLES` examples each, so the run
takes seconds. schemathesis checks every response: no 5xx; status code, content type, headers
and body as the contract says; schema-valid data accepted, schema-invalid data rejected; a call
without credentials refused.

Two facts of CDS Hooks that a JSON schema cannot state are given to schemathesis here:
- a service answers only its own hook (`hook` must match the `{id}` called), so schema-valid
  bodies for a known service get that service's hook;
- a call whose required prefetch data is missing answers 412 (CDS Hooks "SHALL respond with an
  HTTP 412"): for schema-valid data that is an expected answer, not a rejection;
- an accepted suggestion must be a suggestion of its card, so schema-valid feedback names
  suggestion uuids as the service derives them for the card.
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from support.jwt_clients import ISSUER, LOCAL, claims, generate_key, make_auth_app, sign

from cds_service.core.orders import suggestion_uuid
from cds_service.settings import PROJECT_ROOT

#: one fuzzing run, whose last test reads what the fuzzing did: never part of the fast tests
pytestmark = pytest.mark.slow
#: examples per operation and generation mode; CDS_FUZZ_EXAMPLES=500 fuzzes deeper locally
MAX_EXAMPLES = int(os.environ.get("CDS_FUZZ_EXAMPLES", "40"))
TIME_BOUND_S = 60
KEY = generate_key("P-384")
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "404", "412"]

# Schema-valid feedback may accept a suggestion that is not its card's: 400 naming it. The
# map_case hook below makes generated items name real ones; schemathesis's coverage phase
# sends its own minimal bodies without hooks.
[[operations]]
include-operation-id = "sendFeedback"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "412"]
"""


class RequestCounter:
    """WSGI middleware: counts the requests the application really received."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]):
        self.wsgi_app = wsgi_app
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._lock:
            self.count += 1
        return self.wsgi_app(environ, start_response)


APP = make_auth_app(
    Path(tempfile.mkdtemp(prefix="cds-fuzz-")), [{"issuer": ISSUER, "jwks": KEY.jwks()}]
)
COUNTER = RequestCounter(APP.wsgi_app)
APP.wsgi_app = COUNTER  # type: ignore[method-assign]
HOOKS = {
    service.id: service.hook
    for service in APP.extensions["cds_service"].knowledge.services.values()
}

schema = schemathesis.openapi.from_path(
    str(PROJECT_ROOT / "openapi.yaml"), config=schemathesis.Config.from_str(CONFIG)
)
schema.app = APP


@schema.auth(refresh_interval=None)  # a new token for every request
class FreshToken:
    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        return sign(KEY, "ES384", claims(LOCAL + case.formatted_path))

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """Schema-valid calls to a known service name that service's hook."""
    service = (case.path_parameters or {}).get("id")
    positive = case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE
    if (
        positive
        and case.operation.label == "POST /cds-services/{id}"
        and service in HOOKS
        and isinstance(case.body, dict)
        and isinstance(case.body.get("hook"), str)
    ):
        case.body = {**case.body, "hook": HOOKS[service]}
    if positive and case.operation.label == "POST /cds-services/{id}/feedback":
        case.body = _name_real_suggestions(copy.deepcopy(case.body))
    return case


def _name_real_suggestions(body: Any) -> Any:
    """Accepted items name a suggestion of their card (a uuid the service derives for it)."""
    items = body.get("feedback") if isinstance(body, dict) else None
    for item in items if isinstance(items, list) else ():
        accepted = isinstance(item, dict) and isinstance(item.get("card"), str)
        suggestions = item.get("acceptedSuggestions") if accepted else None
        for suggestion in suggestions if isinstance(suggestions, list) else ():
            if isinstance(suggestion, dict) and "id" in suggestion:
                suggestion["id"] = suggestion_uuid(item["card"], "repeat-potassium")
    return body


RUN: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _timed() -> None:
    RUN["started"] = time.monotonic()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_matches_its_contract(case: schemathesis.Case) -> None:
    case.call_and_validate()


def test_the_fuzzer_really_ran(record_property: Callable[[str, Any], None]) -> None:
    """After the fuzzing above (same module, declared later): how much it sent, how fast."""
    elapsed = time.monotonic() - RUN["started"]
    record_property("fuzz_requests", COUNTER.count)
    record_property("fuzz_seconds", round(elapsed, 1))
    print(f"\nschemathesis: {COUNTER.count} requests in {elapsed:.1f} s")
    assert COUNTER.count >= 3 * MAX_EXAMPLES
    if "CDS_FUZZ_EXAMPLES" not in os.environ:  # the CI run stays short
        assert elapsed < TIME_BOUND_S
