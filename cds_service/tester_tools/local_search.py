"""A small in-memory FHIR search: enough to answer the service's prefetch templates offline.

Used to build sample requests from the sample charts, and by the tests.

It follows FHIR R4 search semantics for what the templates use: read, `patient`, token lists
(`code`, `category`, with or without `system|`), `status` (a code, or a list of codes), and
`date=ge…` on Observation.effective[x].
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..core.knowledge import KnowledgeBase, Service
from ..core.references import patient_id_of
from ..data_access.prefetch import discovery_template, render_query


def _tokens(resource: Mapping[str, Any], element: str) -> set[tuple[str, str]]:
    value = resource.get(element)
    concepts = value if isinstance(value, list) else [value]
    out = set()
    for concept in concepts:
        for coding in (concept or {}).get("coding", []):
            out.add((coding.get("system", ""), coding.get("code", "")))
    return out


def _token_match(resource: Mapping[str, Any], element: str, wanted: str) -> bool:
    have = _tokens(resource, element)
    for item in wanted.split(","):
        system, sep, code = item.rpartition("|")
        if any(c == code and (not sep or s == system) for s, c in have):
            return True
    return False


def _effective(resource: Mapping[str, Any]) -> str | None:
    if "effectiveDateTime" in resource:
        return resource["effectiveDateTime"]
    if "effectiveInstant" in resource:
        return resource["effectiveInstant"]
    period = resource.get("effectivePeriod") or {}
    return period.get("start")


def _date_match(resource: Mapping[str, Any], wanted: str) -> bool:
    value = _effective(resource)
    if value is None or not wanted.startswith("ge"):
        return False
    return value[:10] >= wanted[2:12]


def _matches(resource: Mapping[str, Any], name: str, value: str) -> bool:
    if name == "patient":
        target = value.split("/")[-1]
        return patient_id_of(resource.get("subject", resource.get("patient"))) == target
    if name in ("code", "category"):
        return _token_match(resource, name, value)
    if name == "status":
        return resource.get("status") in value.split(",")
    if name == "date":
        return _date_match(resource, value)
    raise ValueError(f"search parameter {name!r} is not supported by the local search")


def search(resources: Iterable[Mapping[str, Any]], query: str) -> dict[str, Any] | None:
    """The answer a FHIR server gives to a read or search relative URL."""
    path, _, qs = query.partition("?")
    if not qs and "/" in path:
        rtype, rid = path.split("/", 1)
        for r in resources:
            if r.get("resourceType") == rtype and r.get("id") == unquote(rid):
                return dict(r)
        return None
    params = parse_qsl(qs)
    hits = [
        r
        for r in resources
        if r.get("resourceType") == path and all(_matches(r, n, v) for n, v in params)
    ]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(hits),
        "entry": [
            {
                "fullUrl": f"urn:test:{r['resourceType']}/{r.get('id')}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in hits
        ],
    }


def prefetch_for(
    kb: KnowledgeBase,
    resources: list[Mapping[str, Any]],
    context: Mapping[str, Any],
    today: dt.date,
    service: Service | None = None,
) -> dict[str, Any]:
    """The service's prefetch keys (default: every service's) filled the way an EHR would fill
    them from these resources, each with the query its service publishes."""
    templates: dict[str, str] = {}
    for each in (service,) if service else kb.services.values():
        for key, spec in each.prefetch.items():
            templates.setdefault(key, discovery_template(each, spec, today))
    return {
        key: search(resources, render_query(templates[key], context))
        for key in kb.prefetch
        if key in templates
    }
