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

from ..core.envelope import HookDef
from ..core.knowledge import KnowledgeBase
from ..settings import PROJECT_ROOT
from .local_search import prefetch_for

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
    #: the hook the chart is played on (default patient-view)
    hook: str = "patient-view"
    #: a file of draft orders (a Bundle or one resource) for an order hook
    draft_orders: str | None = None


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
            hook=entry.get("hook", "patient-view"),
            draft_orders=entry.get("draft_orders"),
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


class DraftOrdersError(ValueError):
    """A draft-orders file that is neither a Bundle nor a single FHIR resource."""


def read_draft_orders(path: Path) -> list[dict[str, Any]]:
    """The draft orders of a JSON file: a Bundle's resources, or one resource."""
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DraftOrdersError(f"{path}: not a readable JSON file ({type(exc).__name__})") from None
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        raise DraftOrdersError(f"{path}: neither a Bundle nor a FHIR resource")
    if document["resourceType"] == "Bundle":
        return bundle_resources(document)
    return [document]


def _with_ids(drafts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The drafts, each with an id (an EHR gives its drafts ids, so selections can name them)."""
    return [d if d.get("id") else {**d, "id": str(uuid.uuid4())} for d in drafts]


def hook_context(
    hook: HookDef,
    patient_id: str,
    user_id: str,
    *,
    encounter_id: str | None = None,
    drafts: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """A hook's context as the registry defines it: the encounter when the hook needs one or one
    is given; its data fields filled from `drafts` (a Bundle of them, and every one selected)."""
    context: dict[str, Any] = {"userId": user_id, "patientId": patient_id}
    wants_encounter = hook.context.get("encounterId")
    if encounter_id or (wants_encounter is not None and wants_encounter.required):
        context["encounterId"] = encounter_id or f"{patient_id}-encounter"
    orders = _with_ids(list(drafts))
    for name, shape in hook.data.items():
        if shape == "bundle":
            entries = [{"resource": r} for r in orders]
            context[name] = {"resourceType": "Bundle", "type": "collection", "entry": entries}
        elif shape == "references":
            context[name] = [f"{r['resourceType']}/{r['id']}" for r in orders]
    return context


def chart_drafts(
    chart: Chart, today: dt.date, directory: Path = CHARTS_DIR
) -> list[dict[str, Any]]:
    """The chart's draft orders (none when it has no file), dates rolled to `today`."""
    if not chart.draft_orders:
        return []
    anchor, _ = load_index(directory)
    drafts = read_draft_orders(directory / chart.draft_orders)
    return shift_dates(drafts, (today - anchor).days)


def sample_request(
    kb: KnowledgeBase,
    chart: Chart,
    today: dt.date,
    *,
    hook: str | None = None,
    directory: Path = CHARTS_DIR,
) -> dict[str, Any]:
    """A CDS Hooks request for a chart (on its own hook unless told), its prefetch filled as an
    EHR would fill it, and its draft orders in the context of an order hook."""
    hook = hook or chart.hook
    resources = bundle_resources(load_chart(chart, today, directory))
    context = hook_context(
        kb.hooks[hook],
        chart.patient_id,
        "Practitioner/sample-clinician",
        drafts=chart_drafts(chart, today, directory),
    )
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),  # a fresh hook instance, as an EHR sends
        "context": context,
        "prefetch": prefetch_for(kb, resources, context, today),
    }
