"""Tools for testers: load the sample patients into a FHIR server, and play an EHR.

`cds-service samples load` posts each sample chart, dated today, to a FHIR R4 server as a
transaction. `cds-service try` does what an EHR does on a hook of the registry (hooks.yaml): it
reads the service's discovery document, fills the prefetch templates from the FHIR server (or
sends none, so that the service fetches what it needs), calls the service, and shows the cards.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import textwrap
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import click
import requests

from ..core.envelope import HookDef
from ..data_access.prefetch import render_query
from .samples import Chart, bundle_resources, hook_context, load_chart, load_index

FHIR_JSON = "application/fhir+json"
TIMEOUT = (5.0, 60.0)  # (connect, read) seconds: a transaction of a chart, or a service call
USER_ID = "Practitioner/cds-service-try"
INDICATOR_COLOURS = {"critical": "red", "warning": "yellow", "info": "cyan"}
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_MISSING = re.compile(r"^Required data for prefetch key '([^']+)' is missing: (.*?)\.?$")


class TesterError(Exception):
    """What went wrong, in one line for the terminal."""


def _outcome_text(body: Any) -> str:
    """The diagnostics of an OperationOutcome, joined; empty when there are none."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "OperationOutcome":
        return ""
    texts = []
    for issue in body.get("issue") or []:
        if isinstance(issue, Mapping):
            details = issue.get("details")
            detail_text = details.get("text") if isinstance(details, Mapping) else None
            texts.append(str(issue.get("diagnostics") or detail_text or issue.get("code")))
    return "; ".join(texts)


def _missing_text(body: Any) -> str:
    """A 412's issues, the keys grouped by reason: "conditions, labs: why"; empty if none."""
    issues = body.get("issue") if isinstance(body, Mapping) else None
    by_reason: dict[str, list[str]] = {}
    for issue in issues if isinstance(issues, list) else []:
        text = issue.get("diagnostics") if isinstance(issue, Mapping) else None
        match = _MISSING.match(text) if isinstance(text, str) else None
        if match is None:
            return ""
        by_reason.setdefault(match[2], []).append(match[1])
    return "; ".join(f"{', '.join(keys)}: {reason}" for reason, keys in by_reason.items())


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def fhir_session(token: str | None) -> requests.Session:
    session = requests.Session()
    session.headers["Accept"] = FHIR_JSON
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def _request(session: requests.Session, method: str, url: str, what: str, **kw: Any) -> Any:
    try:
        return session.request(method, url, timeout=TIMEOUT, **kw)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.ConnectionError):
            reason = "connection failed"
        raise TesterError(f"could not reach {what} at {url}: {reason}") from None


# ---- samples load ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    chart: Chart
    resources: int


def load_samples(
    base: str, token: str | None, today: dt.date, names: Sequence[str] = ()
) -> Iterator[Loaded]:
    """Post each chart (or the named ones) as a transaction; yields what was loaded."""
    _, charts = load_index()
    unknown = sorted(set(names) - {c.name for c in charts})
    if unknown:
        raise TesterError(f"no sample chart named {', '.join(unknown)}")
    chosen = [c for c in charts if not names or c.name in names]
    with fhir_session(token) as session:
        for chart in chosen:
            bundle = load_chart(chart, today)
            response = _request(
                session,
                "POST",
                base.rstrip("/"),
                "the FHIR server",
                json=bundle,
                headers={"Content-Type": FHIR_JSON},
            )
            if response.status_code not in (200, 201):
                why = _outcome_text(_json(response)) or response.reason
                raise TesterError(
                    f"loading {chart.name}: the FHIR server answered HTTP "
                    f"{response.status_code}: {why}"
                )
            yield Loaded(chart, len(bundle_resources(bundle)))


# ---- try: the service, running or in process ---------------------------------------------------


class Service(Protocol):
    """A CDS service to call: `get` and `post` give (HTTP status, JSON body or None)."""

    where: str

    def get(self, path: str) -> tuple[int, Any]: ...

    def post(self, path: str, body: Mapping[str, Any]) -> tuple[int, Any]: ...


