"""Gather the patient's data for a service call: from prefetch, and what is missing from FHIR.

This is the one place that decides where data comes from. Per prefetch key (CDS Hooks 2.0,
"Providing FHIR Resources to a CDS Service"):
  data sent                              -> used;
  null, or an empty searchset Bundle     -> no data;
  absent, or an OperationOutcome         -> fetched from `fhirServer`;
  a searchset with a `next` link         -> the further pages are fetched, up to a page bound.
Only what is missing is fetched: the keys in parallel, each with the very query discovery
publishes, within one time budget, and only from a server the access policy allows. A key that
still cannot be had is missing; a required one missing means `DataMissing` (412).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from urllib.parse import unquote, urljoin

from .. import metrics
from ..core.envelope import HookRequest
from ..core.knowledge import Service
from ..core.references import patient_id_of
from .fhir_client import FetchError, FhirClient
from .fhir_policy import AccessPolicy, normalise_base
from .prefetch import KeyData, discovery_template, read_bundle, read_prefetch, render_query

log = logging.getLogger(__name__)


class DataMissing(Exception):
    """Required data could not be had; `missing` maps each prefetch key to the reason.

    `received` holds what was had all the same (the other keys, and the first pages of a search
    whose further pages could not be fetched), so that a red flag already seen is never withheld.
    """

    def __init__(self, missing: dict[str, str], received: tuple[Mapping[str, Any], ...] = ()):
        super().__init__(", ".join(f"{k}: {v}" for k, v in sorted(missing.items())))
        self.missing = missing
        self.received = received


class TooManyResources(Exception):
    """The request carries more FHIR resources than the service accepts."""

    def __init__(self, count: int, limit: int):
        super().__init__(f"{count} FHIR resources, more than the limit of {limit}")
        self.count = count
        self.limit = limit


@dataclass(frozen=True)
class PatientData:
    resources: list[Mapping[str, Any]]
    #: prefetch key -> where its data came from: "prefetch", "fhir server", "no data", "missing"
    origin: dict[str, str]


@dataclass(frozen=True)
class FhirAccess:
    """What one call may use to fetch missing data from the client's FHIR server."""

    client: FhirClient
    policy: AccessPolicy
    budget_seconds: float
    max_pages: int
    today: dt.date


@dataclass(frozen=True)
class _Server:
    """The one FHIR server of this call, and the token lent for it (never shown)."""

    client: FhirClient
    base: str
    token: str | None = field(repr=False)
    patient_id: str
    max_pages: int
    deadline: float


def _origin(data: KeyData, fetched: bool) -> str:
    if data.status == "missing":
        return "missing"
    if fetched:
        return "fhir server"
    return {"data": "prefetch", "empty": "no data"}[data.status]


def _needs_server(data: KeyData) -> bool:
    return data.status == "missing" or data.next_url is not None


def gather_patient_data(
    service: Service,
    request: HookRequest,
    *,
    max_resources: int,
    fhir: FhirAccess | None = None,
) -> PatientData:
    """The patient's resources for the service's prefetch keys, or `DataMissing` when a required
    key cannot be satisfied."""
    keys = read_prefetch(service, request.prefetch)
    wanted = {key: data for key, data in keys.items() if _needs_server(data)}
    fetched = _from_server(service, request, wanted, fhir) if wanted else {}
    keys |= fetched
    missing = {
        key: data.reason or "missing"
        for key, data in keys.items()
        if data.status == "missing" and service.prefetch[key].required
    }
    resources = [r for data in keys.values() for r in data.resources]
    if len(resources) > max_resources:
        raise TooManyResources(len(resources), max_resources)
    if missing:
        raise DataMissing(missing, tuple(resources))
    origin = {key: _origin(data, key in fetched) for key, data in keys.items()}
    return PatientData(resources, origin)


def _unavailable(data: KeyData, why: str) -> KeyData:
    """The key, missing: what the client sent (if anything), and why the server could not help."""
    if data.status == "missing":
        return KeyData(data.key, "missing", reason=f"{data.reason}, and {why}")
    reason = f"the prefetched search has more pages, and {why}"
    return KeyData(data.key, "missing", data.resources, reason=reason)


