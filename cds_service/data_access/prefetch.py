"""Prefetch templates and what a client sent for each prefetch key.

Per key (CDS Hooks 2.0, "Providing FHIR Resources to a CDS Service"):
  a resource or Bundle          -> data, used;
  null, or an empty Bundle      -> no data (not an error);
  absent, or an OperationOutcome
  (top level, or Bundle entries with search.mode = outcome and an error) -> missing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..core.knowledge import PrefetchKey, Service

TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z]+)\s*\}\}")
_ERROR_SEVERITIES = {"fatal", "error"}


@dataclass(frozen=True)
class KeyData:
    """What is known of one prefetch key after reading the request."""

    key: str
    status: str  # "data" | "empty" | "missing"
    resources: tuple[Mapping[str, Any], ...] = ()
    reason: str | None = None
    next_url: str | None = None


def discovery_template(service: Service, key: PrefetchKey, today: dt.date) -> str:
    """The template as the service publishes it in discovery: its placeholders filled (the
    `since` day, the codes of the measures its rules read), tokens kept."""
    template = key.template
    if key.since_days is not None:
        template = template.replace(
            "{since}", (today - dt.timedelta(days=key.since_days)).isoformat()
        )
    for name, codes in service.codes.items():
        placeholder = f"{{{name}}}"
        if placeholder in template:
            template = template.replace(
                placeholder, ",".join(f"http://loinc.org|{code}" for code in codes)
            )
    return template


def discovery_prefetch(service: Service, today: dt.date) -> dict[str, str]:
    """The service's prefetch templates as discovery publishes them."""
    return {key: discovery_template(service, p, today) for key, p in service.prefetch.items()}


def render_query(template: str, context: Mapping[str, Any]) -> str:
    """A template with its {{context.x}} tokens filled in (URL-encoded)."""

    def fill(match: re.Match[str]) -> str:
        value = context.get(match[1])
        if not isinstance(value, str):
            raise KeyError(match[1])
        return quote(value, safe="")

    return TOKEN.sub(fill, template)


def _outcome_error(outcome: Mapping[str, Any]) -> bool:
    issues = outcome.get("issue")
    if not isinstance(issues, list) or not issues:
        return True  # an OperationOutcome with no issue still says "this did not work"
    return any(isinstance(i, dict) and i.get("severity") in _ERROR_SEVERITIES for i in issues)


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else None
    return None


def read_bundle(key: str, bundle: Mapping[str, Any]) -> KeyData:
    """The resources of a Bundle, or why it counts as missing."""
    entries = bundle.get("entry")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        return KeyData(key, "missing", reason="Bundle.entry is not a list")
    resources: list[Mapping[str, Any]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        search = entry.get("search")
        if rtype == "OperationOutcome" or (
            isinstance(search, dict) and search.get("mode") == "outcome"
        ):
            if isinstance(resource, dict) and _outcome_error(resource):
                return KeyData(
                    key, "missing", reason="the client reported an error (OperationOutcome)"
                )
            continue
        if isinstance(rtype, str):
            resources.append(resource)
    next_url = _next_link(bundle)
    if not resources and next_url is None:
        return KeyData(key, "empty")
    return KeyData(key, "data", tuple(resources), next_url=next_url)


def read_key(key: str, present: bool, value: object) -> KeyData:
    """Classify what a client sent for one prefetch key."""
    if not present:
        return KeyData(key, "missing", reason="not sent")
    if value is None:
        return KeyData(key, "empty")
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        return KeyData(key, "missing", reason="not a FHIR resource")
    rtype = value["resourceType"]
    if rtype == "OperationOutcome":
        return KeyData(key, "missing", reason="the client reported an error (OperationOutcome)")
    if rtype == "Bundle":
        return read_bundle(key, value)
    return KeyData(key, "data", (value,))


def read_prefetch(service: Service, prefetch: Mapping[str, Any] | None) -> dict[str, KeyData]:
    """Every prefetch key the service declares, classified."""
    sent = prefetch or {}
    return {key: read_key(key, key in sent, sent.get(key)) for key in service.prefetch}