class RemoteService:
    """A running service at a base URL."""

    def __init__(self, url: str):
        self.where = url.rstrip("/")
        self._session = requests.Session()

    def get(self, path: str) -> tuple[int, Any]:
        response = _request(self._session, "GET", f"{self.where}{path}", "the service")
        return response.status_code, _json(response)

    def post(self, path: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        url = f"{self.where}{path}"
        response = _request(self._session, "POST", url, "the service", json=body)
        return response.status_code, _json(response)


class InProcessService:
    """The service built in this process (a Flask test client: no socket)."""

    where = "the service (in process)"

    def __init__(self, app: Any):
        self._client = app.test_client()

    def get(self, path: str) -> tuple[int, Any]:
        response = self._client.get(path)
        return response.status_code, response.get_json(silent=True)

    def post(self, path: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        response = self._client.post(path, json=body)
        return response.status_code, response.get_json(silent=True)


def find_service(service: Service, hook: str) -> Mapping[str, Any]:
    """The discovery entry of the service for `hook`."""
    status, document = service.get("/cds-services")
    if status != 200 or not isinstance(document, Mapping):
        raise TesterError(f"{service.where} answered discovery with HTTP {status}")
    for entry in document.get("services") or []:
        if isinstance(entry, Mapping) and entry.get("hook") == hook:
            return entry
    raise TesterError(f"{service.where} offers no service for the {hook} hook")


def check_patient(base: str, patient_id: str, token: str | None) -> None:
    """`TesterError` unless the FHIR server holds the patient and lets us read it."""
    url = f"{base.rstrip('/')}/Patient/{quote(patient_id, safe='')}"
    with fhir_session(token) as session:
        response = _request(session, "GET", url, "the FHIR server")
    if response.status_code in (401, 403):
        raise TesterError(
            f"the FHIR server refused to read Patient/{patient_id} "
            f"(HTTP {response.status_code}); check --token"
        )
    if response.status_code in (404, 410):
        raise TesterError(
            f"the FHIR server has no Patient/{patient_id} "
            "(load the sample patients with `cds-service samples load`)"
        )
    if response.status_code != 200:
        raise TesterError(f"the FHIR server answered HTTP {response.status_code} for the patient")


def fill_prefetch(
    session: requests.Session, base: str, templates: Mapping[str, str], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Each template asked of the FHIR server, as an EHR does; a key it cannot fill is left out."""
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        try:
            query = render_query(template, context)
        except KeyError:
            continue
        response = _request(session, "GET", f"{base.rstrip('/')}/{query}", "the FHIR server")
        if response.status_code == 200 and isinstance(_json(response), Mapping):
            prefetch[key] = _json(response)
        elif response.status_code == 404 and "?" not in query:
            prefetch[key] = None
        elif response.status_code in (401, 403):
            raise TesterError(
                f"the FHIR server refused the prefetch query (HTTP {response.status_code}); "
                "check --token"
            )
    return prefetch


@dataclass(frozen=True)
class TryCall:
    service_id: str
    prefetched: tuple[str, ...]
    cards: list[dict[str, Any]]


def try_service(
    service: Service,
    fhir_base: str,
    patient_id: str,
    *,
    hook: HookDef,
    token: str | None = None,
    prefetch: bool = True,
    encounter_id: str | None = None,
    drafts: Sequence[dict[str, Any]] = (),
) -> TryCall:
    """Call the service as an EHR would for one patient, on a hook of the registry (with its
    draft orders on an order hook); its cards, or `TesterError`."""
    check_patient(fhir_base, patient_id, token)
    entry = find_service(service, hook.id)
    context = hook_context(
        hook, patient_id, USER_ID, encounter_id=encounter_id, drafts=list(drafts)
    )
    body: dict[str, Any] = {
        "hook": hook.id,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_base,
        "context": context,
    }
    if token:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/Patient.read patient/Condition.read patient/Observation.read",
            "subject": "cds-service-try",
            "patient": patient_id,
        }
    if prefetch:
        templates = entry.get("prefetch") or {}
        with fhir_session(token) as session:
            body["prefetch"] = fill_prefetch(session, fhir_base, templates, context)
    status, answer = service.post(f"/cds-services/{entry['id']}", body)
    if status != 200 or not isinstance(answer, Mapping):
        why = _missing_text(answer) or _outcome_text(answer) or "no reason given"
        raise TesterError(f"{service.where} answered HTTP {status}: {why}")
    return TryCall(entry["id"], tuple(body.get("prefetch") or ()), list(answer.get("cards") or []))


# ---- showing cards -----------------------------------------------------------------------------


def _markdown_line(line: str) -> str:
    """One line of card markdown for a terminal: **bold** made bold, rules dropped."""
    return _BOLD.sub(lambda m: click.style(m[1], bold=True), line)


def render_card(card: Mapping[str, Any], width: int) -> list[str]:
    """A card as terminal lines: indicator and summary, the detail (evidence), the source."""
    indicator = str(card.get("indicator", "info"))
    label = click.style(f" {indicator.upper()} ", fg="white", bg=INDICATOR_COLOURS.get(indicator))
    summary = click.style(str(card.get("summary", "")), bold=True)
    lines = [f"{label} {summary}", ""]
    lines += list(_detail_lines(str(card.get("detail", "")), width))
    lines += _suggestion_lines(card)
    source = card.get("source") or {}
    if isinstance(source, Mapping) and source.get("label"):
        shown = str(source["label"]) + (f" <{source['url']}>" if source.get("url") else "")
        lines += ["", f"    {click.style('Source:', bold=True)} {shown}"]
    return lines


def _suggestion_lines(card: Mapping[str, Any]) -> list[str]:
    """The card's suggested orders, one line each: label, then the codes of its resource."""
    suggestions = card.get("suggestions")
    if not isinstance(suggestions, list) or not suggestions:
        return []
    behaviour = card.get("selectionBehavior", "")
    lines = ["", f"    {click.style('Suggestions', bold=True)} ({behaviour}):"]
    for suggestion in suggestions:
        if not isinstance(suggestion, Mapping):
            continue
        codes = [
            f"{c.get('code')}"
            for a in suggestion.get("actions") or ()
            if isinstance(a, Mapping) and isinstance(a.get("resource"), Mapping)
            for c in (a["resource"].get("code") or {}).get("coding") or ()
            if isinstance(c, Mapping)
        ]
        star = " (recommended)" if suggestion.get("isRecommended") else ""
        lines.append(f"    - {suggestion.get('label')}{star} [{', '.join(codes)}]")
    return lines


def _detail_lines(detail: str, width: int) -> Iterator[str]:
    """The card's markdown detail, indented and wrapped to the terminal."""
    blank = False
    for line in detail.strip().splitlines():
        if not line.strip() or line.strip() == "---":
            if not blank:
                yield ""
            blank = True
            continue
        blank = False
        stripped = line.lstrip()
        marker = re.match(r"^([-*>] |\d+\. )", stripped)
        hang = " " * len(marker[0]) if marker else ""
        wrapped = textwrap.wrap(
            stripped,
            max(width - 4, 20),
            initial_indent="    ",
            subsequent_indent="    " + hang,
            break_on_hyphens=False,
        )
        for part in wrapped:
            yield _markdown_line(part)


def render_cards(call: TryCall, patient_id: str, width: int | None = None) -> list[str]:
    """What `try` prints: a heading, then each card."""
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 120)
    sent = ", ".join(call.prefetched) if call.prefetched else "none (the service fetched its data)"
    count = len(call.cards)
    lines = [
        f"{call.service_id}: {count} card{'s' if count != 1 else ''} for patient {patient_id} "
        f"(prefetch sent: {sent})",
        "",
    ]
    if not call.cards:
        lines.append("No cards: the service found nothing to say about this patient.")
    for card in call.cards:
        lines += [*render_card(card, width), ""]
    return lines
