"""Synthetic sample patients (`examples/charts/`): reading them, and rolling their dates to today.

Every chart is a FHIR R4 transaction Bundle written as of the index's `anchor_date`. When a chart
is used, every clinical date in it moves by (today - anchor), so that a finding written as "3 days
ago" stays 3 days old whenever the chart is loaded.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .core.knowledge import KnowledgeBase
from .local_search import prefetch_for
from .settings import PROJECT_ROOT

CHARTS_DIR = PROJECT_ROOT / "examples" / "charts"
INDEX_FILE = "index.yaml"
#: Elements holding clinical dates that roll with the chart (birthDate does not).
ROLLING_DATE_KEYS = frozenset(
    {
        "onsetDateTime",
        "recordedDate",
        "abatementDateTime",
        "effectiveDateTime",
        "effectiveInstant",
        "issued",
        "start",
        "end",
        "authoredOn",
        "dateAsserted",
        "date",
        "lastUpdated",
    }
)
_DATE_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Chart:
    """A sample patient and what a careful clinician expects the service to say."""

    name: str
    file: str
    patient_id: str
    title: str
    clinician_expects: str
    indicators: tuple[str, ...]
    rules: tuple[str, ...]


def load_index(directory: Path = CHARTS_DIR) -> tuple[dt.date, list[Chart]]:
    """The anchor date and every chart of the index."""
    with (directory / INDEX_FILE).open(encoding="utf-8") as handle:
        index = yaml.safe_load(handle)
    anchor = dt.date.fromisoformat(str(index["anchor_date"]))
    charts = [
        Chart(
            name=entry["name"],
            file=entry["file"],
            patient_id=entry["patient"],
            title=entry["title"],
            clinician_expects=" ".join(entry["clinician_expects"].split()),
            indicators=tuple(entry["expected"]["indicators"]),
            rules=tuple(entry["expected"]["rules"]),
        )
        for entry in index["charts"]
    ]
    return anchor, charts


def shift_dates(node: Any, days: int) -> Any:
    """A copy of a FHIR JSON tree with every rolling date moved by `days`."""
    if days == 0:
        return copy.deepcopy(node)
    if isinstance(node, list):
        return [shift_dates(item, days) for item in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ROLLING_DATE_KEYS and isinstance(value, str):
            out[key] = _shift_one(value, days)
        else:
            out[key] = shift_dates(value, days)
    return out


def _shift_one(value: str, days: int) -> str:
    match = _DATE_PREFIX.match(value)
    if not match:
        return value
    moved = dt.date.fromisoformat(match[1]) + dt.timedelta(days=days)
    return moved.isoformat() + match[2]


def load_chart(chart: Chart, today: dt.date, directory: Path = CHARTS_DIR) -> dict[str, Any]:
    """The chart's transaction Bundle with its dates rolled to `today`."""
    anchor, _ = load_index(directory)
    bundle = json.loads((directory / chart.file).read_text("utf-8"))
    return shift_dates(bundle, (today - anchor).days)


def bundle_resources(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resources of a Bundle's entries."""
    return [e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]


def sample_request(
    kb: KnowledgeBase,
    chart: Chart,
    today: dt.date,
    *,
    hook: str = "patient-view",
    directory: Path = CHARTS_DIR,
) -> dict[str, Any]:
    """A CDS Hooks request for a chart, its prefetch filled as an EHR would fill it."""
    resources = bundle_resources(load_chart(chart, today, directory))
    context: dict[str, Any] = {
        "userId": "Practitioner/sample-clinician",
        "patientId": chart.patient_id,
    }
    if hook == "encounter-start":
        context["encounterId"] = f"{chart.patient_id}-encounter"
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),  # a fresh hook instance, as an EHR sends
        "context": context,
        "prefetch": prefetch_for(kb, resources, context, today),
    }