def _from_server(
    service: Service,
    request: HookRequest,
    wanted: Mapping[str, KeyData],
    fhir: FhirAccess | None,
) -> dict[str, KeyData]:
    """The wanted keys completed from the FHIR server, or missing with the reason."""
    token = request.fhir_authorization.access_token if request.fhir_authorization else None
    refusal = (
        "the service has no FHIR client"
        if fhir is None
        else fhir.policy.refusal(request.fhir_server, token is not None)
    )
    if fhir is None or refusal is not None:
        metrics.observe_fallback(dict.fromkeys(wanted))
        why = f"the FHIR server was not contacted: {refusal}"
        return {key: _unavailable(data, why) for key, data in wanted.items()}
    server = _Server(
        client=fhir.client,
        base=normalise_base(request.fhir_server or "") or "",
        token=token,
        patient_id=request.patient_id,
        max_pages=fhir.max_pages,
        deadline=time.monotonic() + fhir.budget_seconds,
    )
    tasks = {key: _task(service, request, server, data, fhir.today) for key, data in wanted.items()}
    started = time.monotonic()
    results = server.client.run_all(tasks, server.deadline, server.base)
    out = {
        key: _unavailable(wanted[key], f"the FHIR server could not provide it: {result}")
        if isinstance(result, FetchError)
        else result
        for key, result in results.items()
    }
    metrics.observe_fallback(
        {key: not isinstance(result, FetchError) for key, result in results.items()}
    )
    log.info(
        "FHIR server fallback for %s in %.0f ms: %s",
        ", ".join(sorted(out)),
        (time.monotonic() - started) * 1000,
        ", ".join(f"{k} {v.status}" for k, v in sorted(out.items())),
    )
    return out


def _task(
    service: Service, request: HookRequest, server: _Server, data: KeyData, today: dt.date
) -> Callable[[], KeyData]:
    """What one worker thread does for one key: the query, or the rest of a prefetched search."""
    if data.next_url is not None:
        return partial(_follow, server, data, data.next_url, 1)
    return partial(_fetch, server, data.key, service, request.context, today)


def _fetch(
    server: _Server, key: str, service: Service, context: Mapping[str, Any], today: dt.date
) -> KeyData:
    """The key's own query, exactly as discovery publishes it, asked of the FHIR server."""
    try:
        query = render_query(discovery_template(service, service.prefetch[key], today), context)
    except KeyError as exc:
        raise FetchError(f"the prefetch template needs context.{exc.args[0]}") from None
    url = f"{server.base}/{query}"
    if "?" in query:
        return _follow(server, KeyData(key, "empty"), url, 0)
    return _read(server, key, query, url)


def _read(server: _Server, key: str, query: str, url: str) -> KeyData:
    """A read (`Type/id`): the resource, of that type and id, and not another patient's."""
    resource = server.client.get(server.base, url, server.token, server.deadline)
    rtype, _, rid = query.partition("/")
    if resource.get("resourceType") != rtype or resource.get("id") != unquote(rid):
        raise FetchError(f"the FHIR server answered the read with another {rtype}")
    if _foreign(resource, server.patient_id):
        raise FetchError("the FHIR server's answer is about another patient")
    return KeyData(key, "data", (resource,))


def _follow(server: _Server, have: KeyData, url: str | None, pages: int) -> KeyData:
    """A search read page by page from `url`, after the resources already had (`pages` of them)."""
    resources = list(have.resources)
    while url is not None:
        if pages >= server.max_pages:
            raise FetchError(f"the search has more than {server.max_pages} pages")
        page = _search_page(server, have.key, urljoin(f"{server.base}/", url))
        resources += page.resources
        pages += 1
        url = page.next_url
    return KeyData(have.key, "data" if resources else "empty", tuple(resources))


def _search_page(server: _Server, key: str, url: str) -> KeyData:
    bundle = server.client.get(server.base, url, server.token, server.deadline)
    if bundle.get("resourceType") == "OperationOutcome":
        raise FetchError("the FHIR server answered with an OperationOutcome")
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
        raise FetchError("the FHIR server's answer to a search is not a searchset Bundle")
    page = read_bundle(key, bundle)
    if page.status == "missing":
        raise FetchError("the FHIR server's search answer reports an error or is malformed")
    return _without_foreign(server, key, page)


def _without_foreign(server: _Server, key: str, page: KeyData) -> KeyData:
    """The page without entries about another patient: each is dropped and logged, not fatal."""
    own = tuple(r for r in page.resources if not _foreign(r, server.patient_id))
    dropped = len(page.resources) - len(own)
    if not dropped:
        return page
    log.warning("prefetch key %s: dropped %d search entries about another patient", key, dropped)
    return replace(page, resources=own)


def _foreign(resource: Mapping[str, Any], patient_id: str) -> bool:
    """Whether a resource names a patient other than the one in context."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id") != patient_id
    named = patient_id_of(resource.get("subject", resource.get("patient")))
    return named is not None and named != patient_id
